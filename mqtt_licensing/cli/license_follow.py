"""The long-running operator verbs: ``status --watch`` and ``events [--since AGE]``.

They print a ``$license`` topic until Ctrl-C and outlive broker restarts: a lost
connection is retried with backoff, but the first connection is not, so a wrong
port or password still fails at once.
"""

from __future__ import annotations

import argparse
import json
import select
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

from ..clients.mqtt import LicenseClient
from ..core.errors import ErrorCode, LicensingError
from .format import format_event, format_status
from .license_io import client_from_args, guarded

_RECONNECT_FIRST, _RECONNECT_MAX = 1.0, 30.0  # seconds between tries after a lost connection
_FIXED_NOW = datetime(2000, 1, 1, tzinfo=UTC)


def _watch_reader_gone(gone: threading.Event) -> None:
    """Set ``gone`` when stdout's reader has left (`events | head -2`): on an idle broker no
    further write would ever fail, so the follower would wait forever for nothing."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):
        return  # not a real file (tests capturing output): nothing to watch
    if not hasattr(select, "poll"):
        return  # Windows: the next write will tell
    poller = select.poll()
    poller.register(fd, 0)  # no events asked for: POLLERR/POLLHUP/POLLNVAL are always reported

    def watch() -> None:
        while not gone.is_set():
            if any(events & (select.POLLERR | select.POLLHUP | select.POLLNVAL) for _, events in poller.poll(1000)):
                gone.set()

    threading.Thread(target=watch, name="stdout-watch", daemon=True).start()


def _follow(args: argparse.Namespace, stream: Callable[[LicenseClient, threading.Event], Iterator[dict[str, Any]]],
            show: Callable[[dict[str, Any]], None]) -> int:  # fmt: skip
    """Print a stream until Ctrl-C or until stdout's reader leaves, reconnecting after a lost connection."""
    delay, connected_once = _RECONNECT_FIRST, False
    gone = threading.Event()
    _watch_reader_gone(gone)
    while True:
        try:
            with client_from_args(args) as client:
                if connected_once:
                    print("reconnected", file=sys.stderr, flush=True)
                connected_once, delay = True, _RECONNECT_FIRST
                for item in stream(client, gone):
                    show(item)
                    sys.stdout.flush()
            if gone.is_set():
                raise BrokenPipeError  # as a failed write would: main() exits 141, quietly
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
    shown: list[str] = []  # the last document's lines, with times relative to a fixed moment

    def show(doc: dict[str, Any]) -> None:
        if args.json:
            _json_line(doc)
            return

        # A check-in republishes the document with a new updated_at only, and "in 2 h" becoming
        # "in 1 h" is the clock, not the broker: neither is a change worth a line. So the lines are
        # compared as rendered against a fixed moment, and printed as rendered against now.
        def rendered(now: datetime | None) -> list[str]:
            lines = [line for line in format_status(doc, now).splitlines() if not line.startswith("Updated:")]
            return lines if now is None else [" ".join(line.split()) for line in lines]  # not the column width

        lines, stable = rendered(None), rendered(_FIXED_NOW)
        stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        if not shown:
            sys.stdout.write(f"--- {stamp}: status ---\n" + "\n".join(lines) + "\n")
        elif stable != shown:
            changed = [line for line, key in zip(lines, stable, strict=False) if key not in shown]
            gone = [line.split(":", 1)[0] for line in shown if line not in stable and ":" in line]
            gone = [label for label in gone if not any(line.startswith(label + ":") for line in stable)]
            sys.stdout.write(f"\n--- {stamp}: changed ---\n" + "\n".join(changed + [f"{g}: -" for g in gone]) + "\n")
        shown[:] = stable

    return _follow(args, lambda client, gone: client.status_updates(gone), show)


@guarded
def cmd_events(args: argparse.Namespace) -> int:
    def show(event: dict[str, Any]) -> None:
        if args.json:
            _json_line(event)
        else:
            sys.stdout.write(format_event(event) + "\n")

    first = True

    def stream(client: LicenseClient, gone: threading.Event) -> Iterator[dict[str, Any]]:
        nonlocal first
        if first and args.since is not None:  # the backlog once; a reconnect goes on with live events
            yield from client.recent_events(args.since)
        first = False
        yield from client.events(gone)

    return _follow(args, stream, show)
