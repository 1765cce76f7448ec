"""kill -9 of the vendor server mid-activation while clients retry: exactly one activation each.

The vendor runs as the real CLI (``mqtt-licensing vendor serve``) and is SIGKILLed at
random moments while

* eight instances (each its own Ed25519 identity, talking the real HTTP API with the
  real ActivationClient) activate the same license in a tight loop - retrying on every
  failure and re-activating after every success, and
* a real broker with the agent re-activates over MQTT and checks in every 0.2 s.

Afterwards the vendor database must hold exactly one activation per instance - however
many answers were lost in a kill - and pass SQLite's integrity check after every kill.
"""

from __future__ import annotations

import asyncio
import random
import secrets
import sqlite3
import threading
import time

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from mqtt_licensing.clients.activation import ActivationClient
from mqtt_licensing.core import labels
from mqtt_licensing.core.documents import sign_instance_request
from mqtt_licensing.core.errors import ErrorCode, LicensingError
from mqtt_licensing.core.keys import key_digest
from mqtt_licensing.core.signing import fingerprint
from mqtt_licensing.servers.activation.service import ActivationService
from tests.helpers.broker import start_broker
from tests.reliability.support import SCALE, VendorProcess, cli, wait_until

KILLS = 6 * SCALE
INSTANCES = 8


def integrity(db_path) -> str:
    con = sqlite3.connect(db_path)
    try:
        return con.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        con.close()


@pytest.mark.timeout(120)
def test_kill9_vendor_mid_activation_counts_exactly_one_activation_per_instance(tmp_path):
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    print(f"seed={seed} kills={KILLS}")
    data = tmp_path / "vendor"
    cli("vendor", "init", str(data))
    # room for far more activations than instances: a duplicate would be counted, not refused
    key = cli("vendor", "issue", "--data", str(data), "--features", "mqtt_server", "--activations", "50").strip()
    vendor = VendorProcess(data).start()
    public_key_text = (data / "vendor.pub").read_text().strip()
    identities = [Ed25519PrivateKey.generate() for _ in range(INSTANCES)]
    answers: dict[str, set[str]] = {fingerprint(k): set() for k in identities}
    failures: dict[str, int] = {}
    unexpected: list[str] = []
    trace: dict[str, list[str]] = {}
    t0 = time.monotonic()
    stop = threading.Event()

    async def instance(identity: Ed25519PrivateKey) -> None:
        fp = fingerprint(identity)
        while not stop.is_set():
            request = sign_instance_request(
                identity,
                kind=labels.KIND_ACTIVATE,
                nonce=secrets.token_hex(16),
                created_at=int(time.time()),
                key_digest=key_digest(key),
            )
            try:
                async with ActivationClient(vendor.url, timeout=2.0) as client:
                    result = await client.activate(key, request)
                answers[fp].add(result["activation_id"])
                await asyncio.sleep(0.05)
            except LicensingError as exc:
                failures[str(exc.code)] = failures.get(str(exc.code), 0) + 1
                trace.setdefault(fp[:8], []).append(f"{time.monotonic() - t0:.2f}:{exc.message[:60]}")
                if exc.code not in (ErrorCode.SERVER_UNREACHABLE, ErrorCode.BAD_RESPONSE):
                    unexpected.append(f"{fp[:8]}: {exc}")
                await asyncio.sleep(0.01)

    def clients() -> None:
        async def main() -> None:
            await asyncio.gather(*(instance(k) for k in identities))

        asyncio.run(main())

    worker = threading.Thread(target=clients, daemon=True)
    broker = start_broker(
        tmp_path / "state",
        vendor_url=vendor.url,
        vendor_public_key=public_key_text,
        check_in_interval=0.2,
        retry_interval=0.2,
        http_timeout=2.0,
    )
    agent_answers: set[str] = set()

    def operator() -> None:
        while not stop.is_set():
            try:
                with broker.admin(timeout=5) as c:
                    while not stop.is_set():
                        agent_answers.add(c.request("activate", {"license_key": key})["status"]["activation_id"])
            except LicensingError as exc:
                if exc.code not in (ErrorCode.SERVER_UNREACHABLE, ErrorCode.BAD_RESPONSE):
                    unexpected.append(f"agent: {exc}")
                time.sleep(0.01)

    ops = threading.Thread(target=operator, daemon=True)
    try:
        worker.start()
        ops.start()
        for _ in range(KILLS):
            time.sleep(rng.uniform(0.05, 0.6))
            vendor.kill9()
            assert integrity(data / "vendor.db") == "ok"
            time.sleep(rng.uniform(0.0, 0.3))  # clients retry against a dead port meanwhile
            vendor.start()
        # the last incarnation stays up: every client gets its answer
        last_start = time.monotonic()
        wait_until(lambda: all(answers.values()) and agent_answers, 20, f"not every client got an answer: {answers}")
        print(f"all answered {time.monotonic() - last_start:.2f}s after the last restart")
        assert unexpected == []
        assert worker.is_alive() and ops.is_alive()
        # and the agent, in grace after check-ins lost in the kills, recovers by itself
        wait_until(lambda: broker.status()["state"] == "active", 10, "the agent did not recover to active")
    except BaseException:
        for k, v in trace.items():
            print(k, v[:3], v[-5:], len(v))
        print(f"client failures by code: {failures}")
        print(vendor.log_text()[-5000:])
        raise
    finally:
        stop.set()
        worker.join(timeout=15)
        ops.join(timeout=15)
        broker.stop()
        vendor.terminate()
    print(f"client failures by code: {failures}")

    service = ActivationService.open(data)
    try:
        license_id = service.list_licenses()[0]["id"]
        acts = service.list_activations(license_id, include_freed=True)
    finally:
        service.close()
    by_instance: dict[str, list[str]] = {}
    for act in acts:
        by_instance.setdefault(act["instance_fingerprint"], []).append(act["id"])
    assert len(by_instance) == INSTANCES + 1
    assert all(len(ids) == 1 for ids in by_instance.values()), by_instance
    for fp, seen in answers.items():
        assert seen == set(by_instance[fp]), "an instance was answered with an activation not on record"
    (agent_activation,) = set(by_instance) - set(answers)
    assert agent_answers == set(by_instance[agent_activation])
    assert vendor.kills == KILLS
