"""Which amqtt the patches know, and the check that refuses any other one in one line.

The patches (:mod:`.patches`, :mod:`.topics`, :mod:`.origins`, :mod:`.sessions`) replace or
wrap amqtt internals; an attribute amqtt no longer reads would leave a patch inert without a
sound, so the start refuses an amqtt it was not tested against, and ``install`` refuses a
target that is gone (tests/adapters/test_amqtt_canary.py holds the source hash of each).
"""

from __future__ import annotations

import importlib.metadata
from typing import Final

from amqtt.broker import Broker, BrokerContext
from amqtt.mqtt.protocol.broker_handler import BrokerProtocolHandler

SUPPORTED_AMQTT: Final = "0.12.1"
BROKER_TARGETS: Final = (
    "_client_connected",
    "_initialize_client_session",
    "_authenticate",
    "_handle_client_session",
    "_handle_message_delivery",
    "_broadcast_message",
    "retain_message",
    "_publish_retained_messages_for_subscription",
    "_topic_filtering",
    "_delete_session",
    "_create_server_instance",
    "ws_connected",
    "_retain_broadcast_message",
    "_cleanup_session",
)
HANDLER_TARGETS: Final = ("handle_read_timeout", "mqtt_publish", "handle_connection_closed", "init_from_connect")


def amqtt_version() -> str:
    try:
        return importlib.metadata.version("amqtt")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def unsupported_amqtt() -> str | None:
    """One line naming the fix when the installed amqtt is not the one the patches know, else None."""
    installed = amqtt_version()
    if installed == SUPPORTED_AMQTT:
        return None
    return (
        f"amqtt {installed} is installed but this broker supports amqtt {SUPPORTED_AMQTT} only "
        f"(its patches use amqtt internals): pip install 'amqtt=={SUPPORTED_AMQTT}'"
    )


def missing_targets(broker: Broker) -> list[str]:
    """What the patches would replace or wrap and this amqtt no longer has as a callable."""
    missing = [name for name in BROKER_TARGETS if not callable(getattr(broker, name, None))]
    missing += [
        f"BrokerProtocolHandler.{name}"
        for name in HANDLER_TARGETS
        if not callable(getattr(BrokerProtocolHandler, name, None))
    ]
    return missing


def broker_of(context: BrokerContext) -> Broker:
    broker = getattr(context, "_broker_instance", None)  # patch 10
    if not isinstance(broker, Broker):
        raise RuntimeError(f"amqtt {amqtt_version()}: the plugin context no longer holds the broker")
    return broker
