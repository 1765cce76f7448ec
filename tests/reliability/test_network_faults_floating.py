"""Network faults between the agent and its floating license server: the agent follows the
rules, never crashes, and recovers by itself.

A :class:`FaultProxy` (a plain TCP server on 127.0.0.1) sits between a real broker's agent and a
real floating server; each test switches it into one fault and then back to relaying (the faults
and the online side: test_network_faults_online.py).

Rules checked (BRIEF §4):
* the agent keeps serving until the lease's ``expires_at``, is not serving after it, and leases
  again by itself when the server is back;
* always: status requests are answered promptly during the fault (the broker's loop is
  never blocked), no exception is logged by the agent, the broker keeps accepting clients.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from mqtt_licensing.core.documents import InstanceRequest, Lease
from mqtt_licensing.core.signing import b64, public_key_to_text
from mqtt_licensing.servers._run import ServerThread
from tests.helpers.broker import start_broker
from tests.helpers.floating import start_floating
from tests.reliability.faults import (
    current_lease,
    held_lease,
    json_body,
    respond,
    rogue_app,
    status_while_a_request_hangs,
)
from tests.reliability.support import (
    FaultProxy,
    connack_code,
    http_response,
    wait_until,
)

# -- floating: lease faults ---------------------------------------------------------------


@dataclass
class FloatingEnv:
    fls: Any
    rogue_pool: Any
    proxy: FaultProxy
    broker: Any
    rogue_server: ServerThread
    admin: Any


TTL = 2


@pytest.fixture(scope="module")
def floating(tmp_path_factory, exceptions):
    tmp = tmp_path_factory.mktemp("floating-faults")
    vendor_key = Ed25519PrivateKey.generate()
    fls = start_floating(tmp / "fls", vendor_key=vendor_key, seats=2, ttl=TTL)
    # a real floating server whose pool certificate another key signed
    rogue_pool = start_floating(tmp / "rogue-pool", vendor_key=Ed25519PrivateKey.generate(), seats=5, ttl=600)
    proxy = FaultProxy(fls.port)
    broker = start_broker(
        tmp / "state",
        vendor_url=None,
        vendor_public_key=public_key_to_text(vendor_key),
        retry_interval=0.3,
        http_timeout=0.8,
        trial_seconds=0,
        tick_interval=0.1,
    )
    rogue_key = Ed25519PrivateKey.generate()
    genuine: dict[str, bytes] = {}

    def rogue_lease(req: InstanceRequest) -> dict[str, Any]:
        """A lease for the asking instance, carrying the GENUINE pool certificate, signed by another key."""
        now = int(time.time())
        lease = Lease(
            lease_id="lse_rogue",
            instance_fingerprint=req.fingerprint,
            features=("mqtt_server",),
            issued_at=now,
            expires_at=now + 3600,
            ttl=3600,
            certificate=genuine["certificate"],
        )
        return {"lease": b64(lease.sign(rogue_key))}

    rogue_server = ServerThread(rogue_app({"/v1/leases": rogue_lease, "/v1/leases/renew": rogue_lease}))
    rogue_server.start()
    try:
        with broker.admin() as c:
            status = c.request(
                "activate", {"method": "floating", "server_url": proxy.url, "features": ["mqtt_server"]}
            )["status"]
        assert status["state"] == "active"
        genuine["certificate"] = held_lease(broker.agent).certificate
        with broker.admin() as admin:
            yield FloatingEnv(fls, rogue_pool, proxy, broker, rogue_server, admin)
    finally:
        broker.stop()
        proxy.close()
        rogue_server.stop()
        rogue_pool.stop()
        fls.stop()


FLOATING_FAULTS: dict[str, tuple[Any, set[str]]] = {
    "down": (lambda env: env.proxy.set("down"), {"server_unreachable"}),
    "slow": (lambda env: env.proxy.set("slow", delay=3.0), {"server_unreachable"}),
    "not_json": (respond(http_response(200, b"\x00\x01garbage", "application/octet-stream")), {"bad_response"}),
    "lease_random_bytes": (respond(json_body({"lease": b64(os.urandom(400))})), {"invalid_code", "bad_response"}),
    "lease_signed_by_another_key": (
        lambda env: env.proxy.set("pass", upstream_port=env.rogue_server.port),
        {"invalid_signature"},
    ),
    "pool_signed_by_another_vendor": (
        lambda env: env.proxy.set("pass", upstream_port=env.rogue_pool.port),
        {"invalid_signature"},
    ),
}


@pytest.mark.parametrize("fault", list(FLOATING_FAULTS))
def test_floating_renewal_fault_serves_until_lease_expiry_then_recovers(floating: FloatingEnv, exceptions, fault):
    env = floating
    agent = env.broker.agent
    env.proxy.set("pass", upstream_port=env.fls.port)
    wait_until(lambda: agent.evaluation.state == "active", 10, "not active before the fault")
    # start the fault right after a renewal, so the whole remaining lease is observed
    lease_id = held_lease(agent).issued_at
    wait_until(lambda: (lease := current_lease(agent)) is not None and lease.issued_at != lease_id, 5, "no renewal")
    seen_exceptions = len(exceptions.records)
    apply, codes = FLOATING_FAULTS[fault]
    try:
        apply(env)
        expires_at = held_lease(agent).expires_at
        checked_connect = False
        while time.time() < expires_at - 0.4:
            assert agent.evaluation.state == "active", f"stopped serving before the lease expired ({fault})"
            if not checked_connect:
                assert connack_code(env.broker.port, f"before-expiry-{fault}") == 0
                checked_connect = True
            time.sleep(0.05)
        status = wait_until(
            lambda: (s := env.admin.status())["state"] == "unlicensed" and s,
            5,
            f"still serving after the lease expired ({fault})",
        )
        assert time.time() >= expires_at
        assert status["floating"]["last_error"]["code"] in codes, status["floating"]["last_error"]
        assert (lease := current_lease(agent)) is None or lease.expires_at == expires_at  # nothing rogue was installed
        assert connack_code(env.broker.port, f"after-expiry-{fault}") == 5
        if fault == "slow":  # a renewal held open: the status does not wait for it
            assert status_while_a_request_hangs(env.proxy, env.admin)["state"] == "unlicensed"
    finally:
        env.proxy.set("pass", upstream_port=env.fls.port)
    wait_until(
        lambda: agent.evaluation.state == "active" and held_lease(agent).expires_at > expires_at,
        10,
        f"no new lease after {fault}",
    )
    assert connack_code(env.broker.port, f"after-recovery-{fault}") == 0
    assert exceptions.records[seen_exceptions:] == []
