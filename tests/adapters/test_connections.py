"""A role, a seat and replies belong to the connection (socket) that authenticated, never to
amqtt's Session object; a refused CONNECT changes nothing and leaves nothing (issue 9 items 1, 4).

Real broker, raw MQTT 3.1.1 sockets (tests/helpers/broker.py RawClient) where paho would
reconnect or hide what the broker did, paho otherwise.
"""

from __future__ import annotations

import pytest

from tests.helpers.broker import (
    ADMIN,
    ADMIN_PASSWORD,
    MqttClient,
    RawClient,
    publish_packet,
    start_broker,
)


def test_squatter_on_a_persistent_client_id_cannot_act_as_the_admin_who_takes_it_over(tmp_path, vendor):
    """Issue 9 row 1: an anonymous client holds client id ``ops`` (clean_session=0, taken over
    once by itself), the admin connects as ``ops``; the squatter's socket must be closed, and
    a ``$license/deactivate`` sent on it must not run as the admin's."""
    key = vendor.issue()
    with start_broker(tmp_path / "s", vendor=vendor, trial_max_connections=5) as broker:
        with broker.admin() as c:
            assert c.request("activate", {"license_key": key})["status"]["state"] == "active"
        with RawClient(broker.port) as first, RawClient(broker.port) as squatter:
            assert first.connect("ops", clean_session=False) == 0
            assert squatter.connect("ops", clean_session=False) == 0
            assert first.closed_by_broker()  # MQTT take-over of its own session
            with MqttClient(
                broker.port, client_id="ops", username=ADMIN, password=ADMIN_PASSWORD, clean_session=False
            ) as admin:
                assert admin.connect() == 0
                assert squatter.closed_by_broker(), "the squatter's socket still shares the admin's session"
                # Sent into a socket the broker has closed: the kernel drops it, nothing can run it
                # later, so no wait for a vendor call is needed before looking at the state.
                squatter.send(publish_packet("$license/deactivate", b"{}"))
                assert admin.subscribe("$license/reply/ops") == 1  # the role follows the new connection
                status = broker.status()
                assert status["state"] == "active"
                assert status["connections"] == 0  # admins are not counted, the squatter is gone


@pytest.mark.parametrize("clean_session", [True, False], ids=["clean", "persistent"])
def test_wrong_password_connect_reusing_a_live_client_id_leaves_that_client_alone(tmp_path, vendor, clean_session):
    """Issue 9 row 8: amqtt deleted (clean) or took over (persistent) the live client's session
    before asking the auth plugin; now authentication comes first."""
    with (
        start_broker(tmp_path / "s", vendor=vendor) as broker,
        MqttClient(broker.port, client_id="victim", clean_session=clean_session) as victim,
        MqttClient(broker.port, client_id="sender") as sender,
    ):
        assert victim.connect() == 0 and sender.connect() == 0
        assert victim.subscribe("plain/x") in (0, 1)
        sessions_before = len(broker.thread.broker.sessions) if broker.thread.broker else 0
        for _ in range(3):
            with RawClient(broker.port) as attacker:
                code = attacker.connect("victim", username=ADMIN, password="guess", clean_session=clean_session)
                assert code == 5
        sender.publish("plain/x", b"still here")
        assert victim.wait_message("plain/x").payload == b"still here"
        assert not victim.disconnected.is_set()
        assert broker.thread.broker is not None and len(broker.thread.broker.sessions) == sessions_before


def test_refused_connects_leave_no_session_behind(tmp_path, vendor):
    """amqtt stored every refused CONNECT's session for ever (~36 KiB each, issue 9 row 4)."""
    with start_broker(tmp_path / "s", vendor=vendor, allow_anonymous=False) as broker:
        amqtt_broker = broker.thread.broker
        assert amqtt_broker is not None
        before = len(amqtt_broker.sessions)
        for i in range(200):
            with RawClient(broker.port) as c:
                assert c.connect(f"nobody-{i}") == 5
        with RawClient(broker.port) as c:
            assert c.connect("persistent-nobody", clean_session=False) == 5
        assert len(amqtt_broker.sessions) == before
        with MqttClient(broker.port, client_id="ops", username=ADMIN, password=ADMIN_PASSWORD) as admin:
            assert admin.connect() == 0
        assert broker.status()["connections"] == 0
