"""Persistent sessions (clean_session=0) on the licensed broker: who inherits one, how long it
lives, and how much it may hold while its client is away (issue 20 rows 7 and 9)."""

from __future__ import annotations

import asyncio

from tests.helpers.broker import ADMIN, ADMIN_PASSWORD, MqttClient, connect_packet, start_broker, wait_for


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
    return [bytes(m.payload) for m in client.messages if m.topic == topic]


def leave_a_queued_message(broker, client_id: str, **login) -> None:
    with MqttClient(broker.port, client_id=client_id, clean_session=False, **login) as owner:
        assert owner.connect() == 0
        assert owner.subscribe("plant/ops/reply", qos=1) == 1
    with MqttClient(broker.port, client_id="publisher") as publisher:
        assert publisher.connect() == 0
        publisher.publish("plant/ops/reply", b"for the owner only", qos=1)
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


def queued_bytes(broker, client_id: str) -> int:
    async def size() -> int:
        session = broker.thread.broker.sessions[client_id][0]
        return sum(len(m.data) for m in session.retained_messages._queue)

    return broker.call(size())


def test_an_absent_subscribers_queue_is_capped_keeping_the_newest(tmp_path, vendor):
    """Row 7: 150 x 1 MB to an absent QoS 1 subscriber grew the broker by 150 MB, for ever."""
    with start_broker(tmp_path / "s", vendor=vendor, session_queue_messages=5, session_queue_bytes=25_000) as broker:
        with MqttClient(broker.port, client_id="bulk", clean_session=False) as subscriber:
            assert subscriber.connect() == 0
            assert subscriber.subscribe("bulk/#", qos=1) == 1
        with MqttClient(broker.port, client_id="publisher") as publisher:
            assert publisher.connect() == 0
            for i in range(12):
                publisher.publish("bulk/data", bytes([i]) * 4_000, qos=1)
            wait_for(lambda: queued_for(broker, "bulk") == 5, message="queue not at its cap")
            for i in range(12, 20):  # 10 kB each: the byte cap binds before the count
                publisher.publish("bulk/data", bytes([i]) * 10_000, qos=1)
            wait_for(lambda: queued_bytes(broker, "bulk") == 20_000, message="queue over its byte cap")
        with MqttClient(broker.port, client_id="bulk", clean_session=False) as back:
            assert back.connect() == 0
            got = drain_then_check(back, "bulk/data")
        assert [m[0] for m in got] == [18, 19]  # the newest, in order


def test_offline_sessions_are_capped_per_source(tmp_path, vendor):
    """Row 7: 2,500 anonymous persistent sessions (connect, subscribe, leave) stayed for ever."""
    with start_broker(tmp_path / "s", vendor=vendor, offline_sessions_per_source=20) as broker:

        async def leave_sessions(count: int) -> None:
            for i in range(count):
                reader, writer = await asyncio.open_connection("127.0.0.1", broker.port)
                writer.write(connect_packet(f"once-{i}", clean_session=False))
                assert (await reader.readexactly(4))[3] == 0
                writer.close()
                await writer.wait_closed()

        asyncio.run(leave_sessions(150))

        async def count() -> int:
            assert broker.thread.broker is not None
            return len(broker.thread.broker.sessions)

        wait_for(lambda: broker.call(count()) <= 20, message="offline sessions not capped per source")
        assert broker.call(count()) >= 15  # the cap keeps the newest, it does not drop them all


def test_offline_sessions_expire(tmp_path, vendor):
    with start_broker(tmp_path / "s", vendor=vendor, session_expiry=1) as broker:
        with MqttClient(
            broker.port, client_id="gone", username=ADMIN, password=ADMIN_PASSWORD, clean_session=False
        ) as c:
            assert c.connect() == 0
            assert c.subscribe("plant/#", qos=1) == 1
        assert queued_for(broker, "gone") == 0  # kept while it is fresh

        wait_for(lambda: queued_for(broker, "gone") == -1, timeout=20, message="the offline session never expired")


def test_offline_sessions_are_capped_per_username(tmp_path, vendor):
    from tests.helpers.broker import READER, READER_PASSWORD

    with start_broker(tmp_path / "s", vendor=vendor, offline_sessions_per_username=3) as broker:
        for i in range(8):
            with MqttClient(
                broker.port, client_id=f"dash-{i}", username=READER, password=READER_PASSWORD, clean_session=False
            ) as c:
                assert c.connect() == 0

        async def kept() -> list[str]:
            assert broker.thread.broker is not None
            return sorted(cid for cid, (s, _h) in broker.thread.broker.sessions.items() if s.username == READER)

        wait_for(lambda: len(broker.call(kept())) <= 3, message="offline sessions not capped per username")
        assert broker.call(kept()) == ["dash-5", "dash-6", "dash-7"]  # the newest stay
