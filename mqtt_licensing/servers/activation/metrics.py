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
        with service.store.transaction() as tx:
            records = tx.list_activations(include_freed=True)
            licenses = len(tx.list_licenses())
        family = GaugeMetricFamily(
            "mqtt_license_server_activations", "Activations by state (active or freed)", labels=["state"]
        )
        active = sum(1 for r in records if r.active)
        family.add_metric(["active"], active)
        family.add_metric(["freed"], len(records) - active)
        yield family
        yield GaugeMetricFamily("mqtt_license_server_licenses", "Licenses issued", value=licenses)
        yield GaugeMetricFamily(
            "mqtt_license_server_cloned_activations",
            "Live activations more than one instance checked in with (issue 10: a copied state folder)",
            value=sum(1 for r in records if r.active and r.cloned_at is not None),
        )

    return ServerMetrics("activation", OPERATIONS, gauges)


__all__ = ["OPERATIONS", "activation_metrics"]
