"""Entry point: ``mqtt-licensing <verb> ...``. Verb groups register themselves here."""

from __future__ import annotations

import argparse
import importlib
import sys

from ..core.errors import LicensingError

# Each module exposes register(subparsers); a verb sets `func` (returns an exit code).
_VERB_MODULES = ("license", "broker", "vendor", "floating", "demo", "tools")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mqtt-licensing", description="MQTT-native licensing")
    sub = parser.add_subparsers(dest="verb", required=True, metavar="<verb>")
    for name in _VERB_MODULES:
        importlib.import_module(f"{__package__}.{name}").register(sub)
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
