"""A simulated fleet driven in-process: many instances checking in with the activation server and
leasing from a floating server, through the services themselves (no sockets), from ``threads``
worker threads as the HTTP servers' thread pools call them.

    .venv/bin/python -m benchmarks.fleet --instances 100000      # the issue's soak (minutes)
    .venv/bin/python -m benchmarks.fleet --instances 2000        # a quick look

Every instance is real: its own Ed25519 identity and activation (or lease), a freshly signed
request for every call, and the check-in chain presented from its last certificate as an agent
does. What must hold (``tests/servers/test_fleet_soak.py`` runs it small):

* every check-in, heartbeat and renewal of a live instance succeeds: no activation that was alive
  is lost (freed, released, refused or taken for a clone) and no lease is lost; once 1 % of the
  fleet stops heartbeating (killed) and stays silent past the licenses' ``release_after``, one pass
  of the release duty frees exactly those (the vendor's clock is moved by hand for that);
* no license has more live activations than its ``max_activations``, and the pool never has more
  leases than seats: instances beyond them are refused (``no_activations_left``, ``no_seats``),
  0 over-issued.
"""

from __future__ import annotations

import argparse
import secrets
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from mqtt_licensing.clients.floating import lease_request
from mqtt_licensing.core import labels
from mqtt_licensing.core.documents import ActivationCertificate, FloatingCertificate, sign_instance_request
from mqtt_licensing.core.errors import LicensingError
from mqtt_licensing.core.keys import key_digest
from mqtt_licensing.core.signing import fingerprint
from mqtt_licensing.servers.activation.service import ActivationService
from mqtt_licensing.servers.floating.service import FloatingService

PER_LICENSE = 1000  # activations per license: a fleet is many customers, not one key
HEARTBEAT, RELEASE_AFTER = 60, 600  # the licenses' heartbeat terms (issue 22 item 2)


class FleetClock:
    """The vendor's clock, moved by hand past ``RELEASE_AFTER`` (requests are signed with it)."""

    def __init__(self) -> None:
        self.now = int(time.time())

    def __call__(self) -> int:
        return self.now


@dataclass
class Phase:
    """One pass of the fleet over one operation."""

    name: str
    ops: int = 0
    seconds: float = 0.0
    cpu_seconds: float = 0.0  # this process: the service and the simulated instances' signing
    refusals: Counter[str] = field(default_factory=Counter)
    batches: int = 0  # transactions committed (group commit) during the phase

    @property
    def rate(self) -> float:
        return self.ops / self.seconds if self.seconds else 0.0

    def line(self) -> str:
        per_batch = self.ops / self.batches if self.batches else float("nan")
        refused = ", ".join(f"{k} {v}" for k, v in sorted(self.refusals.items())) or "none refused"
        return (
            f"{self.name}: {self.ops} in {self.seconds:.1f} s = {self.rate:,.0f}/s, "
            f"{self.cpu_seconds / max(self.ops, 1) * 1e6:,.0f} us CPU each (instances' signing included), "
            f"{per_batch:.1f} per commit; {refused}"
        )


def run_phase(
    name: str, items: Iterable[int], call: Callable[[int], None], threads: int, batches: Callable[[], int]
) -> Phase:
    """``call(item)`` for every item from ``threads`` threads; a LicensingError is a counted refusal."""
    phase = Phase(name)
    lock = threading.Lock()

    def one(item: int) -> None:
        try:
            call(item)
        except LicensingError as exc:
            with lock:
                phase.refusals[str(exc.code)] += 1
        with lock:
            phase.ops += 1

    before_batches, started, cpu = batches(), time.perf_counter(), time.process_time()
    with ThreadPoolExecutor(threads) as pool:
        for _ in pool.map(one, items):
            pass
    phase.seconds = time.perf_counter() - started
    phase.cpu_seconds = time.process_time() - cpu
    phase.batches = batches() - before_batches
    return phase


