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
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):  # `python benchmarks/run.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    __package__ = "benchmarks"  # noqa: A001

from mqtt_licensing.clients.operator import LicenseClient  # noqa: E402
from mqtt_licensing.servers.common import free_port  # noqa: E402

from . import http_load, mqtt_load, processes, report  # noqa: E402
from .processes import ADMIN, ADMIN_PASSWORD, Floating, Process, Vendor  # noqa: E402
from .stats import Row, interleaved, markdown_table, text_table  # noqa: E402

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
    soak_ttl: int
    soak_seconds: float
    soak_concurrency: int
    idle_clients: int
    memory_rounds: int


QUICK = Plan(rounds=3, connect_seconds=1.0, connect_clients=8, throughput_seconds=1.0, roundtrip_seconds=0.5,
             http_seconds=0.7, http_concurrency=(1, 16, 128), lease_batch=200, lease_concurrency=16,
             soak_instances=1000, soak_ttl=15, soak_seconds=10, soak_concurrency=32, idle_clients=1000,
             memory_rounds=1)
FULL = Plan(rounds=7, connect_seconds=2.0, connect_clients=8, throughput_seconds=2.0, roundtrip_seconds=1.5,
            http_seconds=2.0, http_concurrency=(1, 16, 128), lease_batch=1000, lease_concurrency=16,
            soak_instances=10_000, soak_ttl=90, soak_seconds=120, soak_concurrency=64, idle_clients=1000,
            memory_rounds=3)


