"""``mqtt-licensing broker -c broker_config/default.yaml``: amqtt with the licensing agent."""

from __future__ import annotations

import argparse
import asyncio
import sys
import traceback

from .logs import add_log_options, setup_logging


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("broker", help="run an amqtt broker with the licensing agent")
    p.add_argument("-c", "--config", required=True, help="broker config YAML (see broker_config/)")
    add_log_options(p)
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from ..adapters.amqtt.runner import ConfigError, StartError, load_config, serve  # heavy (amqtt): only for this verb

    setup_logging(args)
    try:
        asyncio.run(serve(load_config(args.config)))
    except (ConfigError, StartError) as exc:
        if args.debug:
            traceback.print_exc()
        print(f"error [{exc.code}]: {exc.message}", file=sys.stderr)
        return 2
    return 0
