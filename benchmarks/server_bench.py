"""The server sections of ``python -m benchmarks``: vendor check-ins and heartbeats, floating leases
and the floating soak, each against ``GET /v1/noop`` on the same server in the same run."""

from __future__ import annotations

import math
import statistics
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from . import http_load
from .http_wire import Pool
from .lab import Lab, Plan
from .processes import Floating, Process
from .stats import Measure, Row, Sample, interleaved


async def metered_load(
    process: Process, run: Callable[[], Awaitable[http_load.LoadRound]], into: list[http_load.LoadRound]
) -> Sample:
    """An HTTP round; the full LoadRound (latencies too) is kept in ``into``."""
    before = process.cpu_seconds()
    load = await run()
    into.append(load)
    return Sample(load.rate, (process.cpu_seconds() - before) / max(load.ops, 1) * 1e6)


def measure_load(
    process: Process, run: Callable[[], Awaitable[http_load.LoadRound]], into: list[http_load.LoadRound]
) -> Measure:
    return lambda: metered_load(process, run, into)


def latency_rows(
    title: str, subject: str, loads: list[http_load.LoadRound], noops: list[http_load.LoadRound]
) -> list[Row]:
    return [
        Row.from_rounds(
            title,
            f"{subject} {q}",
            [Sample(getattr(r, f"{q}_ms")) for r in loads],
            f"noop {q}",
            [Sample(getattr(r, f"{q}_ms")) for r in noops],
            "ms",
        )
        for q in ("p50", "p99")
    ]


# A fleet's figures: one server on SQLite takes 2,000 check-ins or heartbeats a second from 16
# instances (the heartbeat row carries it: it is the light request a fleet sends most), and 1,000
# lease renewals a second (100,000 brokers at the 600 s TTL, renewing every TTL/3, send 500 a second).
FLEET_TARGET, RENEWALS_TARGET = ">= 2000 req/s", ">= 1000 ops/s"


def vendor_target(kind: str, concurrency: int) -> str:
    if concurrency == 16:
        return FLEET_TARGET if kind == "heartbeat" else ""
    return ">= 0.5"  # of the no-op's rate: the older target, kept to show how far a request is from free


async def bench_vendor(lab: Lab, plan: Plan) -> list[Row]:
    instances = max(plan.http_concurrency)
    # Heartbeat terms as a fleet's license carries them (issue 22 item 2), so heartbeats are real.
    key = lab.vendor.issue("--activations", str(instances), "--heartbeat-interval", "60", "--release-after", "600")
    server = lab.vendor.process
    assert server is not None
    rows: list[Row] = []
    async with Pool(lab.vendor.url, instances) as pool:
        fleet = http_load.VendorInstances(pool, key, instances)
        await fleet.activate_all()
        for c in plan.http_concurrency:
            plural = "s" if c > 1 else ""
            kinds = {"check-in": fleet.check_ins, "heartbeat": fleet.heartbeats}
            loads: dict[str, list[http_load.LoadRound]] = {k: [] for k in (*kinds, "noop")}
            measures = {
                k: measure_load(server, partial(run, c, plan.http_seconds), loads[k]) for k, run in kinds.items()
            }
            measures["noop"] = measure_load(server, partial(http_load.noop, pool, c, plan.http_seconds), loads["noop"])
            results = await interleaved(plan.rounds, measures)
            for kind in kinds:
                title = f"vendor {kind}s, {c} concurrent instance{plural}"
                rows.append(
                    Row.from_rounds(
                        title,
                        f"POST {kind}",
                        results[kind],
                        "GET /v1/noop",
                        results["noop"],
                        "req/s",
                        vendor_target(kind, c),
                    )
                )
                rows += latency_rows(title, kind, loads[kind][1:], loads["noop"][1:])  # [0]: warm-up
    return rows


@dataclass
class FloatingOutcome:
    rows: list[Row]
    soak: http_load.SoakResult


