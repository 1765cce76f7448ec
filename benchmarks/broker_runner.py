"""Run one amqtt broker from a JSON config in this process, until SIGTERM.

    python -m benchmarks.broker_runner CONFIG.json [--profile OUT.prof]

Started by :mod:`benchmarks.processes` so every broker (bare or with the agent) is
started the same way as ``mqtt-licensing broker`` does it: through
:func:`mqtt_licensing.adapters.amqtt.runner.serve`. ``--profile`` wraps the whole run in cProfile
(used to find where a missed target goes).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import logging
from pathlib import Path

from mqtt_licensing.adapters.amqtt.runner import serve


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("config", type=Path)
    parser.add_argument("--profile", type=Path)
    args = parser.parse_args()
    # Warnings only, for both brokers alike: a benchmark must not measure log formatting.
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = json.loads(args.config.read_text())
    if args.profile is None:
        asyncio.run(serve(config))
        return
    profiler = cProfile.Profile()
    profiler.enable()
    try:
        asyncio.run(serve(config))
    finally:
        profiler.disable()
        profiler.dump_stats(args.profile)


if __name__ == "__main__":
    main()
