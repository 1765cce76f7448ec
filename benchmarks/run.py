"""One command for every benchmark:

    .venv/bin/python -m benchmarks [--quick] [--only connect,throughput,...] [--write-docs]

Sections: connect, throughput, roundtrip, vendor, floating, memory. Each prints rows
of "subject against a baseline measured in the same run" (see :mod:`.stats`).
Processes under test are started here and stopped here, by pid, whatever happens.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

if __package__ in (None, ""):  # `python benchmarks/run.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    __package__ = "benchmarks"

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from mqtt_licensing.clients.mqtt import LicenseClient
from mqtt_licensing.servers._run import free_port

from . import http_load, mqtt_load, processes, report
from .http_wire import Pool
from .processes import ADMIN, ADMIN_PASSWORD, Floating, Process, Vendor
from .stats import Measure, Row, Sample, interleaved, markdown_table, text_table

SECTIONS = ("connect", "throughput", "roundtrip", "vendor", "floating", "memory")
DOCS = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"


@dataclass(frozen=True)
class Plan:
    """How long and how big: --quick trades precision for a run of about a minute."""

    rounds: int
    connect_seconds: float
    connect_clients: int  # parallel CONNECT cyclers; below the trial's 25 connections
    throughput_seconds: float
    roundtrip_seconds: float
    http_seconds: float
    http_concurrency: tuple[int, ...]
    lease_batch: int  # instances per acquire/renew/release round
    lease_concurrency: int
    soak_instances: int
    soak_ttl: int  # shortest TTL; longer when the server cannot renew the fleet that often (see soak_plan)
    soak_seconds: float
    soak_concurrency: int
    idle_clients: int
    memory_rounds: int
    soak_load: float  # the fleet's renewal rate as a share of the server's measured renewal rate
    soak_periods: float  # the soak lasts at least this many renewal periods (TTL/3)


QUICK = Plan(
    rounds=3,
    connect_seconds=0.8,
    connect_clients=8,
    throughput_seconds=0.8,
    roundtrip_seconds=0.5,
    http_seconds=0.5,
    http_concurrency=(1, 16, 128),
    lease_batch=60,
    lease_concurrency=16,
    soak_instances=200,
    soak_ttl=15,
    soak_seconds=8,
    soak_concurrency=32,
    idle_clients=1000,
    memory_rounds=1,
    soak_load=0.8,
    soak_periods=2.5,
)
FULL = Plan(
    rounds=7,
    connect_seconds=2.0,
    connect_clients=8,
    throughput_seconds=2.0,
    roundtrip_seconds=1.5,
    http_seconds=2.0,
    http_concurrency=(1, 16, 128),
    lease_batch=250,
    lease_concurrency=16,
    soak_instances=10_000,
    soak_ttl=30,
    soak_seconds=120,
    soak_concurrency=64,
    idle_clients=1000,
    memory_rounds=3,
    soak_load=0.8,
    soak_periods=2.5,
)


class Lab:
    """Everything started for a run; every process is stopped at the end (by its own pid)."""

    def __init__(self, work: Path, databases: dict[str, str] | None = None, vendor_workers: int = 1) -> None:
        self.work = work
        self.vendor_workers = vendor_workers
        self.processes: list[Process] = []
        self.databases = databases or {}  # server name -> database URL (default: SQLite)
        self.vendor = Vendor(work, self.databases.get("vendor"))
        self.broker_key = ""
        self.brokers: dict[str, Process] = {}

    def track(self, process: Process) -> Process:
        self.processes.append(process)
        return process

    def stop(self, process: Process) -> None:
        process.stop()
        with contextlib.suppress(ValueError):
            self.processes.remove(process)

    def start_vendor(self) -> None:
        self.broker_key = self.vendor.issue()  # also creates the vendor's signing key
        self.vendor.start(self.vendor_workers)
        assert self.vendor.process is not None
        self.track(self.vendor.process)

    def agent_config(self, port: int, state: str, **agent: object) -> dict[str, object]:
        return processes.agent_broker_config(
            port,
            self.work / state,
            vendor_url=self.vendor.url,
            vendor_public_key=str(self.vendor.public_key_path),
            **agent,
        )

    def start_broker(self, name: str) -> Process:
        """bare | licensed | trial (the agent brokers keep their state folder across restarts)."""
        port = free_port()
        config = processes.bare_broker_config(port) if name == "bare" else self.agent_config(port, f"state-{name}")
        process = self.track(
            processes.start_amqtt(name, config, self.work, profile=os.environ.get("BENCH_PROFILE") == "1")
        )
        self.brokers[name] = process
        return process

    def broker(self, name: str) -> Process:
        """A long-lived broker, started on first use; the licensed one is activated over MQTT once."""
        if name in self.brokers:
            return self.brokers[name]
        if name == "mosquitto":
            self.brokers[name] = self.track(processes.start_mosquitto(self.work))
            return self.brokers[name]
        process = self.start_broker(name)
        if name == "licensed" and not (self.work / "state-licensed" / ".activated").exists():
            activate(process.port or 0, self.broker_key)
            (self.work / "state-licensed" / ".activated").touch()
        return process

    def close(self) -> None:
        for process in reversed(self.processes):
            process.stop()
        self.processes.clear()


def activate(port: int, key: str) -> None:
    """The operator's way: publish ``$license/activate`` as the admin, wait for the reply."""
    with LicenseClient("127.0.0.1", port, username=ADMIN, password=ADMIN_PASSWORD, timeout=30) as client:
        reply = client.request("activate", {"license_key": key})
    state = reply.get("status", {}).get("state")
    if state != "active":
        raise RuntimeError(f"activation over MQTT left the agent in state {state!r}: {reply}")