async def bench_floating(lab: Lab, plan: Plan) -> FloatingOutcome:
    c = plan.lease_concurrency
    server = Floating(
        lab.work,
        lab.vendor,
        seats=plan.soak_instances,
        ttl=600,
        database_url=lab.databases.get("floating"),
        workers=lab.workers.get("floating", 1),
    )
    lab.track(server.process)
    server.start()
    try:
        async with Pool(server.url, max(c, plan.soak_concurrency), token=server.token) as pool:
            keys = [Ed25519PrivateKey.generate() for _ in range(plan.lease_batch)]
            cycles: list[dict[str, tuple[float, float]]] = []

            async def cycle() -> Sample:
                cycles.append(await http_load.lease_cycle(pool, keys, c, server.process.cpu_seconds))
                return Sample(math.nan)

            noops: list[http_load.LoadRound] = []
            results = await interleaved(
                plan.rounds,
                {
                    "leases": cycle,
                    "noop": measure_load(server.process, partial(http_load.noop, pool, c, plan.http_seconds), noops),
                },
            )
            title = f"floating leases, {c} concurrent instances"
            rows = [
                Row.from_rounds(
                    title,
                    op,
                    [Sample(*r[op]) for r in cycles[1:]],
                    "GET /v1/noop",
                    results["noop"],
                    "ops/s",
                    RENEWALS_TARGET if op == "renew" and c == 16 else "",
                )
                for op in ("acquire", "renew", "release")
            ]
            # The soak's pace follows what this server just showed it can renew (see soak_plan).
            renew_rate = statistics.median(r["renew"][0] for r in cycles[1:])
            ttl, seconds = soak_plan(plan, renew_rate)
        lab.stop(server.process)
        server.restart(ttl=ttl)
        lab.track(server.process)
        async with Pool(server.url, plan.soak_concurrency, token=server.token) as pool:
            soak = await http_load.soak(
                pool, instances=plan.soak_instances, ttl=ttl, duration=seconds, parallel=plan.soak_concurrency
            )
    finally:
        lab.stop(server.process)
    return FloatingOutcome(rows, soak)


def soak_plan(plan: Plan, renew_rate: float) -> tuple[int, float]:
    """(TTL, duration) for the soak: as short a TTL as the server can sustain for the fleet.

    Instances renew every TTL/3, so the fleet asks for ``3 * instances / TTL``
    renewals per second; the TTL is chosen so that this is at most
    ``soak_load`` of the renewal rate the server just measured (never below
    ``soak_ttl``). The soak lasts at least ``soak_seconds`` and at least
    ``soak_periods`` renewal periods, so every instance renews more than once.
    """
    ttl = max(plan.soak_ttl, math.ceil(3 * plan.soak_instances / (plan.soak_load * renew_rate)))
    return ttl, max(plan.soak_seconds, plan.soak_periods * ttl / 3)


def soak_table(s: http_load.SoakResult) -> str:
    failures = ", ".join(f"{k} x{v}" for k, v in s.failures.items()) or "none"
    rows = [
        ("instances (one Ed25519 identity each)", f"{s.instances:,}"),
        ("lease TTL / renewal period", f"{s.ttl} s / {s.ttl / 3:.0f} s (TTL/3, as the agent)"),
        ("soak duration", f"{s.seconds:.0f} s"),
        ("acquisitions / renewals", f"{s.acquires:,} / {s.renewals:,}"),
        ("renewal latency p99", f"{s.renew_p99_ms:.1f} ms"),
        ("worst lateness of a renewal vs its schedule", f"{s.worst_lateness:.2f} s"),
        ("failed requests", failures),
        ("**leases lost** (target 0)", f"**{s.leases_lost}**"),
        ("seats total / used at the end (admin status)", f"{s.seats_total:,} / {s.seats_used:,}"),
        ("**seats over-issued** (target 0)", f"**{s.seats_over_issued}**"),
        ("one more instance once the pool is full", s.extra_acquire),
    ]
    return "\n".join(["| floating soak | |", "|---|--:|", *[f"| {k} | {v} |" for k, v in rows]])
