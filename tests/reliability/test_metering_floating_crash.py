"""Floating metering under kill -9 (issue 16): the floating server (``mqtt-licensing floating serve``,
a real process forwarding its outbox to a real vendor every few milliseconds) is killed at random
moments while lease holders hand in records and while it forwards them. Every record a lease
holder got a receipt for reaches the vendor, and none is counted twice.

A lease holder here is a real client of the lease API (``FloatingClient``) with its own instance
key, doing what the agent does: resend every record until the floating server's signed receipt.
"""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from mqtt_licensing.clients.floating import FloatingClient, lease_request
from mqtt_licensing.clients.http import HttpOptions
from mqtt_licensing.core import labels
from mqtt_licensing.core.documents import sign_instance_request
from mqtt_licensing.core.errors import LicensingError
from mqtt_licensing.core.signing import fingerprint
from mqtt_licensing.core.usage_documents import UsageAck, UsageRecord
from mqtt_licensing.servers._files import load_or_create_token
from mqtt_licensing.servers._run import free_port
from mqtt_licensing.servers.floating.provision import activate_online
from mqtt_licensing.servers.floating.service import FloatingService
from tests.reliability.support import CLI, SCALE, _Process, wait_port, wait_until

KILLS = 6 * SCALE
RECORDS_PER_ROUND = 300
HTTP = HttpOptions(timeout=5.0)


class FloatingProcess(_Process):
    def __init__(self, data_dir: Path) -> None:
        super().__init__(data_dir.parent / "floating.log")
        self.data_dir = data_dir
        self.port = free_port()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FloatingProcess:
        args = [CLI, "floating", "serve", "--data", str(self.data_dir), "--port", str(self.port)]
        self._spawn([*args, "--usage-forward-interval", "0.05", "--log-level", "INFO"])
        wait_port(self.port, 20, self.proc)
        return self


class Holder:
    """One lease holder: its key, its records numbered from 1, and those still awaiting a receipt."""

    def __init__(self) -> None:
        self.key = Ed25519PrivateKey.generate()
        self.fingerprint = fingerprint(self.key)
        self.next = 1
        self.unreceipted: dict[int, bytes] = {}
        self.messages = 0

    def close_records(self, count: int, rng: random.Random) -> None:
        for _ in range(count):
            messages = rng.randrange(1, 50)
            record = UsageRecord(
                instance_fingerprint=self.fingerprint,
                sequence=self.next,
                period_start=int(time.time()) - 60,
                period_end=int(time.time()),
                messages=messages,
                bytes=messages * 10,
                client_seconds=60,
            )
            self.unreceipted[self.next] = record.sign(self.key)
            self.messages += messages
            self.next += 1

    async def deliver(self, url: str, server_key) -> None:
        async with FloatingClient(url, options=HTTP) as client:
            try:
                await client.renew(lease_request(self.key, labels.KIND_LEASE_RENEW))
            except LicensingError:
                await client.acquire(lease_request(self.key, labels.KIND_LEASE_ACQUIRE))
            while self.unreceipted:
                batch = sorted(self.unreceipted.items())[:200]
                nonce = f"{time.time_ns()}"
                request = sign_instance_request(
                    self.key, kind=labels.KIND_LEASE_USAGE, nonce=nonce, created_at=int(time.time())
                )
                ack = UsageAck.open(await client.report_usage(request, [blob for _s, blob in batch]), server_key)
                assert ack.request_nonce == nonce and ack.instance_fingerprint == self.fingerprint
                for sequence in ack.sequences:
                    self.unreceipted.pop(sequence, None)


@pytest.mark.timeout(120 + 20 * KILLS)
def test_kill9_of_the_floating_server_mid_forward_loses_and_doubles_nothing(tmp_path, vendor) -> None:
    rng = random.Random()
    lic, key = vendor.issue_license(features=["mqtt_server", "iot_bridge_snowflake"], model="floating", seats=5)
    data = tmp_path / "fls"
    service = FloatingService.open(data)
    try:
        asyncio.run(activate_online(service, key, vendor.url, vendor_public_key=vendor.public_key, options=HTTP))
        server_key = service.signing_key.public_key()
    finally:
        service.close()
    load_or_create_token(data)
    holders = [Holder(), Holder()]
    fls = FloatingProcess(data)

    def at_vendor() -> int:
        return sum(d["messages"] for d in vendor.service.usage_by_day(lic["id"])["days"])

    try:
        for _round in range(KILLS):
            fls.start()
            for holder in holders:
                holder.close_records(RECORDS_PER_ROUND // len(holders), rng)
            try:
                for holder in holders:
                    asyncio.run(holder.deliver(fls.url, server_key))
                time.sleep(rng.uniform(0, 0.3))  # forwarding runs every 50 ms: the kill lands anywhere in it
            except LicensingError:
                pass  # not receipted: the holder sends again after the restart
            fls.kill9()
            assert at_vendor() <= sum(h.messages for h in holders)
        fls.start()
        for holder in holders:
            asyncio.run(holder.deliver(fls.url, server_key))
        expected = sum(h.messages for h in holders)
        wait_until(lambda: at_vendor() >= expected, 30, "the outbox forwarded")
        usage = vendor.service.usage_by_day(lic["id"])
        assert at_vendor() == expected
        assert sum(d["records"] for d in usage["days"]) == sum(h.next - 1 for h in holders)
        assert usage["missing"] == {}
    finally:
        fls.terminate()
