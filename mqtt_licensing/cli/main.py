"""Entry point: ``mqtt-licensing <verb> ...``. Verb groups register themselves here."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import traceback

from .. import __version__
from ..core.errors import LicensingError, SetupError
from .format import safe_text

# Each module exposes register(subparsers); a verb sets `func` (returns an exit code).
_VERB_MODULES = ("license", "broker", "mosquitto", "vendor", "floating", "demo", "tools")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mqtt-licensing", description="MQTT-native licensing")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of unexpected errors")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="verb", required=True, metavar="<verb>")
    for name in _VERB_MODULES:
        importlib.import_module(f"{__package__}.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except LicensingError as exc:
        if args.debug:
            traceback.print_exc()
        print(f"error [{exc.code}]: {safe_text(exc.message)}", file=sys.stderr)
        return 2 if isinstance(exc, SetupError) else 1  # 2: fix the setup (a folder, a port, a URL)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `mqtt-licensing events | head`: the reader left. Python would print a traceback when it
        # flushes stdout at exit, so point stdout at /dev/null first.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except Exception as exc:  # a bug: one line for the user, the traceback with --debug
        if args.debug:
            raise
        print(f"error [internal_error]: {type(exc).__name__}: {exc} (run with --debug for details)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
