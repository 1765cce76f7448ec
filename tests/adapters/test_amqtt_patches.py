"""Regression tests for patches 5 and 7 of mqtt_licensing/adapters/amqtt/patches.py.

amqtt 0.12.1 stops serving a client that PUBLISHes to a ``$`` topic while leaving
its socket open (patch 5), and replays retained messages of every filter to every new
connection (patch 7). The first test pins the upstream behaviour (if it starts failing,
amqtt changed and the workaround should be re-examined); the others prove the fixes.
"""

import pytest

from mqtt_licensing.adapters.amqtt.runner import BrokerThread
from mqtt_licensing.servers._run import free_port
from tests.helpers.broker import ADMIN, ADMIN_PASSWORD, MqttClient, start_broker


def round_trip(client, topic="plain/echo", payload=b"hello", timeout=3.0):
    n = len(client.messages)
    client.publish(topic, payload)
    return client.wait_message(topic, after=n, timeout=timeout).payload == payload


def test_vanilla_amqtt_half_kills_a_client_that_publishes_to_a_dollar_topic():
    port = free_port()
    config = {
        "listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{port}"}},
        "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
    }
    with BrokerThread(config), MqttClient(port, client_id="victim") as c:
        assert c.connect() == 0
        assert c.subscribe("plain/echo") in (0, 1)
        assert round_trip(c)
        c.publish("$license/status", b"{}")
        with pytest.raises(TimeoutError):
            round_trip(c, timeout=1.5)  # nothing comes back: the broker stopped serving us
        assert not c.disconnected.is_set()  # ... yet the socket was never closed


@pytest.mark.parametrize("topic", ["$license/status", "$license/nonsense", "$SYS/whatever", "$other"])
def test_with_the_plugin_the_client_keeps_working(tmp_path, vendor, topic):
    with start_broker(tmp_path / "s", vendor=vendor) as broker:
        for username, password in ((None, None), (ADMIN, ADMIN_PASSWORD)):
            with MqttClient(broker.port, client_id=f"c-{username}", username=username, password=password) as c:
                assert c.connect() == 0
                c.subscribe("plain/echo")
                assert round_trip(c)
                for _ in range(3):
                    c.publish(topic, b"{}")
                    assert round_trip(c)
                assert not c.disconnected.is_set()


def test_license_publishes_never_reach_subscribers_or_get_retained(tmp_path, vendor):
    with start_broker(tmp_path / "s", vendor=vendor) as broker:
        with MqttClient(broker.port, client_id="ops", username=ADMIN, password=ADMIN_PASSWORD) as ops:
            assert ops.connect() == 0
            assert ops.subscribe("$license/status") == 1
            retained = ops.wait_message("$license/status")
            n = len(ops.messages)
            ops.client.publish("$license/status", b'{"state": "forged"}', qos=1, retain=True)
            with pytest.raises(TimeoutError):
                ops.wait_message("$license/status", after=n, timeout=1.0)
        with MqttClient(broker.port, client_id="ops2", username=ADMIN, password=ADMIN_PASSWORD) as again:
            assert again.connect() == 0
            again.subscribe("$license/status")
            assert b"forged" not in again.wait_message("$license/status").payload
            assert retained.payload  # the agent's own document is what is retained


def test_retained_status_never_reaches_a_client_that_did_not_subscribe(tmp_path, vendor):
    """amqtt sends every filter's retained messages to each new connection; the adapter stops that."""
    from tests.helpers.broker import READER, READER_PASSWORD

    with (
        start_broker(tmp_path / "s", vendor=vendor) as broker,
        MqttClient(
            broker.port, client_id="dash", username=READER, password=READER_PASSWORD, clean_session=False
        ) as dash,
    ):
        assert dash.connect() == 0
        assert dash.subscribe("$license/status") == 1
        dash.wait_message("$license/status")
        # while the reader's subscription exists, a non-reader connects (and another one subscribes)
        with MqttClient(broker.port, client_id="anon") as anon, MqttClient(broker.port, client_id="anon2") as a2:
            assert anon.connect() == 0 and a2.connect() == 0
            assert a2.subscribe("$license/status") == 0x80
            import time

            time.sleep(1.0)
            assert not anon.messages and not a2.messages


def test_persistent_reader_session_taken_over_by_a_non_reader_gets_no_retained_status(tmp_path, vendor):
    from tests.helpers.broker import READER, READER_PASSWORD

    with start_broker(tmp_path / "s", vendor=vendor) as broker:
        with MqttClient(
            broker.port, client_id="shared", username=READER, password=READER_PASSWORD, clean_session=False
        ) as dash:
            assert dash.connect() == 0
            assert dash.subscribe("$license/status") == 1
            dash.wait_message("$license/status")
        with MqttClient(broker.port, client_id="shared", clean_session=False) as intruder:
            assert intruder.connect() == 0
            with pytest.raises(TimeoutError):
                intruder.wait_message("$license/status", timeout=1.5)
