"""Persistent sessions (clean_session=0) on the licensed broker: who inherits one, how long it
lives, and how much it may hold while its client is away (issue 20 rows 7 and 9)."""

from __future__ import annotations

from tests.helpers.broker import ADMIN, ADMIN_PASSWORD, MqttClient, start_broker


def queued_for(broker, client_id: str) -> int:
    async def size() -> int:
        entry = broker.thread.broker.sessions.get(client_id)
        return entry[0].retained_messages.qsize() if entry else -1

    return broker.call(size())


def drain_then_check(client: MqttClient, topic: str) -> list[bytes]:
    """Messages on ``topic`` the client got at connect: amqtt sends a session's queue before it
    serves the client's own packets, so once a sentinel has made the round trip, the queue is done."""
    assert client.subscribe("sentinel/" + client.client._client_id.decode(), qos=1) == 1
    client.publish("sentinel/" + client.client._client_id.decode(), b"s")
    client.wait_message("sentinel/" + client.client._client_id.decode())
    return [m.payload for m in client.messages if m.topic == topic]


def leave_a_queued_message(broker, client_id: str, **login) -> None:
    with MqttClient(broker.port, client_id=client_id, clean_session=False, **login) as owner:
        assert owner.connect() == 0
        assert owner.subscribe("plant/ops/reply", qos=1) == 1
    with MqttClient(broker.port, client_id="publisher") as publisher:
        assert publisher.connect() == 0
        publisher.publish("plant/ops/reply", b"for the owner only", qos=1)
    from tests.helpers.broker import wait_for

    wait_for(lambda: queued_for(broker, client_id) == 1, message="the message was not queued for the owner")


def test_another_principal_taking_over_a_client_id_gets_a_fresh_session(tmp_path, vendor):
    """Row 9: an anonymous client connecting as the admin's persistent ``ops`` got the admin's queue."""
    with start_broker(tmp_path / "s", vendor=vendor) as broker:
        leave_a_queued_message(broker, "ops", username=ADMIN, password=ADMIN_PASSWORD)
        with MqttClient(broker.port, client_id="ops", clean_session=False) as intruder:
            assert intruder.connect() == 0
            assert drain_then_check(intruder, "plant/ops/reply") == []
        assert queued_for(broker, "ops") <= 0  # the admin's queue is gone, not kept for later


def test_the_same_principal_keeps_its_persistent_session(tmp_path, vendor):
    """The control: the owner reconnecting gets what was queued for it."""
    with start_broker(tmp_path / "s", vendor=vendor) as broker:
        leave_a_queued_message(broker, "ops", username=ADMIN, password=ADMIN_PASSWORD)
        with MqttClient(
            broker.port, client_id="ops", username=ADMIN, password=ADMIN_PASSWORD, clean_session=False
        ) as owner:
            assert owner.connect() == 0
            assert drain_then_check(owner, "plant/ops/reply") == [b"for the owner only"]
