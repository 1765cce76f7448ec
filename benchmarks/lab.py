"""What a benchmark run starts and how long it measures: the :class:`Plan` (--quick or full), the
:class:`Lab` that owns every process it starts (stopped by pid at the end, whatever happens), the
work folder and the optional PostgreSQL cluster, and the CPU-charging round helpers."""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from mqtt_licensing.clients.mqtt import LicenseClient
from mqtt_licensing.servers._run import free_port

from . import processes
from .processes import ADMIN, ADMIN_PASSWORD, Process, Vendor
from .stats import Sample


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

    def __init__(
        self, work: Path, databases: dict[str, str] | None = None, workers: dict[str, int] | None = None
    ) -> None:
        self.work = work
        self.workers = workers or {}  # server name -> worker processes (`serve --workers N`; default 1)
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
        self.vendor.start(self.workers.get("vendor", 1))
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
