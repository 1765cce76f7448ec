"""The vendor's filtered activation list at fleet size:
``python -m benchmarks.listing [--activations N] [--postgres]``.

Builds a vendor database of N activations (default 100,000) over 100 licenses, each with a
label and one earlier label, 2 % of them silent for a day, 5 % freed and 2 % released, then times
each filter of ``vendor activations`` (``ActivationService.find_activations``: the count, the page
and its label histories): this process's CPU milliseconds per call (``time.process_time``) and
the wall-clock milliseconds (on PostgreSQL the server's work is in the wall-clock figure only),
best of 5, and prints the database's plan of each page query.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from typing import Any

import sqlalchemy as sa

from mqtt_licensing.core.listing import STATUSES, ActivationFilter
from mqtt_licensing.servers.activation.listing import ActivationListing
from mqtt_licensing.servers.activation.schema import activation_labels, activations, licenses
from mqtt_licensing.servers.activation.service import ActivationService

NOW = 1_800_000_000


def build(service: ActivationService, count: int) -> None:
    lic_ids = [f"lic_{n:04d}" for n in range(100)]
    with service.store.transaction() as tx:
        tx.conn.execute(
            sa.insert(licenses),
            [
                {"id": lid, "key_digest": f"{n:064x}", "key_mask": "MQL1-…", "model": "online",
                 "features": ["mqtt_server"], "max_activations": count, "seats": None, "expires_at": None,
                 "support_until": None, "max_connections": None, "status": "active",
                 "created_at": NOW - 86400 * 30, "updated_at": NOW - 86400 * 30}
                for n, lid in enumerate(lic_ids)
            ],
        )  # fmt: skip
        rows: list[dict[str, Any]] = []
        names: list[dict[str, Any]] = []
        for n in range(count):
            silent = n % 50 == 7  # 2 %: last heard of a day ago
            freed = n % 20 == 3  # 5 %
            released = n % 50 == 11  # 2 %
            seen = NOW - (86400 if silent else 60)
            act_id = f"act_{n:016x}"
            rows.append(
                {"id": act_id, "license_id": lic_ids[n % 100], "instance_fingerprint": f"{n:032x}",
                 "public_key": b"k" * 32, "model": "online", "created_at": NOW - 86400 * 20 + n,
                 "last_check_in_at": seen - 3600, "last_heartbeat_at": seen, "request_nonce": None,
                 "request_created_at": None, "freed_at": NOW - 100 if freed or released else None,
                 "freed_reason": "released_no_heartbeat" if released else ("deactivated" if freed else None),
                 "label": f"hall-{n % 40}-line-{n}"}
            )  # fmt: skip
            names += [
                {"activation_id": act_id, "label": f"old-line-{n}", "first_seen": NOW - 86400 * 20},
                {"activation_id": act_id, "label": f"hall-{n % 40}-line-{n}", "first_seen": NOW - 86400},
            ]
            if len(rows) == 10_000:
                tx.conn.execute(sa.insert(activations), rows)
                tx.conn.execute(sa.insert(activation_labels), names)
                rows, names = [], []
        if rows:
            tx.conn.execute(sa.insert(activations), rows)
            tx.conn.execute(sa.insert(activation_labels), names)
        tx.conn.exec_driver_sql("ANALYZE")  # both dialects: the planner's row counts


CASES = {
    "default (active, first 100)": ActivationFilter(),
    "--license (1 of 100)": ActivationFilter(license_id="lic_0042"),
    "--label line-4242 (current or earlier)": ActivationFilter(label="line-4242"),
    "--label hall-7 (2.5 % match)": ActivationFilter(label="hall-7-"),
    "--silent-for 2h (2 %)": ActivationFilter(silent_for=7200),
    "--status released": ActivationFilter(statuses=("released",)),
    "--all --limit 0 (every row)": ActivationFilter(statuses=STATUSES, limit=None),
    "--after (page 500 of 1000)": ActivationFilter(after=f"act_{50_000:016x}"),
}


def _plan(service: ActivationService, wanted: ActivationFilter) -> str:
    with service.store.transaction() as tx:
        query = sa.select(activations.c.id).where(*ActivationListing(tx.conn).conditions(wanted, NOW))
        query = query.order_by(activations.c.created_at, activations.c.id).limit(101)
        sql = str(query.compile(tx.conn, compile_kwargs={"literal_binds": True}))
        if tx.conn.dialect.name == "sqlite":
            return "; ".join(str(r[-1]) for r in tx.conn.exec_driver_sql("EXPLAIN QUERY PLAN " + sql))
        lines = [str(r[0]).strip() for r in tx.conn.exec_driver_sql("EXPLAIN " + sql)]
        return "; ".join(ln for ln in lines if "Scan" in ln or "Sort" in ln)


def main(argv: list[str] | None = None) -> int:
    from .bounds import database

    parser = argparse.ArgumentParser(prog="python -m benchmarks.listing", description=__doc__.split("\n\n")[0])
    parser.add_argument("--activations", type=int, default=100_000)
    parser.add_argument("--postgres", action="store_true", help="the database on a throwaway PostgreSQL cluster")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder, database(args.postgres) as url:
        service = ActivationService.open(folder, clock=lambda: NOW, database_url=url)
        started = time.perf_counter()
        build(service, args.activations)
        print(f"{args.activations} activations built in {time.perf_counter() - started:.1f} s")
        for name, wanted in CASES.items():
            cpu = wall = float("inf")
            for _ in range(5):
                start, start_wall = time.process_time(), time.perf_counter()
                page = service.find_activations(wanted)
                cpu = min(cpu, time.process_time() - start)
                wall = min(wall, time.perf_counter() - start_wall)
            print(
                f"{name:<40} {cpu * 1000:8.1f} ms CPU {wall * 1000:8.1f} ms wall  "
                f"total={page['total']:<6} shown={page['shown']:<6}"
            )
            print(f"{'':<40} plan: {_plan(service, wanted)}")
        service.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