class Lab:
    """Everything started for a run; every process is stopped at the end (by its own pid)."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.processes: list[Process] = []
        self.vendor = Vendor(work)
        self.broker_key = ""
        self._brokers: dict[str, Process] = {}

    def track(self, process: Process) -> Process:
        self.processes.append(process)
        return process

    def stop(self, process: Process) -> None:
        process.stop()
        with contextlib.suppress(ValueError):
            self.processes.remove(process)

    def start_vendor(self) -> None:
        self.broker_key = self.vendor.issue()  # also creates the vendor's signing key
        self.vendor.start()
        assert self.vendor.process is not None
        self.track(self.vendor.process)

    def agent_config(self, port: int, state: str, **agent: object) -> dict[str, object]:
        return processes.agent_broker_config(port, self.work / state, vendor_url=self.vendor.url,
                                             vendor_public_key=str(self.vendor.public_key_path), **agent)

    def start_broker(self, name: str) -> Process:
        """bare | licensed | trial (the agent brokers keep their state folder across restarts)."""
        port = free_port()
        config = (processes.bare_broker_config(port) if name == "bare"
                  else self.agent_config(port, f"state-{name}"))
        process = self.track(processes.start_amqtt(name, config, self.work,
                                                   profile=os.environ.get("BENCH_PROFILE") == "1"))
        self._brokers[name] = process
        return process

    def broker(self, name: str) -> Process:
        """A long-lived broker, started on first use; the licensed one is activated over MQTT once."""
        if name in self._brokers:
            return self._brokers[name]
        if name == "mosquitto":
            self._brokers[name] = self.track(processes.start_mosquitto(self.work))
            return self._brokers[name]
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


# -- sections ------------------------------------------------------------------------------------

def mqtt_subjects(lab: Lab, with_mosquitto: bool) -> dict[str, Process]:
    names = ["bare", "licensed", "trial"] + (["mosquitto"] if with_mosquitto else [])
    return {name: lab.broker(name) for name in names}


LABEL = {"bare": "bare amqtt", "licensed": "agent, licensed", "trial": "agent, trial", "mosquitto": "Mosquitto"}


async def bench_connect(lab: Lab, plan: Plan) -> list[Row]:
    brokers = mqtt_subjects(lab, processes.mosquitto_available())

    def measure(name: str) -> Callable[[], Awaitable[float]]:
        port = brokers[name].port or 0
        return lambda: mqtt_load.connect_rate(port, duration=plan.connect_seconds, workers=plan.connect_clients,
                                              prefix=f"cycle-{name}")

    results = await interleaved(plan.rounds, {name: measure(name) for name in brokers})
    title = f"CONNECT/CONNACK/DISCONNECT cycles ({plan.connect_clients} clients)"
    rows = [Row.from_rounds(title, LABEL[n], results[n], LABEL["bare"], results["bare"], "cycles/s", ">= 0.95")
            for n in ("licensed", "trial")]
    if "mosquitto" in results:
        rows.append(Row.from_rounds(title, LABEL["mosquitto"], results["mosquitto"], LABEL["bare"],
                                    results["bare"], "cycles/s", note="the ceiling amqtt sets"))
    return rows


async def bench_throughput(lab: Lab, plan: Plan) -> list[Row]:
    rows: list[Row] = []
    for qos in (0, 1):
        brokers = mqtt_subjects(lab, qos == 0 and processes.mosquitto_available())
        brokers.pop("trial")  # the per-message path does not depend on the license state
        pairs = {name: await mqtt_load.PubSub(p.port or 0, qos, name=name).open() for name, p in brokers.items()}
        try:
            results = await interleaved(plan.rounds, {
                name: (lambda pair=pair: pair.throughput(plan.throughput_seconds)) for name, pair in pairs.items()})
        finally:
            for pair in pairs.values():
                await pair.close()
        title = f"QoS {qos} publish -> subscriber throughput"
        rows.append(Row.from_rounds(title, LABEL["licensed"], results["licensed"], LABEL["bare"], results["bare"],
                                    "msgs/s", ">= 0.98"))
        if "mosquitto" in results:
            rows.append(Row.from_rounds(title, LABEL["mosquitto"], results["mosquitto"], LABEL["bare"],
                                        results["bare"], "msgs/s"))
    return rows


async def bench_roundtrip(lab: Lab, plan: Plan) -> list[Row]:
    port = lab.broker("licensed").port or 0
    status = await mqtt_load.RoundTrip.license_status(port, username=ADMIN, password=ADMIN_PASSWORD)
    echo = await mqtt_load.RoundTrip.echo(port)
    try:
        results = await interleaved(plan.rounds, {"status": lambda: status.measure(plan.roundtrip_seconds),
                                                  "echo": lambda: echo.measure(plan.roundtrip_seconds)})
    finally:
        await status.close()
        await echo.close()
    return [Row.from_rounds("request -> reply round trip (agent broker, median)", "$license/status",
                            results["status"], "echo client", results["echo"], "ms", "<= 1.5")]


async def bench_vendor(lab: Lab, plan: Plan) -> list[Row]:
    instances = max(plan.http_concurrency)
    key = lab.vendor.issue("--activations", str(instances))
    rows: list[Row] = []
    async with http_load.new_client(instances, lab.vendor.url) as client:
        fleet = http_load.VendorInstances(client, key, instances)
        await fleet.activate_all()
        for c in plan.http_concurrency:
            results = await interleaved(plan.rounds, {
                "check-in": lambda c=c: fleet.check_ins(c, plan.http_seconds),
                "noop": lambda c=c: http_load.noop(client, c, plan.http_seconds)})
            check, base = results["check-in"], results["noop"]
            title = f"vendor check-ins, {c} concurrent instance{'s' if c > 1 else ''}"
            rows += [
                Row.from_rounds(title, "POST check-in", [r.rate for r in check], "GET /v1/noop",
                                [r.rate for r in base], "req/s", ">= 0.5"),
                Row.from_rounds(title, "check-in p50", [r.p50_ms for r in check], "noop p50",
                                [r.p50_ms for r in base], "ms"),
                Row.from_rounds(title, "check-in p99", [r.p99_ms for r in check], "noop p99",
                                [r.p99_ms for r in base], "ms"),
            ]
    return rows


@dataclass
class FloatingOutcome:
    rows: list[Row]
    soak: http_load.SoakResult


async def bench_floating(lab: Lab, plan: Plan) -> FloatingOutcome:
    server = Floating(lab.work, lab.vendor, seats=plan.soak_instances, ttl=plan.soak_ttl)
    lab.track(server.process)
    server.start()
    try:
        c = plan.lease_concurrency
        async with http_load.new_client(max(c, plan.soak_concurrency), server.url, token=server.token) as client:
            from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

            keys = [Ed25519PrivateKey.generate() for _ in range(plan.lease_batch)]
            results = await interleaved(plan.rounds, {
                "leases": lambda: http_load.lease_cycle(client, keys, c),
                "noop": lambda: http_load.noop(client, c, plan.http_seconds)})
            base = [r.rate for r in results["noop"]]
            title = f"floating leases, {c} concurrent instances"
            rows = [Row.from_rounds(title, f"{op}", [r[op] for r in results["leases"]], "GET /v1/noop", base,
                                    "ops/s") for op in ("acquire", "renew", "release")]
            soak = await http_load.soak(client, instances=plan.soak_instances, ttl=plan.soak_ttl,
                                        duration=plan.soak_seconds, parallel=plan.soak_concurrency)
    finally:
        lab.stop(server.process)
    return FloatingOutcome(rows, soak)


async def bench_memory(lab: Lab, plan: Plan) -> list[Row]:
    """Fresh broker processes (the other sections' history would blur RSS), 1,000 idle clients each."""
    lab.broker("licensed")  # make sure the licensed state folder exists and is activated
    for name in ("licensed", "bare"):  # restart both from scratch, same state folder for the agent
        if name in lab._brokers:
            lab.stop(lab._brokers.pop(name))

    async def rss(name: str, clients: int) -> float:
        process = lab.start_broker(name)
        try:
            connections = await mqtt_load.open_idle(process.port or 0, clients, prefix=f"idle-{name}")
            await asyncio.sleep(1.0)
            value = process.rss_kib() / 1024
            await mqtt_load.close_all(connections)
            return value
        finally:
            lab.stop(process)
            lab._brokers.pop(name, None)

    idle = await interleaved(plan.memory_rounds, {"licensed": lambda: rss("licensed", 0),
                                                  "bare": lambda: rss("bare", 0)}, warmup=False)
    loaded = await interleaved(plan.memory_rounds, {"licensed": lambda: rss("licensed", plan.idle_clients),
                                                    "bare": lambda: rss("bare", plan.idle_clients)}, warmup=False)
    return [
        Row.from_rounds("broker resident set (VmRSS), no clients", LABEL["licensed"], idle["licensed"],
                        LABEL["bare"], idle["bare"], "MiB"),
        Row.from_rounds(f"broker resident set (VmRSS), {plan.idle_clients:,} idle clients", LABEL["licensed"],
                        loaded["licensed"], LABEL["bare"], loaded["bare"], "MiB"),
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


async def run(plan: Plan, sections: list[str], work: Path) -> tuple[list[Row], http_load.SoakResult | None]:
    lab = Lab(work)
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
                new = await {"connect": bench_connect, "throughput": bench_throughput, "roundtrip": bench_roundtrip,
                             "vendor": bench_vendor, "memory": bench_memory}[section](lab, plan)
            rows += new
            print(text_table(new), file=sys.stderr)
            print(f"[{section}] {time.monotonic() - started:.0f} s", file=sys.stderr, flush=True)
    finally:
        lab.close()
    return rows, soak


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="about a minute: fewer rounds, shorter, smaller soak")
    parser.add_argument("--only", help=f"comma-separated sections (default all): {','.join(SECTIONS)}")
    parser.add_argument("--write-docs", action="store_true", help=f"rewrite the tables in {DOCS}")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (logs, configs, data)")
    args = parser.parse_args(argv)
    sections = [s.strip() for s in args.only.split(",")] if args.only else list(SECTIONS)
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown section(s): {', '.join(sorted(unknown))}")
    plan = QUICK if args.quick else FULL

    facts = report.machine_facts()
    facts["load average at start"] = report.load_average()
    started = time.monotonic()
    with lab_folder(args.keep) as work:
        rows, soak = asyncio.run(run(plan, sections, work))
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
    print(f"{sum(r.met is True for r in rows)} target(s) met, {len(missed)} missed"
          + ("; soak FAILED" if soak_failed else "; soak ok" if soak is not None else ""))
    if args.write_docs:
        tables = [("Results", markdown_table(rows))]
        if soak is not None:
            tables.append(("Floating server soak", soak_table(soak)))
        report.write_docs(DOCS, command=report.command_line(argv), facts=facts, tables=tables)
        print(f"written: {DOCS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
