"""The activation server's metrics: activations by state (read at scrape time), and the outcome
of each instance operation by error code (check-ins and refusals) from the request middleware."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import GaugeMetricFamily, Metric

from .._observe import ServerMetrics
from .service import ActivationService

OPERATIONS = {
    ("POST", "/v1/activations"): "activate",
    ("POST", "/v1/activations/check-in"): "check_in",
    ("POST", "/v1/activations/deactivate"): "deactivate",
    ("POST", "/v1/floating/activations"): "floating_activate",
    ("POST", "/v1/floating/check-in"): "floating_check_in",
    ("DELETE", "/v1/admin/activations/{activation_id}"): "free",
    ("POST", "/v1/admin/offline/activations"): "offline_activate",
    ("POST", "/v1/admin/offline/deactivations"): "offline_deactivate",
}


def activation_metrics(service: ActivationService) -> ServerMetrics:
    def gauges() -> Iterator[Metric]:
        # Called by the /metrics scrape in a worker thread (never on the loop): counted in SQL.
        with service.store.transaction() as tx:
            licenses, active, freed, cloned = tx.activation_gauges()
        family = GaugeMetricFamily(
            "mqtt_license_server_activations", "Activations by state (active or freed)", labels=["state"]
        )
        family.add_metric(["active"], active)
        family.add_metric(["freed"], freed)
        yield family
        yield GaugeMetricFamily("mqtt_license_server_licenses", "Licenses issued", value=licenses)
        yield GaugeMetricFamily(
            "mqtt_license_server_cloned_activations",
            "Live activations more than one instance checked in with (a copied state folder)",
            value=cloned,
        )

    return ServerMetrics("activation", OPERATIONS, gauges)


__all__ = ["OPERATIONS", "activation_metrics"]
