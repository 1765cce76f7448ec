"""Entry point: ``mqtt-licensing <verb> ...``. Verb groups register themselves here."""

from __future__ import annotations

import argparse
import importlib
import sys

from ..core.errors import LicensingError

# Each module exposes register(subparsers); a verb sets `func` (returns an exit code).
_VERB_MODULES = ("operator", "broker", "vendor", "floating", "demo", "tools")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mqtt-licensing", description="MQTT-native licensing")
    sub = parser.add_subparsers(dest="verb", required=True, metavar="<verb>")
    for name in _VERB_MODULES:
        try:
            module = importlib.import_module(f"{__package__}.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"{__package__}.{name}":
                continue  # verb group not built yet
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except LicensingError as exc:
        print(f"error [{exc.code}]: {exc.message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
