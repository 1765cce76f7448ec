"""``mqtt-licensing broker -c broker_config/default.yaml``: amqtt with the licensing agent."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("broker", help="run an amqtt broker with the licensing agent")
    p.add_argument("-c", "--config", required=True, help="broker config YAML (see broker_config/)")
    p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from ..adapters.amqtt.runner import ConfigError, load_config, serve  # heavy (amqtt): only for this verb

    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("amqtt", "transitions"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger().level))
    try:
        asyncio.run(serve(load_config(args.config)))
    except ConfigError as exc:
        print(f"error [{exc.code}]: {exc.message}", file=sys.stderr)
        return 2
    return 0
