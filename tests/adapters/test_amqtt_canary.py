"""The amqtt internals the adapter patches, pinned by the hash of their source.

mqtt_licensing/adapters/amqtt/patches.py replaces, wraps or calls these methods of amqtt
0.12.1. When one of these hashes changes, amqtt changed under the patches: re-read the
method against its patch (the patch's docstring names its regression test), then update
the hash here and ``SUPPORTED_AMQTT``.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import inspect
from typing import Any

import pytest
from amqtt.broker import Broker, BrokerContext
from amqtt.mqtt.protocol.broker_handler import BrokerProtocolHandler
from amqtt.plugins.manager import PluginManager

from mqtt_licensing.adapters.amqtt import patches, versions
from mqtt_licensing.adapters.amqtt.runner import BrokerThread, StartError

# sha256 of inspect.getsource, first 16 hex digits
SOURCE_HASHES = {
    "Broker._client_connected": "432b724bc4fb7946",
    "Broker._initialize_client_session": "5dd89158bbe46266",
    "Broker._authenticate": "4d7db8cc6fe2c3f6",
    "Broker._handle_client_session": "8b1b52a03df9daf5",
    "Broker._handle_message_delivery": "89727723da550bed",
    "Broker._broadcast_message": "78ad4edb7efb3b72",
    "Broker.retain_message": "6233eff2618baede",
    "Broker._publish_retained_messages_for_subscription": "d6ad257821ba29ef",
    "Broker._topic_filtering": "9259ae5e1dd3e20d",
    "Broker._delete_session": "a8333dded50648a7",
    "Broker._run_broadcast": "e852128b3e38e04a",
    "Broker._retain_broadcast_message": "884c193d6731d048",
    "Broker._session_monitor": "5091fa20cdfdc203",
    "Broker._create_server_instance": "3925f48239680074",
    "Broker._cleanup_session": "530ae891d9f536cc",
    "Broker._publish_session_retained_messages": "78cd66096c935c1f",
    "Broker.ws_connected": "e2db3c958489f513",
    "BrokerProtocolHandler.handle_read_timeout": "ffd79f12457f41e1",
    "BrokerProtocolHandler.mqtt_publish": "30cb8f651cc521c5",
    "BrokerProtocolHandler.handle_connection_closed": "e9c448557a8dab58",
    "BrokerProtocolHandler.init_from_connect": "036dc04c1133a18f",
    "BrokerContext.__init__": "899e7dd46e0af5d9",
    "PluginManager.__init__": "e3ac8fbbb6065af8",
}
OWNERS: dict[str, Any] = {
    "Broker": Broker,
    "BrokerProtocolHandler": BrokerProtocolHandler,
    "BrokerContext": BrokerContext,
    "PluginManager": PluginManager,
}


def source_hash(qualified: str) -> str:
    owner, _, name = qualified.partition(".")
    return hashlib.sha256(inspect.getsource(getattr(OWNERS[owner], name)).encode()).hexdigest()[:16]


@pytest.mark.parametrize("qualified", sorted(SOURCE_HASHES))
def test_patched_amqtt_method_is_unchanged(qualified):
    assert source_hash(qualified) == SOURCE_HASHES[qualified], f"amqtt changed {qualified}: re-read its patch"


def test_every_patch_target_is_pinned():
    pinned = {q for q in SOURCE_HASHES if q.startswith("Broker.")}
    assert {f"Broker.{n}" for n in versions.BROKER_TARGETS} <= pinned
    assert {f"BrokerProtocolHandler.{n}" for n in versions.HANDLER_TARGETS} <= set(SOURCE_HASHES)


def test_the_installed_amqtt_is_the_supported_one():
    assert importlib.metadata.version("amqtt") == versions.SUPPORTED_AMQTT
    assert versions.unsupported_amqtt() is None


def test_another_amqtt_version_is_refused_in_one_line(monkeypatch):
    monkeypatch.setattr(versions, "amqtt_version", lambda: "0.13.0")
    with pytest.raises(StartError) as refused:
        BrokerThread({"listeners": {"default": {"type": "tcp", "bind": "127.0.0.1:0"}}}).start()
    assert "amqtt 0.13.0 is installed" in refused.value.message
    assert "amqtt==0.12.1" in refused.value.message and "\n" not in refused.value.message


def test_install_refuses_a_broker_missing_a_target(monkeypatch):
    """A target amqtt no longer has makes install() fail instead of assigning an inert patch."""
    monkeypatch.delattr(Broker, "_initialize_client_session")
    broker = object.__new__(Broker)
    with pytest.raises(RuntimeError, match="_initialize_client_session"):
        patches.BrokerPatches(broker, hooks=None, connect_timeout=1, max_packet_size=1024).install()  # type: ignore[arg-type]
