"""The long-running operator verbs: ``status --watch`` and ``events [--since AGE]``.

They print a ``$license`` topic until Ctrl-C and outlive broker restarts: a lost
connection is retried with backoff, but the first connection is not, so a wrong
port or password still fails at once.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

from ..clients.mqtt import LicenseClient
from ..core.errors import ErrorCode, LicensingError
from .format import format_event, format_status
from .license_io import client_from_args, guarded

_RECONNECT_FIRST, _RECONNECT_MAX = 1.0, 30.0  # seconds between tries after a lost connection


def _follow(args: argparse.Namespace, stream: Callable[[LicenseClient], Iterator[dict[str, Any]]],
            show: Callable[[dict[str, Any]], None]) -> int:  # fmt: skip
    """Print a stream until Ctrl-C, reconnecting after a lost connection."""
    delay, connected_once = _RECONNECT_FIRST, False
    while True:
        try:
            with client_from_args(args) as client:
                if connected_once:
                    print("reconnected", file=sys.stderr, flush=True)
                connected_once, delay = True, _RECONNECT_FIRST
                for item in stream(client):
                    show(item)
                    sys.stdout.flush()
            return 0
        except KeyboardInterrupt:
            return 0
        except LicensingError as exc:
            if not connected_once or exc.code != ErrorCode.SERVER_UNREACHABLE:
                raise
            print(f"{exc.message}; reconnecting in {delay:g} s", file=sys.stderr, flush=True)
        try:
            time.sleep(delay)
        except KeyboardInterrupt:
            return 0
        delay = min(delay * 2, _RECONNECT_MAX)


def _json_line(doc: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(doc, separators=(",", ":")) + "\n")


def watch_status(args: argparse.Namespace) -> int:
    """``status --watch``: the whole status once, then only the lines that changed."""
    shown: list[str] = []

    def show(doc: dict[str, Any]) -> None:
        if args.json:
            _json_line(doc)
            return
        # A check-in republishes the document with a new updated_at only: not a change worth a line.
        lines = [line for line in format_status(doc).splitlines() if not line.startswith("Updated:")]
        stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        if not shown:
            sys.stdout.write(f"--- {stamp}: status ---\n" + "\n".join(lines) + "\n")
        elif lines != shown:
            changed = [line for line in lines if line not in shown]
            gone = [line.split(":", 1)[0] for line in shown if line not in lines and ":" in line]
            gone = [label for label in gone if not any(line.startswith(label + ":") for line in lines)]
            sys.stdout.write(f"\n--- {stamp}: changed ---\n" + "\n".join(changed + [f"{g}: -" for g in gone]) + "\n")
        shown[:] = lines

    return _follow(args, lambda client: client.status_updates(), show)


@guarded
def cmd_events(args: argparse.Namespace) -> int:
    def show(event: dict[str, Any]) -> None:
        if args.json:
            _json_line(event)
        else:
            sys.stdout.write(format_event(event) + "\n")

    first = True

    def stream(client: LicenseClient) -> Iterator[dict[str, Any]]:
        nonlocal first
        if first and args.since is not None:  # the backlog once; a reconnect goes on with live events
            yield from client.recent_events(args.since)
        first = False
        yield from client.events()

    return _follow(args, stream, show)
