"""What bounds a check-in, measured on this machine: the disk's flush rate, the database's commit
rate, Ed25519, and the server's own work per check-in, in-process (no HTTP).

    .venv/bin/python -m benchmarks.bounds [--postgres] [--seconds 2]

* ``fsync``: a tiny write + fsync loop in a file beside the database: the most durable commits
  per second one writer can make, whatever the software;
* ``commit``: one-row UPDATE + COMMIT through the servers' engine (SQLite WAL with
  ``synchronous=FULL``, or PostgreSQL with fsync on): the bound of one transaction per request;
* ``Ed25519``: one sign + one verify (a check-in verifies the request and signs the certificate);
* ``check-in in-process``: ``ActivationService.check_in`` from 1 thread and from 16 (the HTTP
  server's thread pool), with group commit (requests per commit shown), CPU per check-in of
  this process (the load generator's signing excluded: requests are signed beforehand) and the
  Python calls per check-in counted under cProfile (a count does not move with other people's
  load on a shared machine; time does); ``heartbeat in-process`` the same for heartbeats.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import os
import pstats
import secrets
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from mqtt_licensing.core import labels
from mqtt_licensing.core.documents import sign_instance_request
from mqtt_licensing.core.keys import key_digest
from mqtt_licensing.servers._db import create_db_engine
from mqtt_licensing.servers.activation.service import ActivationService


def fsync_rate(folder: Path, seconds: float) -> float:
    path = folder / "fsync.probe"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        n, end = 0, time.perf_counter() + seconds
        start = time.perf_counter()
        while time.perf_counter() < end:
            os.write(fd, b"x" * 100)
            os.fsync(fd)
            n += 1
        return n / (time.perf_counter() - start)
    finally:
        os.close(fd)
        path.unlink()


def commit_rate(url: str, seconds: float) -> float:
    engine = create_db_engine(url)
    table = sa.Table(
        "commit_probe", sa.MetaData(), sa.Column("id", sa.Integer, primary_key=True), sa.Column("n", sa.Integer)
    )
    table.metadata.create_all(engine)
    try:
        with engine.begin() as conn:
            conn.execute(table.insert().values(id=1, n=0))
        n, end = 0, time.perf_counter() + seconds
        start = time.perf_counter()
        while time.perf_counter() < end:
            with engine.begin() as conn:
                conn.execute(table.update().values(n=n))
            n += 1
        return n / (time.perf_counter() - start)
    finally:
        table.metadata.drop_all(engine)
        engine.dispose()


def ed25519_us(rounds: int = 2000) -> tuple[float, float]:
    key = Ed25519PrivateKey.generate()
    public, message = key.public_key(), secrets.token_bytes(300)
    start = time.process_time()
    for _ in range(rounds):
        signature = key.sign(message)
    signed = time.process_time()
    for _ in range(rounds):
        public.verify(signature, message)
    return (signed - start) / rounds * 1e6, (time.process_time() - signed) / rounds * 1e6


class CheckIns:
    """A vendor with 16 activated instances, and check-ins signed ahead of time."""

    def __init__(self, folder: Path, database_url: str | None) -> None:
        self.service = ActivationService.open(folder, database_url=database_url)
        _lic, key = self.service.issue_license(features=["mqtt_server"], max_activations=16)
        self.keys = [Ed25519PrivateKey.generate() for _ in range(16)]
        self.activations = []
        for identity in self.keys:
            blob = sign_instance_request(
                identity, kind=labels.KIND_ACTIVATE, nonce=secrets.token_hex(16), created_at=int(time.time()),
                key_digest=key_digest(key),
            )  # fmt: skip
            self.activations.append(self.service.activate(key, blob).activation_id)

    def requests(self, count: int, kind: str = labels.KIND_CHECK_IN) -> list[bytes]:
        return [
            sign_instance_request(
                self.keys[n % 16],
                kind=kind,
                nonce=secrets.token_hex(16),
                created_at=int(time.time()),
                activation_id=self.activations[n % 16],
            )
            for n in range(count)
        ]

    def run(self, count: int, threads: int, kind: str = labels.KIND_CHECK_IN) -> tuple[float, float, float]:
        """(requests per second, CPU us per request, requests per commit): check-ins or heartbeats."""
        blobs = self.requests(count, kind)
        call = self.service.check_in if kind == labels.KIND_CHECK_IN else self.service.heartbeat
        group = self.service.store.group
        batches, cpu, start = group.batches, time.process_time(), time.perf_counter()
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(call, blobs))
        elapsed = time.perf_counter() - start
        per_commit = count / (group.batches - batches) if group.batches > batches else 1.0  # PostgreSQL: its own
        return count / elapsed, (time.process_time() - cpu) / count * 1e6, per_commit

    def calls(self, count: int = 300) -> float:
        blobs = self.requests(count)
        profile = cProfile.Profile()
        profile.enable()
        for blob in blobs:
            self.service.check_in(blob)
        profile.disable()
        stats = pstats.Stats(profile)
        return sum(nc for (_cc, nc, _tt, _ct, _callers) in stats.stats.values()) / count  # type: ignore[attr-defined]


@contextlib.contextmanager
def database(postgres: bool) -> Iterator[str | None]:
    """SQLite (None), or a database on the throwaway PostgreSQL cluster the benchmarks start."""
    from .lab import databases

    with databases(postgres) as urls:
        yield urls.get("vendor")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bounds", description=__doc__.split("\n\n")[0])
    parser.add_argument("--postgres", action="store_true", help="the database on a throwaway PostgreSQL cluster")
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--check-ins", type=int, default=3000)
    args = parser.parse_args(argv)
    print(f"load average at start: {os.getloadavg()[0]:.2f} (2 cores shared)")
    with tempfile.TemporaryDirectory(prefix="mql-bounds-") as work, database(args.postgres) as url:
        folder = Path(work)
        print(f"fsync (write 100 B + fsync, one file): {fsync_rate(folder, args.seconds):,.0f}/s")
        probe = url or f"sqlite:///{folder / 'probe.db'}"
        print(f"commit (1-row UPDATE + COMMIT, {probe.split(':')[0]}): {commit_rate(probe, args.seconds):,.0f}/s")
        sign, verify = ed25519_us()
        print(f"Ed25519: sign {sign:.0f} us, verify {verify:.0f} us (CPU)")
        bench = CheckIns(folder / "vendor", url)
        try:
            bench.run(300, 16)  # warm-up
            for kind, threads in ((labels.KIND_CHECK_IN, 1), (labels.KIND_CHECK_IN, 16), (labels.KIND_HEARTBEAT, 16)):
                rate, cpu, per_commit = bench.run(args.check_ins, threads, kind)
                print(
                    f"{kind.replace('_', '-')} in-process, {threads:2d} thread(s): {rate:,.0f}/s, {cpu:,.0f} us CPU "
                    f"each, {per_commit:.1f} per commit"
                )
            print(f"Python calls per check-in (cProfile): {bench.calls():,.0f}")
        finally:
            bench.service.close()
    print(f"load average at end: {os.getloadavg()[0]:.2f}; threads: {threading.active_count()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
