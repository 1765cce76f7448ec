"""The floating server's metrics: seats (read from the pool at scrape time), leases acquired /
renewed / released by outcome (from the request middleware), and expired leases reclaimed."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from .._observe import ServerMetrics
from .service import FloatingService

OPERATIONS = {
    ("POST", "/v1/leases"): "lease_acquire",
    ("POST", "/v1/leases/renew"): "lease_renew",
    ("POST", "/v1/leases/release"): "lease_release",
}


def floating_metrics(service: FloatingService) -> ServerMetrics:
    def gauges() -> Iterator[Metric]:
        # Called by the /metrics scrape in a worker thread (never on the loop): counted in SQL.
        counts = service.gauges()
        yield GaugeMetricFamily("mqtt_license_floating_seats", "Seats in the pool", value=counts.seats)
        yield GaugeMetricFamily("mqtt_license_floating_seats_used", "Seats leased now", value=counts.used)
        yield GaugeMetricFamily(
            "mqtt_license_floating_cloned_leases",
            "Active leases renewed by more than one instance (a copied state folder)",
            value=counts.cloned,
        )
        yield GaugeMetricFamily(
            "mqtt_license_floating_provisioned", "1 once the pool holds a vendor certificate",
            value=1.0 if counts.provisioned else 0.0,
        )  # fmt: skip
        yield CounterMetricFamily(
            "mqtt_license_floating_leases_expired", "Expired leases reclaimed by this process",
            value=service.leases_expired,
        )  # fmt: skip

    return ServerMetrics("floating", OPERATIONS, gauges)


__all__ = ["OPERATIONS", "floating_metrics"]
