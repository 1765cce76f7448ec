"""Machine facts and docs/benchmarks.md.

The generated part of the file (command, machine, tables) is rewritten on every
``--write-docs``; anything below the ANALYSIS marker is written by hand (why a
target is missed, what in amqtt sets the ceiling) and is kept as it is.
"""

from __future__ import annotations

import datetime
import os
import platform
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

ANALYSIS_MARKER = "<!-- analysis: everything below this line is kept by --write-docs -->"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def load_average() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "unknown"


def mosquitto_version() -> str:
    exe = shutil.which("mosquitto")
    if exe is None:
        return "not installed"
    out = subprocess.run([exe, "-h"], capture_output=True, text=True, check=False, timeout=10)
    first = (out.stdout or out.stderr).splitlines()[:1]
    return first[0].replace("mosquitto version ", "") if first else "unknown"


def machine_facts() -> dict[str, str]:
    return {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": str(os.cpu_count()),
        "CPU": cpu_model(),
        "kernel": platform.release(),
        "Python": platform.python_version(),
        "amqtt": metadata.version("amqtt"),
        "Mosquitto": mosquitto_version(),
        "uvicorn / starlette / SQLAlchemy": " / ".join(
            metadata.version(p) for p in ("uvicorn", "starlette", "sqlalchemy")
        ),
    }


def command_line(argv: list[str]) -> str:
    return " ".join([".venv/bin/python -m benchmarks", *[a for a in argv if a != "--keep"]])


def write_docs(path: Path, *, command: str, facts: dict[str, str], tables: list[tuple[str, str]]) -> None:
    """``tables``: (heading, markdown) pairs in order."""
    kept = ""
    if path.exists():
        text = path.read_text()
        if ANALYSIS_MARKER in text:
            kept = text.split(ANALYSIS_MARKER, 1)[1]
    lines = [
        "# Benchmarks",
        "",
        "Every figure is compared with a baseline measured in the same run: subject and baseline",
        "alternate round by round, each value is the median of its rounds and the ratio is the",
        "median of the per-round ratios (subject / baseline). Brokers and servers run in their own",
        "processes; the load generator (raw-socket MQTT 3.1.1 and HTTP/1.1 clients, see",
        "benchmarks/mqtt_wire.py and benchmarks/http_wire.py) runs in the benchmark process.",
        'Everything on 127.0.0.1. "CPU µs/op" is the CPU time (user + system, all threads) the',
        "process under test spent per operation in the same rounds: on a shared machine it moves",
        "far less with other people's load than a wall-clock rate does.",
        "",
        "Produced by:",
        "",
        "```",
        command,
        "```",
        "",
        "| machine | |",
        "|---|---|",
        *[f"| {k} | {v} |" for k, v in facts.items()],
        "",
    ]
    for heading, table in tables:
        lines += [f"## {heading}", "", table, ""]
    lines.append(ANALYSIS_MARKER)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + (kept if kept else "\n"))


def python_description() -> str:
    return f"{sys.executable} ({platform.python_version()})"
