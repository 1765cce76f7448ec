"""One command for every benchmark:

    .venv/bin/python -m benchmarks [--quick] [--only connect,throughput,...] [--write-docs]

Sections: connect, throughput, roundtrip, vendor, floating, memory. Each prints rows
of "subject against a baseline measured in the same run" (see :mod:`.stats`).
Processes under test are started and stopped by the run's Lab (lab.py), by pid, whatever happens;
the sections are in mqtt_bench.py and server_bench.py.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # `python benchmarks/run.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    __package__ = "benchmarks"


from . import http_load, report
from .lab import FULL, QUICK, Lab, Plan, databases, lab_folder
from .mqtt_bench import bench_connect, bench_memory, bench_roundtrip, bench_throughput
from .server_bench import bench_floating, bench_vendor, soak_table
from .stats import Row, markdown_table, text_table

SECTIONS = ("connect", "throughput", "roundtrip", "vendor", "floating", "memory")
DOCS = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"


async def run(
    plan: Plan,
    sections: list[str],
    work: Path,
    databases: dict[str, str] | None = None,
    workers: dict[str, int] | None = None,
) -> tuple[list[Row], http_load.SoakResult | None]:
    lab = Lab(work, databases, workers)
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
    parser.add_argument(
        "--floating-workers",
        type=int,
        default=1,
        metavar="N",
        help="run the floating server with N worker processes (floating serve --workers N; default 1)",
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
        workers = {"vendor": args.vendor_workers, "floating": args.floating_workers}
        for server, n in workers.items():
            if n > 1:
                facts[f"{server} server"] = f"{n} worker processes"
        rows, soak = asyncio.run(run(plan, sections, work, dbs, workers))
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
