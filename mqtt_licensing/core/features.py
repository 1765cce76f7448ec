"""The feature catalogue. Extensible: add a feature here and everything else follows."""

from __future__ import annotations

from dataclasses import dataclass

from .errors import ErrorCode, LicensingError


@dataclass(frozen=True)
class Feature:
    name: str
    title: str
    kind: str  # "perpetual" | "term" | "metered"
    gates_connections: bool


MQTT_SERVER = "mqtt_server"
MQTT_SERVER_SUPPORT = "mqtt_server_support"
IOT_BRIDGE_SNOWFLAKE = "iot_bridge_snowflake"

CATALOGUE: dict[str, Feature] = {
    f.name: f
    for f in (
        # The broker may serve (non-admin) clients at all.
        Feature(MQTT_SERVER, "MQTT Server", "perpetual", gates_connections=True),
        # Support years: an end date shown in status; gates nothing.
        Feature(MQTT_SERVER_SUPPORT, "MQTT Server Support", "term", gates_connections=False),
        # Bridge clients of this class may connect; usage is metered.
        Feature(IOT_BRIDGE_SNOWFLAKE, "IoT Bridge for Snowflake", "metered", gates_connections=True),
    )
}


def validate_features(names: object) -> tuple[str, ...]:
    """Return the names sorted and de-duplicated, or raise for an unknown one."""
    if isinstance(names, str):
        names = [n for n in (part.strip() for part in names.split(",")) if n]
    if not isinstance(names, (list, tuple, set, frozenset)):
        raise LicensingError(ErrorCode.INVALID_FIELD, "features must be a list of feature names")
    out = set()
    for name in names:
        if not isinstance(name, str) or name not in CATALOGUE:
            known = ", ".join(sorted(CATALOGUE))
            raise LicensingError(ErrorCode.INVALID_FIELD, f"unknown feature {name!r} (known: {known})")
        out.add(name)
    return tuple(sorted(out))
