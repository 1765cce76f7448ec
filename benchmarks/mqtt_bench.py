"""The broker sections of ``python -m benchmarks``: connect, throughput, roundtrip and memory, each
against bare amqtt (and Mosquitto where installed) measured in the same run."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from . import mqtt_load, processes
from .lab import Lab, Plan, metered, plain
from .processes import ADMIN, ADMIN_PASSWORD, Process
from .stats import Measure, Row, Sample, interleaved


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