async def metered(process: Process, run: Callable[[], Awaitable[tuple[float, int]]]) -> Sample:
    """Run one round (-> (figure, operations)) and charge the process's CPU time to its operations."""
    before = process.cpu_seconds()
    value, ops = await run()
    return Sample(value, (process.cpu_seconds() - before) / max(ops, 1) * 1e6)


async def plain(run: Callable[[], Awaitable[float]]) -> Sample:
    return Sample(await run())


# -- sections ------------------------------------------------------------------------------------


def mqtt_subjects(lab: Lab, with_mosquitto: bool) -> dict[str, Process]:
    names = ["bare", "licensed", "trial"] + (["mosquitto"] if with_mosquitto else [])
    return {name: lab.broker(name) for name in names}


LABEL = {
    "bare": "bare amqtt",
    "licensed": "agent, licensed",
    "trial": "agent, trial",
    "licensed+password": "agent, licensed, password clients",
    "trial+password": "agent, trial, password clients",
    "mosquitto": "Mosquitto",
}


async def bench_connect(lab: Lab, plan: Plan) -> list[Row]:
    """Anonymous clients on every broker, and password clients on the agent's (verified once per
    broker, then from its cache), each against bare amqtt with anonymous clients: its cheapest."""
    brokers = mqtt_subjects(lab, processes.mosquitto_available())
    login = (processes.USER, processes.USER_PASSWORD)
    subjects = {name: (name, None) for name in brokers} | {
        f"{name}+password": (name, login) for name in ("licensed", "trial")
    }

    def measure(subject: str) -> Callable[[], Awaitable[Sample]]:
        name, credentials = subjects[subject]
        broker = brokers[name]
        return lambda: metered(
            broker,
            lambda: mqtt_load.connect_rate(
                broker.port or 0,
                duration=plan.connect_seconds,
                workers=plan.connect_clients,
                prefix=f"cycle-{subject}",
                login=credentials,
            ),
        )

    results = await interleaved(plan.rounds, {subject: measure(subject) for subject in subjects})
    title = f"CONNECT/CONNACK/DISCONNECT cycles ({plan.connect_clients} clients)"
    rows = [
        Row.from_rounds(title, LABEL[n], results[n], LABEL["bare"], results["bare"], "cycles/s", ">= 0.95")
        for n in ("licensed", "trial", "licensed+password", "trial+password")
    ]
    if "mosquitto" in results:
        rows.append(
            Row.from_rounds(title, LABEL["mosquitto"], results["mosquitto"], LABEL["bare"], results["bare"], "cycles/s")
        )
    return rows


def measure_throughput(broker: Process, pair: mqtt_load.PubSub, seconds: float) -> Measure:
    return lambda: metered(broker, lambda: pair.throughput(seconds))


