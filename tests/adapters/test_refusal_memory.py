"""20,000 refused CONNECTs leave the broker's memory where it was (issue 9 item 4).

amqtt 0.12.1 kept the session of every refused CONNECT in its session table for ever
(measured on the unpatched adapter: ~36 KiB per refusal, RSS 49 -> 758 MiB for 20,000).
The broker runs in its own process here, so its RSS is measured alone.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.helpers.broker import connect_packet
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
