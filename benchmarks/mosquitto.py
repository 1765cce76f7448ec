"""Licensed Mosquitto (the plugin and the agent beside it) against bare Mosquitto, side by side:

    .venv/bin/python -m benchmarks.mosquitto [--quick] [--keep]

CONNECT cycles, QoS 0 and QoS 1 throughput, the broker's resident set with 1,000 idle clients,
and the ``$license/status`` round trip (against an echo client on the same broker). Both brokers
are Debian's Mosquitto with the same settings; only the plugin differs. The licensed one holds an
activated license (2,000 connections) from a vendor server started here.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import shutil
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    __package__ = "benchmarks"

import yaml

from mqtt_licensing.adapters.mosquitto.build import build
from mqtt_licensing.core.errors import LicensingError
from mqtt_licensing.servers._run import free_port

from . import mqtt_load, processes
from .lab import FULL, QUICK, Plan, activate, lab_folder, metered, plain
from .mqtt_bench import measure_throughput
from .processes import ADMIN, ADMIN_PASSWORD, CLI, Process, Vendor
from .stats import Row, Sample, interleaved, text_table

BASE_CONF = "persistence false\nlog_dest stderr\nlog_type error\nlog_type warning\nmax_queued_messages 100000\n"


class MosquittoLab:
    def __init__(self, work: Path) -> None:
        self.work = work
        self.processes: list[Process] = []
        self.vendor = Vendor(work)
        self.plugin = build(work / "mqtt_licensing_mosquitto.so")
        self.brokers: dict[str, Process] = {}
        self.agent: Process | None = None

    def track(self, process: Process) -> Process:
        self.processes.append(process)
        return process

    def start_vendor(self) -> str:
        key = self.vendor.issue("--max-connections", "2000")
        self.vendor.start()
        assert self.vendor.process is not None
        self.track(self.vendor.process)
        return key

    def start_broker(self, name: str) -> Process:
        folder = self.work / name
        folder.mkdir(exist_ok=True)
        port = free_port()
        conf = f"listener {port} 127.0.0.1\nallow_anonymous true\n{BASE_CONF}user {getpass.getuser()}\n"
        if name == "licensed":
            conf += f"plugin {self.plugin}\nplugin_opt_socket {folder / 'agent.sock'}\n"
        (folder / "mosquitto.conf").write_text(conf)
        argv = [shutil.which("mosquitto") or "mosquitto", "-c", str(folder / "mosquitto.conf")]
        process = self.track(Process(f"mosquitto-{name}", argv, folder / "mosquitto.log", port).start())
        self.brokers[name] = process
        return process

    def start_agent(self, key: str | None) -> None:
        folder = self.work / "licensed"
        section = {
            "state_dir": str(self.work / "state-licensed"),
            "vendor_url": self.vendor.url,
            "vendor_public_key": str(self.vendor.public_key_path),
            "admins": {ADMIN: processes._ADMIN_HASH},
        }
        path = folder / "agent.yaml"
        path.write_text(yaml.safe_dump({"mosquitto": {"socket": str(folder / "agent.sock")}, "agent": section}))
        argv = [*CLI, "mosquitto", "agent", "-c", str(path)]
        self.agent = self.track(Process("agent", argv, folder / "agent.log").start())
        port = self.brokers["licensed"].port or 0
        deadline = time.monotonic() + 30
        while True:
            try:
                if key is not None:
                    activate(port, key)
                return
            except (LicensingError, RuntimeError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def close(self) -> None:
        for process in reversed(self.processes):
            process.stop()


async def bench(lab: MosquittoLab, plan: Plan) -> list[Row]:
    bare, licensed = lab.brokers["bare"], lab.brokers["licensed"]
    subjects = {"licensed": licensed, "bare": bare}
    rows: list[Row] = []

    def cycles(name: str) -> Sample:
        broker = subjects[name]
        return metered(
            broker,
            lambda: mqtt_load.connect_rate(
                broker.port or 0, duration=plan.connect_seconds, workers=plan.connect_clients, prefix=f"cycle-{name}"
            ),
        )

    results = await interleaved(plan.rounds, {n: lambda n=n: cycles(n) for n in subjects})
    title = f"Mosquitto CONNECT/CONNACK/DISCONNECT cycles ({plan.connect_clients} clients)"
    rows.append(Row.from_rounds(title, "licensed", results["licensed"], "bare", results["bare"], "cycles/s", ">= 0.9"))
    for qos in (0, 1):
        pairs = {n: await mqtt_load.PubSub(p.port or 0, qos, name=f"m{n}").open() for n, p in subjects.items()}
        try:
            results = await interleaved(
                plan.rounds,
                {n: measure_throughput(subjects[n], pairs[n], plan.throughput_seconds) for n in subjects},
            )
        finally:
            for pair in pairs.values():
                await pair.close()
        rows.append(
            Row.from_rounds(
                f"Mosquitto QoS {qos} publish -> subscriber throughput",
                "licensed",
                results["licensed"],
                "bare",
                results["bare"],
                "msgs/s",
                ">= 0.95",
            )
        )
    port = licensed.port or 0
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
    row = Row.from_rounds(
        "request -> reply round trip (licensed Mosquitto, median)",
        "$license/status",
        results["status"],
        "echo client",
        results["echo"],
        "ms",
    )
    row.target = ""
    rows.append(row)

    async def rss(name: str) -> Sample:
        connections = await mqtt_load.open_idle(subjects[name].port or 0, plan.idle_clients, prefix=f"idle-{name}")
        await asyncio.sleep(1.0)
        value = subjects[name].rss_kib() / 1024
        await mqtt_load.close_all(connections)
        await asyncio.sleep(0.5)
        return Sample(value)

    loaded = await interleaved(plan.memory_rounds, {n: lambda n=n: rss(n) for n in subjects}, warmup=False)
    rows.append(
        Row.from_rounds(
            f"Mosquitto resident set (VmRSS), {plan.idle_clients:,} idle clients",
            "licensed",
            loaded["licensed"],
            "bare",
            loaded["bare"],
            "MiB",
            "<= 1.1",
        )
    )
    return rows


async def run(plan: Plan, work: Path) -> list[Row]:
    lab = MosquittoLab(work)
    try:
        key = lab.start_vendor()
        lab.start_broker("bare")
        lab.start_broker("licensed")
        lab.start_agent(key)
        rows = await bench(lab, plan)
        if lab.agent is not None:
            print(f"agent process beside it: {lab.agent.rss_kib() / 1024:.1f} MiB resident", file=sys.stderr)
        return rows
    finally:
        lab.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.mosquitto", description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    args = parser.parse_args(argv)
    if not processes.mosquitto_available():
        print("needs the mosquitto package", file=sys.stderr)
        return 2
    with lab_folder(args.keep) as work:
        rows = asyncio.run(run(QUICK if args.quick else FULL, work))
    print(text_table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