async def bench_throughput(lab: Lab, plan: Plan) -> list[Row]:
    rows: list[Row] = []
    for qos in (0, 1):
        brokers = mqtt_subjects(lab, qos == 0 and processes.mosquitto_available())
        brokers.pop("trial")  # the per-message path does not depend on the license state
        pairs = {name: await mqtt_load.PubSub(p.port or 0, qos, name=name).open() for name, p in brokers.items()}
        try:
            results = await interleaved(
                plan.rounds,
                {
                    name: measure_throughput(brokers[name], pair, plan.throughput_seconds)
                    for name, pair in pairs.items()
                },
            )
        finally:
            for pair in pairs.values():
                await pair.close()
        title = f"QoS {qos} publish -> subscriber throughput"
        rows.append(
            Row.from_rounds(
                title, LABEL["licensed"], results["licensed"], LABEL["bare"], results["bare"], "msgs/s", ">= 0.98"
            )
        )
        if "mosquitto" in results:
            rows.append(
                Row.from_rounds(
                    title, LABEL["mosquitto"], results["mosquitto"], LABEL["bare"], results["bare"], "msgs/s"
                )
            )
    return rows


async def bench_roundtrip(lab: Lab, plan: Plan) -> list[Row]:
    port = lab.broker("licensed").port or 0
    status = await mqtt_load.RoundTrip.license_status(port, username=ADMIN, password=ADMIN_PASSWORD)
    echo = await mqtt_load.RoundTrip.echo(port)
    try:
        results = await interleaved(
            plan.rounds,
            {
                "status": lambda: plain(lambda: status.measure(plan.roundtrip_seconds)),
                "echo": lambda: plain(lambda: echo.measure(plan.roundtrip_seconds)),
            },
        )
    finally:
        await status.close()
        await echo.close()
    return [
        Row.from_rounds(
            "request -> reply round trip (agent broker, median)",
            "$license/status",
            results["status"],
            "echo client",
            results["echo"],
            "ms",
            "<= 1.5",
        )
    ]


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
                        title, f"POST {kind}", results[kind], "GET /v1/noop", results["noop"], "req/s", ">= 0.5"
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
        lab.work, lab.vendor, seats=plan.soak_instances, ttl=600, database_url=lab.databases.get("floating")
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
                    title, op, [Sample(*r[op]) for r in cycles[1:]], "GET /v1/noop", results["noop"], "ops/s"
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


async def bench_memory(lab: Lab, plan: Plan) -> list[Row]:
    """Fresh broker processes (the other sections' history would blur RSS), then 1,000 idle clients each."""
    lab.broker("licensed")  # make sure the licensed state folder exists and is activated
    for name in ("licensed", "bare"):  # from here on, each round starts its own broker
        if name in lab.brokers:
            lab.stop(lab.brokers.pop(name))
    empty: dict[str, list[Sample]] = {"licensed": [], "bare": []}

    async def rss(name: str) -> Sample:
        process = lab.start_broker(name)
        try:
            await asyncio.sleep(1.0)
            empty[name].append(Sample(process.rss_kib() / 1024))
            connections = await mqtt_load.open_idle(process.port or 0, plan.idle_clients, prefix=f"idle-{name}")
            await asyncio.sleep(1.0)
            value = process.rss_kib() / 1024
            await mqtt_load.close_all(connections)
            return Sample(value)
        finally:
            lab.stop(process)
            lab.brokers.pop(name, None)

    loaded = await interleaved(
        plan.memory_rounds, {"licensed": lambda: rss("licensed"), "bare": lambda: rss("bare")}, warmup=False
    )
    return [
        Row.from_rounds(
            "broker resident set (VmRSS), no clients",
            LABEL["licensed"],
            empty["licensed"],
            LABEL["bare"],
            empty["bare"],
            "MiB",
        ),
        Row.from_rounds(
            f"broker resident set (VmRSS), {plan.idle_clients:,} idle clients",
            LABEL["licensed"],
            loaded["licensed"],
            LABEL["bare"],
            loaded["bare"],
            "MiB",
        ),
    ]


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


# -- main ------------------------------------------------------------------------------------------


