"""How long each test file takes, measured, so the suite's workers get the long files first.

``scripts/test.sh`` hands out whole files (``--dist loadfile``): a 60 s file picked up last
stretches the run by 60 s while the other workers sit idle. ``tests/durations.json`` holds each
file's seconds from a measured full run; ``tests/conftest.py`` orders the collection longest
first (longest-processing-time first). A file missing from it (a new one) goes after the measured
ones; refresh the table after adding a long file:

    ./scripts/test.sh --junitxml=/tmp/suite.xml
    .venv/bin/python -m tests.helpers.durations /tmp/suite.xml
"""

from __future__ import annotations

import json
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

TABLE = Path(__file__).parents[1] / "durations.json"


def load() -> dict[str, float]:
    """File path (as in a node id, e.g. ``tests/servers/test_replicas.py``) -> seconds."""
    try:
        return {str(k): float(v) for k, v in json.loads(TABLE.read_text())["seconds"].items()}
    except FileNotFoundError:
        return {}


def from_junit(xml_path: Path) -> dict[str, float]:
    """Each file's total (setup, call and teardown of every test in it) from pytest's JUnit XML."""
    seconds: dict[str, float] = {}
    for case in ET.parse(xml_path).iter("testcase"):
        parts = case.get("classname", "").split(".")
        while parts and not parts[-1].startswith("test_"):  # a test class's name follows the module
            parts.pop()
        if parts:
            name = "/".join(parts) + ".py"
            seconds[name] = seconds.get(name, 0.0) + float(case.get("time", "0"))
    return seconds


def main(argv: list[str]) -> None:
    if len(argv) != 1:
        raise SystemExit("usage: python -m tests.helpers.durations JUNIT.xml")
    seconds = from_junit(Path(argv[0]))
    ordered = {name: round(s, 1) for name, s in sorted(seconds.items(), key=lambda kv: (-kv[1], kv[0]))}
    TABLE.write_text(json.dumps({"version": 1, "seconds": ordered}, indent=1) + "\n")
    print(f"{TABLE}: {len(ordered)} files, {sum(ordered.values()):.0f} s in all")


if __name__ == "__main__":
    main(sys.argv[1:])