class VendorFleet:
    """``instances`` online instances over licenses of ``PER_LICENSE`` activations each, and one
    more instance per license once they are full, which must be refused."""

    def __init__(self, service: ActivationService, clock: FleetClock, instances: int) -> None:
        self.service = service
        self.clock = clock
        self.keys = [Ed25519PrivateKey.generate() for _ in range(instances)]
        per = min(PER_LICENSE, instances)
        # Each license exactly full once the fleet is activated (the last one holds the rest).
        sizes = [min(per, instances - start) for start in range(0, instances, per)]
        terms = {"features": ["mqtt_server"], "heartbeat_interval": HEARTBEAT, "release_after": RELEASE_AFTER}
        self.license_keys = [service.issue_license(max_activations=n, **terms)[1] for n in sizes]
        self.per = per
        self.activation_ids: list[str] = [""] * instances
        self.chains: list[str | None] = [None] * instances

    def _license_key(self, n: int) -> str:
        return self.license_keys[n // self.per]

    def _remember(self, n: int, certificate: bytes) -> None:
        self.chains[n] = ActivationCertificate.open(certificate, self.service.public_key).chain

    def activate(self, n: int) -> None:
        key = self._license_key(n)
        blob = sign_instance_request(
            self.keys[n], kind=labels.KIND_ACTIVATE, nonce=secrets.token_hex(16), created_at=self.clock(),
            key_digest=key_digest(key),
        )  # fmt: skip
        result = self.service.activate(key, blob)
        self.activation_ids[n] = result.activation_id
        self._remember(n, result.certificate)

    def check_in(self, n: int) -> None:
        blob = sign_instance_request(
            self.keys[n], kind=labels.KIND_CHECK_IN, nonce=secrets.token_hex(16), created_at=self.clock(),
            activation_id=self.activation_ids[n], chain=self.chains[n],
        )  # fmt: skip
        self._remember(n, self.service.check_in(blob))

    def heartbeat(self, n: int) -> None:
        blob = sign_instance_request(
            self.keys[n], kind=labels.KIND_HEARTBEAT, nonce=secrets.token_hex(16), created_at=self.clock(),
            activation_id=self.activation_ids[n],
        )  # fmt: skip
        self.service.heartbeat(blob)

    def one_too_many(self, n: int) -> None:
        """A new instance on license ``n``, which is full: must be refused."""
        key = self.license_keys[n]
        blob = sign_instance_request(
            Ed25519PrivateKey.generate(), kind=labels.KIND_ACTIVATE, nonce=secrets.token_hex(16),
            created_at=self.clock(), key_digest=key_digest(key),
        )  # fmt: skip
        self.service.activate(key, blob)

    def over_issued(self) -> int:
        """Live activations beyond a license's max_activations, over all licenses."""
        over = 0
        for lic in self.service.list_licenses():
            used = len(self.service.list_activations(lic["id"]))
            over += max(0, used - int(lic["max_activations"]))
        return over


class FloatingFleet:
    """``instances`` brokers leasing from one pool of ``seats`` seats (fewer: the rest are refused)."""

    def __init__(self, service: FloatingService, vendor: Ed25519PrivateKey, instances: int, seats: int) -> None:
        self.service = service
        self.keys = [Ed25519PrivateKey.generate() for _ in range(instances)]
        self.holders: list[int] = []  # the instances that got a seat
        raw = service.public_key
        certificate = FloatingCertificate(
            license_id="lic_fleet", key_mask="MQL1-FLEET", activation_id="act_fleet",
            server_fingerprint=fingerprint(raw), server_public_key=raw, seats=seats,
            features=("mqtt_server",), issued_at=int(time.time()), valid_until=None, expires_at=None,
            support_until=None, max_connections=None, request_nonce=None,
        ).sign(vendor)  # fmt: skip
        service.install_certificate(certificate)

    def acquire(self, n: int) -> None:
        self.service.acquire(lease_request(self.keys[n], labels.KIND_LEASE_ACQUIRE))
        self.holders.append(n)  # list.append is atomic: the worker threads share it

    def renew(self, n: int) -> None:
        self.service.renew(lease_request(self.keys[n], labels.KIND_LEASE_RENEW))

    def leases(self) -> tuple[int, int]:
        """(leases held, distinct instances holding them)."""
        status: dict[str, Any] = self.service.status()
        held = status["leases"]
        return len(held), len({lease["instance_fingerprint"] for lease in held})


@dataclass
class FleetReport:
    phases: list[Phase]
    vendor_over_issued: int
    seats: int
    leases_held: int
    lease_holders: int
    dead: int = 0  # instances "killed" (silent from the second heartbeat round on)
    released_dead: int = 0  # of them released by the release pass: must be all
    released_alive: int = 0  # live instances released: must be 0

    @property
    def lost(self) -> int:
        """Refusals of live instances (check-ins, heartbeats, renewals): must be 0."""
        live = ("check-in", "heartbeat", "renew")
        return sum(sum(p.refusals.values()) for p in self.phases if p.name.startswith(live))

    @property
    def over_issued(self) -> int:
        return self.vendor_over_issued + max(0, self.leases_held - self.seats) + self.leases_held - self.lease_holders


def soak(work: Path, instances: int, *, rounds: int = 2, threads: int = 16) -> FleetReport:
    """Activate and lease ``instances`` instances, then check in and renew ``rounds`` times each."""
    clock = FleetClock()
    vendor = ActivationService.open(work / "vendor", clock=clock)
    # A day's TTL: the fleet renews in rounds, not every TTL/3 on its own schedule, and at 100,000
    # instances the acquire phase alone outlasts the 600 s default (the HTTP soak of
    # benchmarks/run.py keeps the agent's schedule).
    floating = FloatingService.open(work / "floating", ttl=86_400, vendor_public_key=vendor.public_key)
    try:
        vf = VendorFleet(vendor, clock, instances)
        seats = max(1, instances - max(1, instances // 100))  # 1 % of the fleet finds no seat
        ff = FloatingFleet(floating, vendor.signing_key, instances, seats)
        v_batches = lambda: vendor.store.group.batches  # noqa: E731
        f_batches = lambda: floating.store.group.batches  # noqa: E731
        phases = [run_phase("activate", range(instances), vf.activate, threads, v_batches)]
        full = run_phase("activate one too many", range(len(vf.license_keys)), vf.one_too_many, threads, v_batches)
        phases.append(full)
        phases.append(run_phase("acquire", range(instances), ff.acquire, threads, f_batches))
        for r in range(rounds):
            phases.append(run_phase(f"check-in round {r + 1}", range(instances), vf.check_in, threads, v_batches))
            phases.append(run_phase(f"renew round {r + 1}", list(ff.holders), ff.renew, threads, f_batches))
        held, holders = ff.leases()
        refused_extra = full.refusals.get("no_activations_left", 0)
        over = vf.over_issued() + (len(vf.license_keys) - refused_extra)
        # Heartbeats: 1 % of the fleet dies (kill -9: no deactivation); the rest heartbeat on.
        # Once the dead have been silent past release_after and the living for less, one pass of
        # the release duty must free exactly the dead.
        alive, dead = (
            range(instances - max(1, instances // 100)),
            range(instances - max(1, instances // 100), instances),
        )
        phases.append(run_phase("heartbeat round 1", range(instances), vf.heartbeat, threads, v_batches))
        clock.now += RELEASE_AFTER - 2 * HEARTBEAT
        phases.append(run_phase("heartbeat round 2", alive, vf.heartbeat, threads, v_batches))
        clock.now += 3 * HEARTBEAT  # the dead: silent 660 s > 600; the living: 180 s
        released = set(vendor.release_silent())
        dead_ids = {vf.activation_ids[n] for n in dead}
        phases.append(run_phase("heartbeat round 3", alive, vf.heartbeat, threads, v_batches))
        return FleetReport(
            phases, over, seats, held, holders, len(dead), len(released & dead_ids), len(released - dead_ids)
        )
    finally:
        vendor.close()
        floating.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.fleet", description=__doc__.split("\n\n")[0])
    parser.add_argument("--instances", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=2, help="check-ins and renewals per instance")
    parser.add_argument("--threads", type=int, default=16)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="mql-fleet-") as work:
        report = soak(Path(work), args.instances, rounds=args.rounds, threads=args.threads)
    for phase in report.phases:
        print(phase.line())
    print(
        f"live instances refused: {report.lost}; live activations released: {report.released_alive}; "
        f"dead ones released: {report.released_dead} of {report.dead}; over-issued activations or seats: "
        f"{report.over_issued} (pool {report.seats} seats, {report.leases_held} leases held by "
        f"{report.lease_holders} instances)"
    )
    good = report.lost == 0 and report.over_issued == 0 and report.released_alive == 0
    return 0 if good and report.released_dead == report.dead else 1


if __name__ == "__main__":
    sys.exit(main())
