"""``mqtt-licensing vendor usage LICENSE_ID [--from DAY] [--to DAY] [--json|--csv]``: metered usage
per license per day (UTC), read from the vendor data folder like the other ``vendor`` verbs."""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from collections.abc import Callable
from typing import Any

COLUMNS = ("day", "messages", "bytes", "client_hours", "client_seconds", "records")


def cmd_usage(service: Callable[[argparse.Namespace], Any]) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        usage = service(args).usage_by_day(args.id, args.first, args.last)
        if args.json:
            print(json.dumps(usage, indent=2, sort_keys=True))
            return 0
        if args.csv:
            writer = csv.writer(sys.stdout, lineterminator="\n")
            writer.writerow(COLUMNS)
            for row in usage["days"]:
                writer.writerow([row[c] for c in COLUMNS])
            return 0
        days = usage["days"]
        if not days:
            print(f"no usage recorded for {args.id}")
        else:
            print(f"{'day':<10}  {'messages':>12}  {'bytes':>15}  {'client-hours':>12}")
            for row in days:
                print(f"{row['day']:<10}  {row['messages']:>12}  {row['bytes']:>15}  {row['client_hours']:>12}")
        for instance, missing in usage["missing"].items():
            print(f"instance {instance}: record(s) {', '.join(map(str, missing))} not received yet")
        for flag in usage.get("flags", []):  # usage is self-reported: what looked wrong
            print(f"FLAGGED {flag['kind']} activation {flag['activation_id']}: {flag['detail']}")
        return 0

    return run


METERING = ("best_effort", "required")
_METERING_HELP = "required: refuse metered clients when usage cannot reach the vendor (default best_effort)"


def cmd_bill(service: Callable[[argparse.Namespace], Any]) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        from ..core.errors import ErrorCode, LicensingError
        from ..servers.activation.billing import report_day

        api_key = os.environ.get("STRIPE_API_KEY", "")
        if not api_key:
            raise LicensingError(ErrorCode.MISSING_FIELD, "set STRIPE_API_KEY (the secret key is never an argument)")
        sent = report_day(
            service(args),
            args.id,
            args.day,
            customer=args.customer,
            event_name=args.event_name,
            unit=args.unit,
            api_key=api_key,
            api_base=args.api_base,
        )
        print(json.dumps(sent, sort_keys=True) if args.json else _bill_line(sent))
        return 0

    return run


def _bill_line(sent: dict[str, Any]) -> str:
    verb = "already reported" if sent["already_reported"] else "reported"
    return f"{sent['day']} {sent['unit']}={sent['value']} {verb} (idempotency key {sent['idempotency_key']})"


def register(
    verb: Callable[..., argparse.ArgumentParser],
    service: Callable[[argparse.Namespace], Any],
    *,
    issue: argparse.ArgumentParser,
    update: argparse.ArgumentParser,
) -> None:
    """The ``usage`` verb, and the ``--metering`` term of ``issue`` and ``update``."""
    issue.add_argument("--metering", choices=METERING, help=_METERING_HELP + " (default best_effort)")
    update.add_argument("--metering", choices=METERING, help=_METERING_HELP)
    p = verb("usage", cmd_usage(service), "metered usage of one license per day (UTC)")
    p.add_argument("id", metavar="LICENSE_ID")
    p.add_argument("--from", dest="first", metavar="DAY", help="first day, YYYY-MM-DD")
    p.add_argument("--to", dest="last", metavar="DAY", help="last day, YYYY-MM-DD")
    form = p.add_mutually_exclusive_group()
    form.add_argument("--json", action="store_true")
    form.add_argument("--csv", action="store_true")

    p = verb("bill", cmd_bill(service), "report one finished day of a license's usage to Stripe (STRIPE_API_KEY)")
    p.add_argument("id", metavar="LICENSE_ID")
    p.add_argument("--day", required=True, metavar="DAY", help="YYYY-MM-DD (UTC), a day that is over")
    p.add_argument("--customer", required=True, metavar="CUS_ID", help="the Stripe customer billed")
    p.add_argument("--event-name", required=True, help="the Stripe meter's event name")
    p.add_argument("--unit", choices=("messages", "bytes", "client_hours"), default="messages")
    p.add_argument("--api-base", metavar="URL", help="another Stripe API address (tests, a Stripe mock)")
    p.add_argument("--json", action="store_true")
