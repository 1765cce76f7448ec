"""The Eclipse Paho MQTT 3.1.1 interoperability suite on licensed Mosquitto and on bare Mosquitto:

    .venv/bin/python -m benchmarks.interop --suite PATH/paho.mqtt.testing/interoperability

``client_test.py`` of the public eclipse/paho.mqtt.testing repository (not shipped here: pass
its folder). Each broker is started fresh by :mod:`benchmarks.mosquitto`'s lab; the suite runs
against each in its own process and every test's outcome is compared.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    __package__ = "benchmarks"

from .lab import lab_folder
from .mosquitto import MosquittoLab

# client_test.py parses its own options, then hands sys.argv to unittest.main, which refuses them;
# and it reads "-h" as --help (a substring test): so --hostname=, and unittest without arguments.
WRAPPER = """
import runpy, sys, unittest
port = sys.argv[1]
main = unittest.main
unittest.main = lambda *a, **k: main(argv=["client_test.py"], exit=False, verbosity=2)
sys.argv = ["client_test.py", "--hostname=127.0.0.1", "-p", port]
runpy.run_path("client_test.py", run_name="__main__")
"""
STARTED = re.compile(r"^(test\w+) \(__main__", re.MULTILINE)
FAILED = re.compile(r"^(FAIL|ERROR): (test\w+) \(", re.MULTILINE)


def run_suite(suite: Path, port: int, log: Path) -> dict[str, str]:
    result = subprocess.run(
        [sys.executable, "-c", WRAPPER, str(port)], cwd=suite, capture_output=True, text=True, timeout=600, check=False
    )
    log.write_text(result.stdout + result.stderr)
    outcome = dict.fromkeys(STARTED.findall(result.stderr), "ok")  # unless named in the summary below
    outcome.update({test: kind for kind, test in FAILED.findall(result.stderr)})
    return outcome


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.interop", description=__doc__)
    parser.add_argument("--suite", required=True, type=Path, help="the interoperability folder of paho.mqtt.testing")
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args(argv)
    if not (args.suite / "client_test.py").is_file():
        print(f"{args.suite}: no client_test.py there", file=sys.stderr)
        return 2
    outcomes: dict[str, dict[str, str]] = {}
    with lab_folder(args.keep) as work:
        lab = MosquittoLab(work)
        try:
            key = lab.start_vendor()
            for name in ("bare", "licensed"):
                broker = lab.start_broker(name)
                if name == "licensed":
                    lab.start_agent(key)
                outcomes[name] = run_suite(args.suite, broker.port or 0, work / f"interop-{name}.log")
        finally:
            lab.close()
    tests = sorted(set(outcomes["bare"]) | set(outcomes["licensed"]))
    width = max(len(t) for t in tests) if tests else 10
    print(f"{'test':<{width}}  {'bare':<6} licensed")
    for test in tests:
        print(f"{test:<{width}}  {outcomes['bare'].get(test, '-'):<6} {outcomes['licensed'].get(test, '-')}")
    passed = {name: sum(v == "ok" for v in o.values()) for name, o in outcomes.items()}
    print(f"passed: bare {passed['bare']}/{len(tests)}, licensed {passed['licensed']}/{len(tests)}")
    lost = [t for t in tests if outcomes["bare"].get(t) == "ok" and outcomes["licensed"].get(t) != "ok"]
    print("passes on bare but not licensed: " + (", ".join(lost) or "none"))
    return 1 if lost else 0


if __name__ == "__main__":
    sys.exit(main())