@contextlib.contextmanager
def lab_folder(keep: bool) -> Iterator[Path]:
    work = Path(tempfile.mkdtemp(prefix="mqtt-licensing-bench-"))
    try:
        yield work
    finally:
        if keep:
            print(f"work folder kept: {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)


@contextlib.contextmanager
def databases(postgres: bool) -> Iterator[dict[str, str]]:
    """SQLite ({}) or one database per server on a PostgreSQL cluster started (and removed) here."""
    if not postgres:
        yield {}
        return
    from tests.helpers.postgres import PostgresCluster, available  # a dev tool: the tests' cluster

    reason = available()
    if reason is not None:
        raise SystemExit(f"--postgres: {reason}")
    cluster = PostgresCluster.start(durable=True)
    try:
        yield {"vendor": cluster.new_database(), "floating": cluster.new_database()}
    finally:
        cluster.stop()


async def run(
    plan: Plan, sections: list[str], work: Path, databases: dict[str, str] | None = None, vendor_workers: int = 1
) -> tuple[list[Row], http_load.SoakResult | None]:
    lab = Lab(work, databases, vendor_workers)
    rows: list[Row] = []
    soak: http_load.SoakResult | None = None
    try:
        lab.start_vendor()
        for section in sections:
            started = time.monotonic()
            print(f"[{section}] ...", file=sys.stderr, flush=True)
            if section == "floating":
                outcome = await bench_floating(lab, plan)
                new, soak = outcome.rows, outcome.soak
            else:
                new = await {
                    "connect": bench_connect,
                    "throughput": bench_throughput,
                    "roundtrip": bench_roundtrip,
                    "vendor": bench_vendor,
                    "memory": bench_memory,
                }[section](lab, plan)
            rows += new
            print(text_table(new), file=sys.stderr)
            print(f"[{section}] {time.monotonic() - started:.0f} s", file=sys.stderr, flush=True)
    finally:
        lab.close()
    return rows, soak


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="about a minute: fewer rounds, shorter, smaller soak")
    parser.add_argument("--only", help=f"comma-separated sections (default all): {','.join(SECTIONS)}")
    parser.add_argument("--write-docs", action="store_true", help=f"rewrite the tables in {DOCS}")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (logs, configs, data)")
    parser.add_argument(
        "--postgres",
        action="store_true",
        help="run the vendor and floating servers on a throwaway PostgreSQL cluster (durable settings) "
        "instead of SQLite",
    )
    parser.add_argument(
        "--vendor-workers",
        type=int,
        default=1,
        metavar="N",
        help="run the vendor server with N worker processes (vendor serve --workers N; default 1)",
    )
    args = parser.parse_args(argv)
    sections = [s.strip() for s in args.only.split(",")] if args.only else list(SECTIONS)
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown section(s): {', '.join(sorted(unknown))}")
    plan = QUICK if args.quick else FULL

    facts = report.machine_facts()
    facts["load average at start"] = report.load_average()
    started = time.monotonic()
    with lab_folder(args.keep) as work, databases(args.postgres) as dbs:
        if dbs:
            facts["database"] = "PostgreSQL (throwaway cluster, fsync on)"
        if args.vendor_workers > 1:
            facts["vendor server"] = f"{args.vendor_workers} worker processes"
        rows, soak = asyncio.run(run(plan, sections, work, dbs, args.vendor_workers))
    facts["load average at end"] = report.load_average()
    facts["run time"] = f"{time.monotonic() - started:.0f} s"

    print()
    print(text_table(rows))
    if soak is not None:
        print()
        print(soak_table(soak))
    missed = [r for r in rows if r.met is False]
    soak_failed = soak is not None and (soak.leases_lost or soak.seats_over_issued)
    print()
    print(
        f"{sum(r.met is True for r in rows)} target(s) met, {len(missed)} missed"
        + ("; soak FAILED" if soak_failed else "; soak ok" if soak is not None else "")
    )
    if args.write_docs:
        tables = [("Results", markdown_table(rows))]
        if soak is not None:
            tables.append(("Floating server soak", soak_table(soak)))
        report.write_docs(DOCS, command=report.command_line(argv), facts=facts, tables=tables)
        print(f"written: {DOCS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
