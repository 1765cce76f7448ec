"""``mqtt-licensing vendor activations``: the vendor's list of activations, filtered for a fleet.

    vendor activations --data DIR [--license ID] [--label TEXT] [--silent-for 2h]
                       [--status active|freed|released[,...] | --all] [--limit N] [--after ID] [--json]

One line per activation in one stable order (created, then id), then a count line: how many
matched, how many are shown, and the ``--after`` that shows the next page. ``--json`` prints the
admin API's answer (``GET /v1/admin/activations``): the page and its counts. Labels are the
instances' own words: printed with terminal escapes as text (``\\x1b``).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import Any

from ..core.listing import (
    DEFAULT_LIMIT,
    STATUSES,
    ActivationFilter,
    parse_duration,
    parse_id,
    parse_label,
    parse_limit,
    parse_statuses,
)
from ..core.timefmt import iso, relative
from .format import safe_text
from .serverdata import checked


def format_time(ts: Any) -> str:
    return iso(ts) or "never"


def label_text(act: dict[str, Any]) -> str:
    """``label=<label> (was <previous>)  `` or nothing: the instance chose it, so a terminal
    escape in it prints as text (``\\x1b``), never as a colour or a cursor move."""
    if not act.get("label"):
        return ""
    earlier = [h["label"] for h in act.get("label_history", []) if h["label"] != act["label"]]
    was = f" (was {safe_text(earlier[-1])})" if earlier else ""
    return f"label={safe_text(act['label'])}{was}  "


def activation_line(act: dict[str, Any], now: int | None = None) -> str:
    state = "active" if act["active"] else f"freed ({act['freed_reason']}, {format_time(act['freed_at'])})"
    if act.get("last_heartbeat_at") is not None:
        state = f"last_heartbeat={format_time(act['last_heartbeat_at'])}  {state}"
    if act.get("clone_count"):  # two instances presented diverging check-in chains
        state += f"  CLONED x{act['clone_count']} since {format_time(act['cloned_at'])}"
    seen = ""
    if now is not None and act.get("last_seen_at") is not None:
        seen = f"seen {relative(act['last_seen_at'], now)}  "
    return (
        f"{act['id']}  {act['license_id']}  {act['model']:<8} "
        f"{label_text(act)}instance={act['instance_fingerprint']}  {seen}"
        f"created={format_time(act['created_at'])}  last_check_in={format_time(act['last_check_in_at'])}  {state}"
    )


def count_line(page: dict[str, Any]) -> str:
    """``12 activations match (active)``, or ``10000 activations match (active, silent for more
    than 2h); showing 100; next page: --after act_…``. The filter is what was typed: escaped."""
    total, what = page["total"], f"({page['filter']})"
    if total == 0:
        return safe_text(f"no activations match {what}")
    text = f"1 activation matches {what}" if total == 1 else f"{total} activations match {what}"
    if page["shown"] != total:
        text += f"; showing {page['shown']}"
    if page["next"] is not None:
        text += f"; next page: --after {page['next']}"
    return safe_text(text)


def cmd_activations(open_service: Callable[[argparse.Namespace], Any]) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        statuses = STATUSES if args.all else (args.status or ("active",))
        wanted = ActivationFilter(
            license_id=args.license,
            label=args.label,
            silent_for=args.silent_for,
            statuses=statuses,
            limit=args.limit,
            after=args.after,
        )
        page = open_service(args).find_activations(wanted)
        if args.json:
            print(json.dumps(page, indent=2, sort_keys=True))  # json escapes control characters (\u001b)
            return 0
        for act in page["activations"]:
            print(activation_line(act, page["now"]))
        print(count_line(page))
        return 0

    return run


def register(verb: Callable[[str, Any, str], argparse.ArgumentParser], open_service: Any) -> None:
    p = verb("activations", cmd_activations(open_service), "list activations, filtered and a page at a time")
    p.add_argument("--license", metavar="ID", type=checked(lambda t: parse_id(t, "")))
    p.add_argument(
        "--label",
        metavar="TEXT",
        type=checked(lambda t: parse_label(t, "")),
        help="only activations whose label, or one they had, contains TEXT (any case)",
    )
    p.add_argument(
        "--silent-for",
        metavar="DURATION",
        type=checked(lambda t: parse_duration(t, "")),
        help="only activations not heard from (activation, check-in, heartbeat) for longer than "
        "DURATION: 90s, 45m, 2h, 3d, 1d12h",
    )
    status = p.add_mutually_exclusive_group()
    status.add_argument(
        "--status",
        metavar="STATUS",
        type=checked(lambda t: parse_statuses(t, "")),
        help="active (the default), freed (deactivated or freed by someone), released (after silence), "
        "or several comma-separated",
    )
    status.add_argument("--all", action="store_true", help="every status (as --status active,freed,released)")
    p.add_argument(
        "--limit",
        metavar="N",
        type=checked(lambda t: parse_limit(t, "", zero_is_all=True)),
        default=DEFAULT_LIMIT,
        help=f"show at most N (default {DEFAULT_LIMIT}; 0: all), oldest first",
    )
    p.add_argument(
        "--after", metavar="ID", type=checked(lambda t: parse_id(t, "")), help="the page after this activation"
    )
    p.add_argument("--json", action="store_true", help="the page and its counts, as the admin API answers")


__all__ = ["activation_line", "format_time", "label_text", "register"]
