"""Password CONNECTs (issue 11 item 1), one command, about two minutes:

    .venv/bin/python -m benchmarks.passwords [--quick]

1. CONNECT/DISCONNECT cycles of clients with a password (production scrypt hashes, each user
   verified once in the warm-up) on the agent's broker, against bare amqtt with anonymous
   clients, interleaved rounds in the same run: the ratio.
2. A wrong-password flood for the admin's username from one source address (127.0.0.2) while
   legitimate password clients cycle from 127.0.0.1: their rate during the flood against their
   rate just before it, and how long an admin ``reactivate`` (a new connection included) takes.
3. 1,000 users of a Mosquitto password file ($7$ entries as ``mosquitto_passwd`` writes them),
   all connected, all dropped at once, all reconnecting at once: time until all are back.

Every process is started here and stopped here by its pid (benchmarks/processes.py).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from mqtt_licensing.clients.mqtt import LicenseClient
from mqtt_licensing.core.passwords import hash_password
from mqtt_licensing.servers._run import free_port

from . import processes
from .mqtt_wire import DISCONNECT_PACKET, connect_packet
from .processes import ADMIN, ADMIN_PASSWORD, Process
from .stats import interleaved

Measure = Callable[[], Awaitable[float]]
WORKERS = 8
USERS = 1000
LEGIT, FLOODER = "127.0.0.1", "127.0.0.2"


async def cycle(port: int, client_id: str, username: str | None, password: str | None, source: str = LEGIT) -> int:
    """CONNECT -> CONNACK -> DISCONNECT, ended when the broker closed the socket; the return code."""
    reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0)), 10)
    try:
        writer.write(connect_packet(client_id, username=username, password=password))
        header = await asyncio.wait_for(reader.readexactly(4), 10)
        if header[3] == 0:
            writer.write(DISCONNECT_PACKET)
        while await asyncio.wait_for(reader.read(4096), 10):
            pass
        return header[3]
    finally:
        writer.close()


async def cycle_rate(
    port: int, duration: float, creds: Callable[[int], tuple[str | None, str | None]]
) -> tuple[float, int]:
    deadline = time.perf_counter() + duration
    done = 0

    async def worker(n: int) -> None:
        nonlocal done
        username, password = creds(n)
        while time.perf_counter() < deadline:
            code = await cycle(port, f"bench-{n}", username, password)
            if code != 0:
                raise RuntimeError(f"CONNECT refused with {code} (user {username!r})")
            done += 1

    start = time.perf_counter()
    await asyncio.gather(*(worker(n) for n in range(WORKERS)))
    return done / (time.perf_counter() - start), done


def user_creds(n: int) -> tuple[str, str]:
    return f"user-{n}", f"password-{n}"


def mosquitto_entry(password: str, iterations: int = 101) -> str:
    """What ``mosquitto_passwd`` writes by default (PBKDF2-SHA512, 12-byte salt, 101 iterations)."""
    salt = os.urandom(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations, 64)
    return f"$7${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


async def section_connect(bare: Process, agent: Process, rounds: int, seconds: float) -> list[str]:
    cpu: dict[str, list[float]] = {"bare": [], "agent": [], "anonymous": []}  # broker CPU µs per cycle

    def measure(name: str, process: Process, creds: Callable[[int], tuple[str | None, str | None]]) -> Measure:
        async def run() -> float:
            before = process.cpu_seconds()
            rate, cycles = await cycle_rate(process.port or 0, seconds, creds)
            cpu[name].append((process.cpu_seconds() - before) / max(cycles, 1) * 1e6)
            return rate

        return run

    measures: dict[str, Measure] = {
        "bare": measure("bare", bare, lambda n: (None, None)),
        "agent": measure("agent", agent, user_creds),
        "anonymous": measure("anonymous", agent, lambda n: (None, None)),
    }
    results = await interleaved(rounds, measures)  # the warm-up round verifies each user once
    lines = []
    for name, label in (("agent", "password clients"), ("anonymous", "anonymous clients")):
        ratios = [a / b for a, b in zip(results[name], results["bare"], strict=True)]
        cpu_ratio = statistics.median(cpu["bare"][1:]) / statistics.median(cpu[name][1:])
        lines.append(
            f"CONNECT cycles, agent with {label}: {statistics.median(results[name]):.0f}/s against bare amqtt "
            f"anonymous {statistics.median(results['bare']):.0f}/s, ratio {statistics.median(ratios):.2f} "
            f"(rounds {', '.join(f'{r:.2f}' for r in ratios)}); broker CPU per cycle "
            f"{statistics.median(cpu[name][1:]):.0f} µs against {statistics.median(cpu['bare'][1:]):.0f} µs, "
            f"ratio (bare/agent) {cpu_ratio:.2f}"
        )
    return lines


async def section_flood(agent: Process, seconds: float) -> list[str]:
    port = agent.port or 0
    before, _ = await cycle_rate(port, 5.0, user_creds)
    stop = asyncio.Event()
    flood_attempts = 0

    async def flooder(n: int) -> None:
        nonlocal flood_attempts
        while not stop.is_set():
            await cycle(port, f"flood-{n}", ADMIN, f"guess-{flood_attempts}", source=FLOODER)
            flood_attempts += 1

    flooders = [asyncio.create_task(flooder(n)) for n in range(WORKERS)]
    await asyncio.sleep(2.0)  # the flood is under way

    async def reactivate() -> float:
        def run() -> float:
            started = time.perf_counter()
            with LicenseClient("127.0.0.1", port, username=ADMIN, password=ADMIN_PASSWORD, timeout=30) as c:
                reply = c.request("reactivate")
            if not reply.get("ok"):
                raise RuntimeError(f"reactivate failed: {reply}")
            return time.perf_counter() - started

        return await asyncio.to_thread(run)

    during_task = asyncio.create_task(cycle_rate(port, seconds - 4.0, user_creds))
    admin_times = []
    for _ in range(3):
        admin_times.append(await reactivate())
        await asyncio.sleep(1.0)
    during, _ = await during_task
    stop.set()
    await asyncio.gather(*flooders)
    after, _ = await cycle_rate(port, 5.0, user_creds)
    quiet_admin = [await reactivate() for _ in range(3)]
    undisturbed = (before + after) / 2  # the machine's own drift, halved
    return [
        f"wrong-password flood from one address ({flood_attempts} attempts in {seconds:.0f} s): legitimate "
        f"password CONNECTs {during:.0f}/s against {undisturbed:.0f}/s undisturbed (before {before:.0f}, "
        f"after {after:.0f}), ratio {during / undisturbed:.2f}",
        f"admin reactivate (new connection included) during the flood: "
        f"{', '.join(f'{t * 1000:.0f} ms' for t in admin_times)}; without it: "
        f"{', '.join(f'{t * 1000:.0f} ms' for t in quiet_admin)}",
    ]


async def section_storm(port: int) -> list[str]:
    async def connect(n: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(connect_packet(f"device-{n}", username=f"device-{n}", password=f"pw-{n}"))
        header = await asyncio.wait_for(reader.readexactly(4), 30)
        if header[3] != 0:
            raise RuntimeError(f"device-{n} refused with {header[3]}")
        return reader, writer

    limit = asyncio.Semaphore(64)

    async def bounded(n: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        async with limit:
            return await connect(n)

    first = await asyncio.gather(*(bounded(n) for n in range(USERS)))  # each verified once
    for _reader, writer in first:
        writer.transport.abort()  # the network drops: no DISCONNECT
    started = time.perf_counter()
    again = await asyncio.gather(*(connect(n) for n in range(USERS)))
    elapsed = time.perf_counter() - started
    for _reader, writer in again:
        writer.close()
    return [f"{USERS} password users reconnecting at once: all back in {elapsed:.2f} s"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="3 rounds of 1 s (default 7 of 2 s)")
    parser.add_argument("--only-connect", action="store_true", help="the CONNECT cycles only")
    args = parser.parse_args()
    rounds, seconds = (3, 1.0) if args.quick else (7, 2.0)
    work = Path(tempfile.mkdtemp(prefix="bench-passwords-"))
    started: list[Process] = []
    try:
        vendor = processes.Vendor(work)
        key = vendor.issue("--max-connections", str(USERS * 2))
        vendor.start()
        assert vendor.process is not None
        started.append(vendor.process)
        password_file = work / "passwd"
        password_file.write_text("".join(f"device-{n}:{mosquitto_entry(f'pw-{n}')}\n" for n in range(USERS)))
        users = {user_creds(n)[0]: hash_password(user_creds(n)[1]) for n in range(WORKERS)}  # production cost
        bare_port, agent_port = free_port(), free_port()
        bare = processes.start_amqtt("bare", processes.bare_broker_config(bare_port), work)
        started.append(bare)
        config = processes.agent_broker_config(
            agent_port,
            work / "state",
            vendor_url=vendor.url,
            vendor_public_key=str(vendor.public_key_path),
            users=users,
            password_file=str(password_file),
        )
        agent = processes.start_amqtt("agent", config, work)
        started.append(agent)
        with LicenseClient("127.0.0.1", agent_port, username=ADMIN, password=ADMIN_PASSWORD, timeout=30) as c:
            state = c.request("activate", {"license_key": key})["status"]["state"]
        if state != "active":
            raise RuntimeError(f"activation left the broker {state!r}")
        lines = asyncio.run(section_connect(bare, agent, rounds, seconds))
        if not args.only_connect:
            lines += asyncio.run(section_flood(agent, 30.0))
            lines += asyncio.run(section_storm(agent_port))
        print("\n".join(lines))
    finally:
        for process in reversed(started):
            process.stop()


if __name__ == "__main__":
    sys.exit(main())
