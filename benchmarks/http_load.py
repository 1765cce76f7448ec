"""HTTP load on the vendor activation server and the floating license server.

Every simulated instance is real: its own Ed25519 identity, a real activation (or
lease) on the server, and a freshly signed request for every call - exactly what
an agent sends. Requests are signed before the clock starts for that request, so
latencies are the server's (plus loopback HTTP), not the load generator's signing.

The no-op endpoint (``GET /v1/noop``) of the same server at the same concurrency is
the baseline: the ceiling of the stack (uvicorn, Starlette, the JSON response, and
this httpx client) with no licensing work at all.
"""

from __future__ import annotations

import asyncio
import heapq
import secrets
import statistics
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from mqtt_licensing.clients.floating import lease_request
from mqtt_licensing.core import labels
from mqtt_licensing.core.documents import sign_instance_request
from mqtt_licensing.core.keys import key_digest
from mqtt_licensing.core.signing import b64, parse_envelope, unb64

Call = Callable[[httpx.AsyncClient, int], Awaitable[None]]


@dataclass
class LoadRound:
    """One closed-loop round: requests per second and latency percentiles (ms)."""

    rate: float
    p50_ms: float
    p99_ms: float


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def new_client(concurrency: int, base_url: str, *, token: str | None = None) -> httpx.AsyncClient:
    """One pooled client; keep-alive connections, as an agent would reuse them."""
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.AsyncClient(base_url=base_url, limits=limits, timeout=60.0, headers=headers, trust_env=False)


def expect(response: httpx.Response, *codes: int) -> Any:
    if response.status_code not in (codes or (200,)):
        raise RuntimeError(f"{response.request.method} {response.request.url.path} -> HTTP "
                           f"{response.status_code}: {response.text[:300]}")
    return response.json()


async def closed_loop(client: httpx.AsyncClient, concurrency: int, duration: float,
                      prepare: Callable[[int], Callable[[], Awaitable[httpx.Response]]]) -> LoadRound:
    """``concurrency`` workers each send one request at a time until ``duration`` is over.

    ``prepare(worker)`` does the untimed part (signing) and returns the timed call.
    """
    deadline = time.perf_counter() + duration
    latencies: list[float] = []

    async def worker(n: int) -> None:
        while time.perf_counter() < deadline:
            call = prepare(n)
            start = time.perf_counter()
            expect(await call())
            latencies.append(time.perf_counter() - start)

    start = time.perf_counter()
    await asyncio.gather(*(worker(n) for n in range(concurrency)))
    elapsed = time.perf_counter() - start
    return LoadRound(len(latencies) / elapsed, percentile(latencies, 0.5) * 1000, percentile(latencies, 0.99) * 1000)


async def noop(client: httpx.AsyncClient, concurrency: int, duration: float) -> LoadRound:
    return await closed_loop(client, concurrency, duration, lambda _n: lambda: client.get("/v1/noop"))


# -- vendor activation server ---------------------------------------------------------------------

class VendorInstances:
    """``count`` instances, each activated once online with ``license_key``; then check-ins."""

    def __init__(self, client: httpx.AsyncClient, license_key: str, count: int) -> None:
        self.client = client
        self.license_key = license_key
        self.keys = [Ed25519PrivateKey.generate() for _ in range(count)]
        self.activation_ids: list[str] = []

    async def activate_all(self, parallel: int = 8) -> None:
        gate = asyncio.Semaphore(parallel)

        async def activate(key: Ed25519PrivateKey) -> str:
            request = sign_instance_request(key, kind=labels.KIND_ACTIVATE, nonce=secrets.token_hex(16),
                                            created_at=int(time.time()), key_digest=key_digest(self.license_key))
            async with gate:
                response = await self.client.post("/v1/activations",
                                                  json={"license_key": self.license_key, "request": b64(request)})
            return str(expect(response, 200, 201)["activation_id"])

        self.activation_ids = list(await asyncio.gather(*(activate(k) for k in self.keys)))

    def _check_in(self, n: int) -> Callable[[], Awaitable[httpx.Response]]:
        request = sign_instance_request(self.keys[n], kind=labels.KIND_CHECK_IN, nonce=secrets.token_hex(16),
                                        created_at=int(time.time()), activation_id=self.activation_ids[n])
        body = {"request": b64(request)}
        return lambda: self.client.post("/v1/activations/check-in", json=body)

    async def check_ins(self, concurrency: int, duration: float) -> LoadRound:
        """Worker n checks in as instance n, over and over (a real check-in each time)."""
        assert concurrency <= len(self.keys)
        return await closed_loop(self.client, concurrency, duration, self._check_in)


# -- floating license server ----------------------------------------------------------------------

async def _in_parallel(items: list[Any], parallel: int, call: Callable[[Any], Awaitable[None]]) -> float:
    """Run ``call`` on every item with at most ``parallel`` in flight; return items per second."""
    queue = list(reversed(items))

    async def worker() -> None:
        while queue:
            await call(queue.pop())

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(parallel)))
    return len(items) / (time.perf_counter() - start)


def _lease_body(kind: str, key: Ed25519PrivateKey) -> dict[str, str]:
    return {"request": b64(lease_request(key, kind))}


def lease_expiry(lease_b64: str) -> int:
    """The lease's expires_at, read without verification (the load generator trusts its own server)."""
    return int(parse_envelope(unb64(lease_b64)).unverified_body()["expires_at"])


