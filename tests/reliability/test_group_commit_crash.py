"""kill -9 of the vendor server while check-ins are batched (group commit): no acknowledged write
is lost.

The vendor runs as the real CLI (``mqtt-licensing vendor serve``). Sixteen instances check in
over HTTP as fast as they can, each presenting the chain of its last certificate, so the server
commits them in shared transactions; the server is SIGKILLed at random moments and restarted.
A check-in counts as acknowledged when its certificate came back. Afterwards, for every
acknowledged check-in:

* its nonce is on record (a replay of it is refused): the write it acknowledged is durable;
* the instance's last acknowledged chain is still accepted: the stored chain is that one, or the
  one after it from a check-in that committed but whose answer the kill swallowed (then the
  acknowledged one is the chain's ``previous``). An instance is never taken for a clone because
  the server crashed.
"""

from __future__ import annotations

import asyncio
import random
import secrets
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from mqtt_licensing.core import labels
from mqtt_licensing.core.documents import ActivationCertificate, sign_instance_request
from mqtt_licensing.core.keys import key_digest
from mqtt_licensing.core.signing import b64, unb64
from mqtt_licensing.servers.activation.schema import request_nonces
from mqtt_licensing.servers.activation.service import ActivationService
from tests.reliability.support import SCALE, VendorProcess

KILLS = 5 * SCALE
INSTANCES = 16


class Instance:
    def __init__(self, service: ActivationService, key: str) -> None:
        self.identity = Ed25519PrivateKey.generate()
        blob = sign_instance_request(
            self.identity, kind=labels.KIND_ACTIVATE, nonce=secrets.token_hex(16), created_at=int(time.time()),
            key_digest=key_digest(key),
        )  # fmt: skip
        result = service.activate(key, blob)
        self.activation_id = result.activation_id
        self.chain = ActivationCertificate.open(result.certificate, service.public_key).chain
        self.acknowledged: list[str] = []  # nonces of check-ins whose certificate came back

    def check_in(self) -> tuple[str, dict[str, str]]:
        nonce = secrets.token_hex(16)
        blob = sign_instance_request(
            self.identity, kind=labels.KIND_CHECK_IN, nonce=nonce, created_at=int(time.time()),
            activation_id=self.activation_id, chain=self.chain,
        )  # fmt: skip
        return nonce, {"request": b64(blob)}


async def hammer(url: str, instances: list[Instance], public_key: Any, stop: asyncio.Event) -> int:
    """Check in from every instance until ``stop``; failures (the server is dead) just retry."""
    acknowledged = 0

    async def worker(instance: Instance, client: httpx.AsyncClient) -> None:
        nonlocal acknowledged
        while not stop.is_set():
            nonce, body = instance.check_in()
            try:
                response = await client.post(f"{url}/v1/activations/check-in", json=body)
            except httpx.HTTPError:
                await asyncio.sleep(0.02)
                continue
            assert response.status_code == 200, response.text  # never a clone, never a refusal
            certificate = ActivationCertificate.open(unb64(response.json()["certificate"]), public_key)
            instance.chain = certificate.chain
            instance.acknowledged.append(nonce)
            acknowledged += 1

    async with httpx.AsyncClient(timeout=5) as client:
        await asyncio.gather(*(worker(i, client) for i in instances))
    return acknowledged


@pytest.mark.timeout(180)
def test_kill9_mid_batch_loses_no_acknowledged_check_in(tmp_path: Path) -> None:
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    print(f"seed={seed} kills={KILLS}")
    data = tmp_path / "vendor"
    service = ActivationService.open(data)
    _lic, key = service.issue_license(features=["mqtt_server"], max_activations=INSTANCES)
    instances = [Instance(service, key) for _ in range(INSTANCES)]
    public_key = service.public_key
    service.close()
    vendor = VendorProcess(data)

    async def run() -> None:
        for _ in range(KILLS):
            vendor.start()
            stop = asyncio.Event()
            load = asyncio.create_task(hammer(vendor.url, instances, public_key, stop))
            await asyncio.sleep(rng.uniform(0.5, 2.0))  # check-ins in flight, batches committing
            vendor.kill9()
            stop.set()
            await load

    asyncio.run(run())
    acknowledged = sum(len(i.acknowledged) for i in instances)
    assert acknowledged > 50, f"too few check-ins got through to test anything ({acknowledged})"

    service = ActivationService.open(data)
    try:
        with service.store.transaction() as tx:
            stored = {(r.scope, r.nonce) for r in tx.conn.execute(sa.select(request_nonces))}
        for instance in instances:
            lost = [n for n in instance.acknowledged if (instance.activation_id, n) not in stored]
            assert not lost, f"{len(lost)} acknowledged check-ins of {instance.activation_id} were lost (seed {seed})"
        with service.store.transaction() as tx:
            for instance in instances:
                act = tx.get_activation(instance.activation_id)
                assert act is not None and act.active
                assert instance.chain in (act.chain, act.chain_prev), "the last acknowledged chain was lost"
                assert act.clone_count == 0, "a crash made an instance look like a clone"
    finally:
        service.close()
