"""CPU and Python calls per CONNECT/CONNACK/DISCONNECT cycle in the broker's own thread.

    python -m benchmarks.connect_calls [CYCLES] [ROUNDS]

Bare amqtt (its trivial auth plugin) and amqtt with the agent (trial, anonymous clients) run
on a thread of this process in alternating rounds, 8 clients each. Reported per round: the
broker thread's CPU (``time.thread_time``) per cycle and cycles per second, and their ratios;
then the medians of the per-round ratios. Last, one cProfile pass of each counts the Python
calls per cycle in the broker thread: unlike time, that count does not move with the load
other processes put on the machine, so it shows what a change to the CONNECT path saves.
"""

from __future__ import annotations

import asyncio
import base64
import cProfile
import logging
import pstats
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from mqtt_licensing.adapters.amqtt.runner import BrokerThread
from mqtt_licensing.core.passwords import hash_password
from mqtt_licensing.servers._run import free_port

from .processes import AGENT_PLUGIN, TRIVIAL_AUTH_PLUGIN

PARALLEL = 8


def _public_key() -> str:
    while True:  # a key text with "/" would be read as a file path
        raw = (
            Ed25519PrivateKey.generate()
            .public_key()
            .public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        )
        text = base64.b64encode(raw).decode()
        if "/" not in text:
            return text


def _config(kind: str, port: int, work: Path) -> dict[str, Any]:
    listeners = {"default": {"type": "tcp", "bind": f"127.0.0.1:{port}"}}
    if kind == "bare":
        return {"listeners": listeners, "plugins": {TRIVIAL_AUTH_PLUGIN: {"allow_anonymous": True}}}
    section = {
        "state_dir": str(work / "state"),
        "vendor_url": None,
        "vendor_public_key": _public_key(),
        "admins": {"admin": hash_password("unused", n=2**10)},
    }
    return {"listeners": listeners, "plugins": {AGENT_PLUGIN: section}}


def _connect(client_id: bytes) -> bytes:
    body = b"\x00\x04MQTT\x04\x02\x00\x1e" + len(client_id).to_bytes(2, "big") + client_id
    return b"\x10" + bytes([len(body)]) + body


async def _cycles(port: int, count: int) -> None:
    ids = iter(range(count))

    async def client(k: int) -> None:
        for i in ids:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(_connect(f"c{k}-{i}".encode()))
            connack = await reader.readexactly(4)
            assert connack[3] == 0, connack
            writer.write(b"\xe0\x00")  # DISCONNECT: the broker closes
            await reader.read()
            writer.close()
            await writer.wait_closed()

    await asyncio.gather(*(client(k) for k in range(PARALLEL)))


def measure(kind: str, count: int, *, profile: bool = False) -> tuple[float, float, float | None]:
    """(CPU µs per cycle, cycles per second, Python calls per cycle if profiled)."""
    port = free_port()
    with tempfile.TemporaryDirectory() as work, BrokerThread(_config(kind, port, Path(work))) as thread:
        asyncio.run(_cycles(port, 200))  # warm up
        profiler = cProfile.Profile() if profile else None

        async def start() -> float:
            if profiler is not None:
                profiler.enable()  # profiles the broker's thread only
            return time.thread_time()

        async def stop() -> float:
            spent = time.thread_time()
            if profiler is not None:
                profiler.disable()
            return spent

        cpu0 = thread.call(start())
        wall0 = time.perf_counter()
        asyncio.run(_cycles(port, count))
        cpu1 = thread.call(stop())
        wall1 = time.perf_counter()
    calls = None
    if profiler is not None:
        calls = sum(row[1] for row in pstats.Stats(profiler).stats.values()) / count
    return (cpu1 - cpu0) / count * 1e6, count / (wall1 - wall0), calls


def main(argv: list[str]) -> None:
    logging.disable(logging.CRITICAL)
    count = int(argv[0]) if argv else 1000
    rounds = int(argv[1]) if len(argv) > 1 else 5
    cpu_ratios, rate_ratios = [], []
    cpu: dict[str, list[float]] = {"bare": [], "agent": []}
    for r in range(rounds):
        order = ("bare", "agent") if r % 2 == 0 else ("agent", "bare")
        result = {kind: measure(kind, count) for kind in order}
        for kind, values in cpu.items():
            values.append(result[kind][0])
        cpu_ratios.append(result["bare"][0] / result["agent"][0])
        rate_ratios.append(result["agent"][1] / result["bare"][1])
        print(
            f"round {r + 1}: CPU µs/cycle bare {result['bare'][0]:.0f}, agent {result['agent'][0]:.0f}; "
            f"ratio by CPU {cpu_ratios[-1]:.3f}, by cycles/s {rate_ratios[-1]:.3f}",
            flush=True,
        )
    if rounds:
        median = statistics.median
        print(f"median CPU µs/cycle bare {median(cpu['bare']):.0f}, agent {median(cpu['agent']):.0f}")
        print(f"median per-round ratio by CPU {median(cpu_ratios):.3f}, by cycles/s {median(rate_ratios):.3f}")
    bare_calls = measure("bare", count, profile=True)[2] or 0.0
    agent_calls = measure("agent", count, profile=True)[2] or 0.0
    extra = agent_calls - bare_calls
    print(f"Python calls per cycle in the broker thread: bare {bare_calls:.0f}, agent {agent_calls:.0f} ({extra:+.0f})")


if __name__ == "__main__":
    main(sys.argv[1:])
