"""``mqtt-licensing mosquitto build | agent``: licensing a Mosquitto 2.0 broker."""

from __future__ import annotations

import argparse
import asyncio
import sys
import traceback

from .logs import add_log_options, setup_logging


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("mosquitto", help="license a Mosquitto broker: build its plugin, run the agent beside it")
    verbs = p.add_subparsers(dest="mosquitto_verb", required=True, metavar="<build|agent>")
    build = verbs.add_parser("build", help="compile the Mosquitto plugin with the system C compiler; prints its path")
    build.add_argument("-o", "--output", help="where to write the plugin (default: ~/.cache/mqtt-licensing/)")
    build.set_defaults(func=_build)
    agent = verbs.add_parser(
        "agent", help="run the licensing agent beside Mosquitto (see broker_config/mosquitto-agent.yaml)"
    )
    agent.add_argument("-c", "--config", required=True, help="agent YAML with mosquitto: and agent: sections")
    add_log_options(agent)
    agent.set_defaults(func=_agent)


def _build(args: argparse.Namespace) -> int:
    from ..adapters.mosquitto.build import BuildError, build

    try:
        print(build(args.output).resolve())
    except BuildError as exc:
        print(f"error [{exc.code}]: {exc.message}", file=sys.stderr)
        return 2
    return 0


def _agent(args: argparse.Namespace) -> int:
    from ..adapters.mosquitto.runner import load_config, serve
    from ..core.errors import LicensingError

    setup_logging(args)
    try:
        settings, config = load_config(args.config)
        asyncio.run(serve(settings, config))
    except LicensingError as exc:
        if args.debug:
            traceback.print_exc()
        print(f"error [{exc.code}]: {exc.message}", file=sys.stderr)
        return 2
    return 0
