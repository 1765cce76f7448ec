"""A flood of refused CONNECTs with made-up usernames and client ids (issue 20 row 34) leaves every table
it touches bounded (each under its cap of 4,096 keys); on an earlier main the per-username ones held
one entry per name. Its memory twin (20,000 refusals, the broker's RSS): test_refusal_memory.py."""

from __future__ import annotations

import asyncio

import pytest

from mqtt_licensing.core.passwords import hash_password
from tests.helpers.broker import ADMIN, ADMIN_PASSWORD, READER, READER_PASSWORD, connect_packet, start_broker

PARALLEL = 16


REFUSED_NAMES = 5_000
# The tables' bounds are the point here, not the hashes' cost: every refusal is still checked
# against a hash (the unknown names against a dummy of the configured kind and cost), but at
# scrypt n=16 a check costs ~0.05 ms of CPU against ~2 ms at the suite's usual n=1024.
CHEAP_LOGINS = {
    "admins": {ADMIN: hash_password(ADMIN_PASSWORD, n=2**4)},
    "users": {READER: hash_password(READER_PASSWORD, n=2**4)},
}


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
    """Every table a refusal touches stays under its cap (4,096 keys), however many usernames and
    client ids a flood makes up."""
    with start_broker(tmp_path / "s", vendor=vendor, allow_anonymous=False, **CHEAP_LOGINS) as broker:
        assert asyncio.run(refuse_new_names(broker.port, REFUSED_NAMES)) == REFUSED_NAMES
        sizes = table_sizes(broker)
        print(sizes)
        assert max(sizes.values()) <= 4_096, sizes
        assert sizes["amqtt sessions"] == sizes["patches"] == sizes["clients"] == 0, sizes
