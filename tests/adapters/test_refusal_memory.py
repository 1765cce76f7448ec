"""20,000 refused CONNECTs leave the broker's memory where it was (issue 9 item 4).

amqtt 0.12.1 kept the session of every refused CONNECT in its session table for ever
(measured on the unpatched adapter: ~36 KiB per refusal, RSS 49 -> 758 MiB for 20,000).
The broker runs in its own process here, so its RSS is measured alone.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.helpers.broker import connect_packet, start_broker
from tests.reliability.support import BrokerProcess, rss_bytes

REFUSALS = 20_000  # ~20 s here on 2 shared cores
PARALLEL = 16


async def refuse_many(port: int, count: int) -> int:
    """CONNECT ``count`` times with fresh client ids and no credentials; count the CONNACK 5s."""
    refused = 0
    next_id = iter(range(count))

    async def worker() -> None:
        nonlocal refused
        for i in next_id:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(connect_packet(f"refused-{i}-{time.monotonic_ns()}", keepalive=30))
            connack = await asyncio.wait_for(reader.readexactly(4), 10)
            refused += connack[3] == 5
            writer.close()
            await writer.wait_closed()

    await asyncio.gather(*(worker() for _ in range(PARALLEL)))
    return refused


def settled_rss(pid: int) -> int:
    time.sleep(2.0)  # let the broker finish closing sockets and run its session monitor
    return rss_bytes(pid)


@pytest.mark.soak
@pytest.mark.timeout(300)
def test_refused_connects_leave_broker_memory_where_it_started(tmp_path, vendor):
    broker = BrokerProcess(
        tmp_path,
        tmp_path / "state",
        vendor_url=vendor.url,
        vendor_public_key=vendor.public_key_text,
        allow_anonymous=False,
        log_level="ERROR",
    ).start()
    try:
        assert asyncio.run(refuse_many(broker.port, 1_000)) == 1_000  # warm up allocator and code paths
        before = settled_rss(broker.pid)
        started = time.monotonic()
        assert asyncio.run(refuse_many(broker.port, REFUSALS)) == REFUSALS
        elapsed = time.monotonic() - started
        after = settled_rss(broker.pid)
        growth = after - before
        print(
            f"{REFUSALS} refused CONNECTs in {elapsed:.1f} s: RSS {before / 2**20:.1f} -> {after / 2**20:.1f} MiB, "
            f"{growth / REFUSALS:.0f} bytes per refusal"
        )
        assert growth < 10 * 2**20
        assert broker.alive
    finally:
        broker.terminate()


REFUSED_NAMES = 5_000


async def refuse_new_names(port: int, count: int) -> int:
    """Wrong passwords for ``count`` made-up usernames, each with a new client id, from 127.0.x.y
    source addresses (three refusals each, so no address is backed off and every one is checked)."""
    refused = 0
    next_id = iter(range(count))

    async def worker() -> None:
        nonlocal refused
        for i in next_id:
            source = f"127.0.{2 + i // 3 // 250}.{1 + i // 3 % 250}"
            reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
            writer.write(connect_packet(f"fresh-{i}", username=f"nobody-{i}", password="guess", keepalive=30))
            connack = await asyncio.wait_for(reader.readexactly(4), 30)
            refused += connack[3] == 5
            writer.close()
            await writer.wait_closed()

    await asyncio.gather(*(worker() for _ in range(PARALLEL)))
    return refused


def table_sizes(broker) -> dict[str, int]:
    async def sizes() -> dict[str, int]:
        access = broker.agent._core.access
        plugin = next(p for p in broker.thread.broker.plugins_manager.plugins if hasattr(p, "_patches"))
        patches = plugin._patches
        return {
            "backoff": len(access.credentials._backoff._keys),
            "password cache": len(access.credentials._cache),
            "refusal event windows": len(access._refusals._windows),
            "username budgets": len(access.credentials._budget._buckets),
            "known-good logins": len(access.credentials._known_good),
            "refusal log": len(access.refusal_log._seen),
            "clients": len(access.clients),
            "amqtt sessions": len(broker.thread.broker.sessions),
            "patches": len(patches._live)
            + len(patches._holders)
            + len(patches._by_session)
            + len(patches._authenticating)
            + len(patches._accepted)
            + len(patches._deadlines._watched)
            + len(patches._deadlines._expired),
        }

    return broker.call(sizes())


@pytest.mark.soak
@pytest.mark.timeout(300)
def test_refusals_with_fresh_names_and_client_ids_leave_bounded_tables(tmp_path, vendor):
    """Issue 20 row 34: every table a refusal touches stays under its cap (4,096 keys), however many
    usernames and client ids a flood makes up; on main the per-username ones held one entry each."""
    with start_broker(tmp_path / "s", vendor=vendor, allow_anonymous=False) as broker:
        assert asyncio.run(refuse_new_names(broker.port, REFUSED_NAMES)) == REFUSED_NAMES
        sizes = table_sizes(broker)
        print(sizes)
        assert max(sizes.values()) <= 4_096, sizes
        assert sizes["amqtt sessions"] == sizes["patches"] == sizes["clients"] == 0, sizes
