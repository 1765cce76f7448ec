"""``vendor webhook ...`` and ``floating webhook ...``: where each server sends its signed events.

``add`` prints the endpoint's signing secret once (``whsec_...``: verify deliveries with any
Standard Webhooks library); ``deliveries`` shows the last attempts and their answers."""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from typing import Any

from .serverdata import data_command


def safe_text(text: str) -> str:
    """Untrusted text (a receiver's error) for a terminal: control characters shown, never obeyed."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def timeout_arg(p: argparse.ArgumentParser) -> None:
    """``serve --webhook-timeout``: both servers send their outbox the same way."""
    from ..servers.defaults import WEBHOOK_TIMEOUT

    p.add_argument(
        "--webhook-timeout",
        type=float,
        default=WEBHOOK_TIMEOUT,
        metavar="SECONDS",
        help=f"how long a webhook receiver may take to answer (default {WEBHOOK_TIMEOUT:g}); a delivery in flight "
        "when the server stopped is sent again, under the same webhook-id, 3 times this later",
    )


def register(
    verbs: argparse._SubParsersAction[argparse.ArgumentParser],
    opener: Callable[[argparse.Namespace], Any],
    *,
    kind: str,
    database: str,
) -> None:
    # The names only: servers.webhooks would load SQLAlchemy and Alembic (~0.5 s) on every CLI call.
    from ..servers.defaults import WEBHOOK_EVENTS as EVENT_TYPES

    group = verbs.add_parser("webhook", help="signed webhooks to your systems", description=__doc__)
    sub = group.add_subparsers(dest="webhook_verb", required=True, metavar="<command>")

    def verb(name: str, help_text: str, action: Callable[[Any, argparse.Namespace], int]) -> argparse.ArgumentParser:
        def run(args: argparse.Namespace) -> int:
            from ..servers.webhooks import Webhooks

            service = opener(args)
            try:
                return action(Webhooks(service.store.engine), args)
            finally:
                service.close()

        return data_command(sub, name, help_text, run, kind=kind, database=database)

    p = verb("add", "send events to URL (prints the signing secret once)", _add)
    p.add_argument("url")
    p.add_argument("--events", metavar="A,B", help=f"only these events (default: all): {', '.join(EVENT_TYPES)}")
    p = verb("list", "list endpoints", _list)
    p.add_argument("--json", action="store_true")
    p = verb("remove", "stop sending to an endpoint (its undelivered events are dropped)", _remove)
    p.add_argument("id")
    p = verb("deliveries", "the last delivery attempts and their answers", _deliveries)
    p.add_argument("--endpoint", metavar="ID")
    p.add_argument("--json", action="store_true")


def _add(hooks: Any, args: argparse.Namespace) -> int:
    events = [e.strip() for e in (args.events or "").split(",") if e.strip()]
    endpoint = hooks.add(args.url, events, int(time.time()))
    print(f"webhook {endpoint['id']} -> {safe_text(endpoint['url'])}  events: {', '.join(endpoint['events']) or 'all'}")
    print(f"  signing secret (shown once; verify webhook-signature with it): {endpoint['secret']}")
    return 0


def _list(hooks: Any, args: argparse.Namespace) -> int:
    rows = hooks.list_endpoints()
    if args.json:
        print(json.dumps(rows, indent=2, sort_keys=True))
    for row in [] if args.json else rows:
        events = ", ".join(row["events"]) or "all"
        print(f"{row['id']}  {safe_text(row['url'])}  events: {events}  since {row['created_at']}")
    return 0


def _remove(hooks: Any, args: argparse.Namespace) -> int:
    hooks.remove(args.id)
    print(f"webhook {args.id} removed")
    return 0


def _deliveries(hooks: Any, args: argparse.Namespace) -> int:
    rows = hooks.deliveries(args.endpoint)
    if args.json:
        print(json.dumps(rows, indent=2, sort_keys=True))
        return 0
    for row in rows:
        answer = row["last_status"] or safe_text(row["last_error"] or "")
        print(
            f"{row['id']}  {row['event_type']:<26} {row['state']:<9} attempts={row['attempts']}  "
            f"last={row['last_attempt_at'] or '-'}  {answer}"
        )
    return 0