async def lease_cycle(client: httpx.AsyncClient, keys: list[Ed25519PrivateKey],
                      parallel: int) -> dict[str, float]:
    """Every instance acquires a seat, renews it, releases it; operations per second of each phase."""
    async def acquire(key: Ed25519PrivateKey) -> None:
        expect(await client.post("/v1/leases", json=_lease_body(labels.KIND_LEASE_ACQUIRE, key)))

    async def renew(key: Ed25519PrivateKey) -> None:
        expect(await client.post("/v1/leases/renew", json=_lease_body(labels.KIND_LEASE_RENEW, key)))

    async def release(key: Ed25519PrivateKey) -> None:
        if expect(await client.post("/v1/leases/release", json=_lease_body(labels.KIND_LEASE_RELEASE, key))
                  )["released"] is not True:
            raise RuntimeError("a held lease was not released")

    return {"acquire": await _in_parallel(keys, parallel, acquire),
            "renew": await _in_parallel(keys, parallel, renew),
            "release": await _in_parallel(keys, parallel, release)}


@dataclass
class SoakResult:
    instances: int
    ttl: int
    seconds: float
    acquires: int = 0
    renewals: int = 0
    leases_lost: int = 0
    failures: Counter[str] = field(default_factory=Counter)
    worst_lateness: float = 0.0  # how far behind schedule the latest renewal was sent (s)
    renew_p99_ms: float = 0.0
    seats_total: int = 0
    seats_used: int = 0
    seats_over_issued: int = 0
    extra_acquire: str = ""  # what one more instance got once the pool was full


async def soak(client: httpx.AsyncClient, *, instances: int, ttl: int, duration: float,
               parallel: int) -> SoakResult:
    """``instances`` agents lease a seat each, then renew every TTL/3 (the agent's schedule) for ``duration``.

    A lease is lost when a renewal is refused or is sent after the lease expired.
    At the end the server's admin status must show every instance holding exactly
    one seat, no more seats used than the pool has, and one more instance must be
    refused with ``no_seats``.
    """
    keys = [Ed25519PrivateKey.generate() for _ in range(instances)]
    result = SoakResult(instances, ttl, duration)
    expiry = [0] * instances
    due: list[tuple[float, int]] = [(0.0, n) for n in range(instances)]  # (monotonic due time, instance)
    heapq.heapify(due)
    latencies: list[float] = []
    start = time.monotonic()
    end = start + duration
    offset = time.time() - time.monotonic()

    async def worker() -> None:
        while due:
            when, n = heapq.heappop(due)
            now = time.monotonic()
            if when > end:
                return
            if when > now:
                await asyncio.sleep(when - now)
            sent = time.monotonic()
            if when:
                result.worst_lateness = max(result.worst_lateness, sent - when)
            renewing = expiry[n] != 0
            if renewing and sent + offset >= expiry[n]:
                result.leases_lost += 1  # too late: the seat may already be someone else's
            path, kind = ("/v1/leases/renew", labels.KIND_LEASE_RENEW) if renewing else (
                "/v1/leases", labels.KIND_LEASE_ACQUIRE)
            body = _lease_body(kind, keys[n])
            t0 = time.perf_counter()
            response = await client.post(path, json=body)
            if response.status_code != 200:
                code = response.json().get("error", {}).get("code", str(response.status_code))
                result.failures[f"{'renew' if renewing else 'acquire'}:{code}"] += 1
                if renewing:
                    result.leases_lost += 1
                expiry[n] = 0  # acquire again, as the agent does
                heapq.heappush(due, (time.monotonic() + 1.0, n))
                continue
            if renewing:
                latencies.append(time.perf_counter() - t0)
                result.renewals += 1
            else:
                result.acquires += 1
            expiry[n] = lease_expiry(response.json()["lease"])
            heapq.heappush(due, (time.monotonic() + ttl / 3, n))

    await asyncio.gather(*(worker() for _ in range(parallel)))
    result.seconds = time.monotonic() - start
    result.renew_p99_ms = percentile(latencies, 0.99) * 1000 if latencies else float("nan")

    status = expect(await client.get("/v1/admin/status"))
    seats = status["seats"]
    fingerprints = Counter(lease["instance_fingerprint"] for lease in status["leases"])
    result.seats_total, result.seats_used = int(seats["total"]), int(seats["used"])
    duplicates = sum(c - 1 for c in fingerprints.values())
    result.seats_over_issued = max(0, result.seats_used - result.seats_total) + duplicates
    held = sum(1 for e in expiry if e)
    if result.seats_used != held:
        result.failures[f"server holds {result.seats_used} leases, clients hold {held}"] += 1
    extra = await client.post("/v1/leases", json=_lease_body(labels.KIND_LEASE_ACQUIRE,
                                                              Ed25519PrivateKey.generate()))
    result.extra_acquire = f"HTTP {extra.status_code} " + (
        extra.json().get("error", {}).get("code", "lease granted") if extra.status_code != 200 else "lease granted")
    if extra.status_code == 200:
        result.seats_over_issued += 1

    async def release(key: Ed25519PrivateKey) -> None:
        await client.post("/v1/leases/release", json=_lease_body(labels.KIND_LEASE_RELEASE, key))

    await _in_parallel(keys, parallel, release)
    return result


def median_round(rounds: list[LoadRound]) -> LoadRound:
    return LoadRound(statistics.median(r.rate for r in rounds), statistics.median(r.p50_ms for r in rounds),
                     statistics.median(r.p99_ms for r in rounds))
