"""Floating renewals with 1 and with N worker processes, side by side, rounds alternating:

    .venv/bin/python -m benchmarks.workers [--workers 2] [--rounds 8] [--instances 1500] [--concurrency 16]

Two floating servers (``floating serve`` and ``floating serve --workers N``) on one vendor; each
leases a seat to every instance, then each round renews them all at ``--concurrency`` in flight,
the servers taking turns round by round so both see the same minutes of a shared machine. Prints
renewals/s and server CPU per renewal (the parent's and its workers', from /proc) with the load
average per round (and the load generator's own CPU: it shares the machine), then the medians.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from mqtt_licensing.core import labels

from . import http_load
from .http_wire import Pool
from .processes import Floating, Vendor


async def _each(pool: Pool, keys: list[Ed25519PrivateKey], kind: str, path: str, concurrency: int) -> float:
    async def call(worker: int, n: int) -> None:
        body = http_load._lease_body(kind, keys[n])
        http_load.expect(await pool.request(worker, "POST", path, body), kind)

    return await http_load._in_parallel(len(keys), concurrency, call)


async def main(workers: int, rounds: int, instances: int, concurrency: int) -> None:
    work = Path(tempfile.mkdtemp(prefix="bench-workers-"))
    vendor = Vendor(work)
    vendor.issue()
    vendor.start()
    servers: dict[int, Floating] = {}
    try:
        for n in (1, workers):
            (work / f"w{n}").mkdir()
            servers[n] = Floating(work / f"w{n}", vendor, seats=instances + 10, ttl=600, workers=n).start()
        keys = {n: [Ed25519PrivateKey.generate() for _ in range(instances)] for n in servers}
        pools = {n: Pool(servers[n].url, concurrency) for n in servers}
        renew = (labels.KIND_LEASE_RENEW, "/v1/leases/renew")
        for n in servers:
            await _each(pools[n], keys[n], labels.KIND_LEASE_ACQUIRE, "/v1/leases", concurrency)
            await _each(pools[n], keys[n], *renew, concurrency)  # warm-up, not counted
        results: dict[int, list[tuple[float, float]]] = {n: [] for n in servers}
        for r in range(rounds):
            for n in list(servers) if r % 2 == 0 else list(servers)[::-1]:
                before, mine = servers[n].process.cpu_seconds(), time.process_time()
                rate = await _each(pools[n], keys[n], *renew, concurrency)
                cpu = (servers[n].process.cpu_seconds() - before) / instances * 1e6
                client = (time.process_time() - mine) / instances * 1e6  # this load generator's own
                results[n].append((rate, cpu))
                print(f"round {r}  workers {n}: {rate:,.0f} renewals/s  {cpu:,.0f} µs CPU per renewal  "
                      f"(load generator {client:,.0f} µs)  load {os.getloadavg()[0]:.1f}", flush=True)  # fmt: skip
        for n, rows in results.items():
            rates, cpus = [x[0] for x in rows], [x[1] for x in rows]
            rate = f"{statistics.median(rates):,.0f} renewals/s ({min(rates):,.0f}-{max(rates):,.0f})"
            cpu = f"{statistics.median(cpus):,.0f} µs CPU per renewal ({min(cpus):,.0f}-{max(cpus):,.0f})"
            print(f"workers {n}: median {rate}, {cpu}")
        for pool in pools.values():
            await pool.close()
    finally:
        for server in servers.values():
            server.stop()
        vendor.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m benchmarks.workers", description=__doc__)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--instances", type=int, default=1500)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    if args.workers < 2:
        sys.exit("--workers: at least 2 (1 is the baseline it runs anyway)")
    asyncio.run(main(args.workers, args.rounds, args.instances, args.concurrency))
