"""MQTT-native licensing: a licensing agent inside the broker, a vendor
activation server and a self-hosted floating license server.

Layers (dependencies point inward):

* ``core``     - pure license logic: keys, signed documents, codes, the state
                 machine and the CONNECT gate. No I/O, no clocks, no sockets.
* ``agent``    - the licensing agent service: persistence, background check-in,
                 command handling. Talks to brokers through a small transport port.
* ``adapters`` - broker adapters (amqtt plugin); the only place that knows amqtt.
* ``clients``  - HTTP clients for the activation and floating servers.
* ``servers``  - the vendor activation server and the floating license server.
* ``cli``      - the ``mqtt-licensing`` command.
"""

from __future__ import annotations

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version
from typing import Any

try:
    __version__ = version("mqtt-licensing")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"

# The public surface, imported on first use so that `mqtt-licensing <verb>` stays fast
# (the agent pulls in httpx and cryptography; most CLI verbs need neither).
_EXPORTS = {
    "LicensingAgent": "mqtt_licensing.agent",
    "AgentConfig": "mqtt_licensing.agent",
    "Transport": "mqtt_licensing.agent",
    "LicenseSource": "mqtt_licensing.agent",
    "LicenseClient": "mqtt_licensing.clients.mqtt",
    "LicensingError": "mqtt_licensing.core.errors",
    "ErrorCode": "mqtt_licensing.core.errors",
    "LicenseState": "mqtt_licensing.core.state",
    "LicenseModel": "mqtt_licensing.core.models",
}

__all__ = [
    "AgentConfig",
    "ErrorCode",
    "LicenseClient",
    "LicenseModel",
    "LicenseSource",
    "LicenseState",
    "LicensingAgent",
    "LicensingError",
    "Transport",
    "__version__",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'mqtt_licensing' has no attribute {name!r}")
    return getattr(import_module(module), name)
