"""mqtt-licensing vendor ...: run the activation server and administer licenses.

Every verb except `serve` works directly on the data folder (--data DIR), safely
while the server runs (SQLite WAL, one transaction per change). Dates are
YYYY-MM-DD (meaning 00:00 UTC of that day), a unix time, or `never`.
"""

# Here: the argparse table and `init` (`serve` is in vendor_serve.py); the verbs on licenses and activations are in
# vendor_admin.py, usage and billing in vendor_usage.py.

from __future__ import annotations

import argparse
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..core.errors import ErrorCode, SetupError
from . import vendor_activations, vendor_catalogue, vendor_keys, vendor_orders, vendor_usage, webhooks
from .serverdata import data_command, database_options, open_data, parse_count
from .vendor_admin import (
    UNSET,
    cmd_contact,
    cmd_floating_issue,
    cmd_free,
    cmd_issue,
    cmd_licenses,
    cmd_offline_activate,
    cmd_offline_deactivate,
    cmd_public_key,
    cmd_show,
    cmd_update,
    heartbeat_arguments,
    open_service,
    status_verb,
)
from .vendor_serve import cmd_serve, serve_arguments

_CLEAR = ("never", "none", "unlimited", "")


def parse_date(text: str) -> int | None:
    """``YYYY-MM-DD`` -> 00:00 UTC of that day as unix seconds; a plain integer is a unix time; never -> None."""
    text = text.strip()
    if text.lower() in _CLEAR:
        return None
    if text.isdigit():
        return int(text)
    try:
        day = datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=UTC)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date (YYYY-MM-DD), a unix time or 'never'") from None
    return int(day.timestamp())


def parse_limit(text: str) -> int | None:
    if text.strip().lower() in _CLEAR:
        return None
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number (or 'unlimited')") from None
    if value < 0:
        raise argparse.ArgumentTypeError("must not be negative")
    return value


def parse_overage(text: str) -> float:
    """0..1: the fraction past --max-connections an instance admits (0.1 = 10 %)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number (0.1 = 10 % over the cap)") from None
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError("must be from 0 to 1 (0.1 = 10 % over the cap)")
    return value


def parse_features(text: str) -> list[str]:
    return [f.strip() for f in text.split(",") if f.strip()]


# -- serve and init ------------------------------------------------------------


def cmd_init(args: argparse.Namespace) -> int:
    """Make a vendor data folder (signing key, database, admin token); an existing one is kept as it is."""
    from ..servers._files import data_folder_problem, load_or_create_token
    from ..servers.activation.service import KEY_NAME, ActivationService

    data = Path(args.dir)
    existed = data_folder_problem(data, KEY_NAME) is None
    if not existed and data.exists() and (not data.is_dir() or any(data.iterdir())):
        raise SetupError(
            ErrorCode.NOT_A_DATA_FOLDER,
            f"{data} exists and is not an empty folder: choose a new folder for the vendor data",
        )
    url = args.database_url
    service = open_data(data, lambda: ActivationService.open(data, database_url=url), db_url=url)
    try:
        open_data(data, lambda: load_or_create_token(data))
        pub = service.public_key_text
    finally:
        service.close()
    if existed:
        print(f"{data} is already a vendor data folder (its signing key is kept)")
    else:
        print(f"vendor data folder {data} created")
    print(f"  public key (pin it in brokers): {data / 'vendor.pub'}  ({pub})")
    print(f"  next: mqtt-licensing vendor serve --data {data}")
    return 0


# -- the argparse table ---------------------------------------------------------


def _register_init(verbs: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = verbs.add_parser(
        "init",
        help="create a vendor data folder (signing key, database, admin token)",
        description="Create a vendor data folder: every other vendor verb refuses a folder init did not make, "
        "so a mistyped --data never makes a new signing key.",
    )
    p.add_argument("dir", metavar="DIR", help="the new vendor data folder")
    database_options(p, "vendor.db", cmd_init)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    vendor = subparsers.add_parser(
        "vendor",
        help="the vendor activation server and license administration",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    verbs = vendor.add_subparsers(dest="vendor_verb", required=True, metavar="<command>")
    _register_init(verbs)

    def verb(name: str, func: Any, help_text: str) -> argparse.ArgumentParser:
        return data_command(verbs, name, help_text, func, kind="vendor", database="vendor.db")

    serve_arguments(verb("serve", cmd_serve, "run the activation server (HTTP JSON API)"))

    issue = _register_issue(verb)

    p = verb("licenses", cmd_licenses, "list licenses")
    p.add_argument("--json", action="store_true")

    p = verb("show", cmd_show, "show one license with its activations")
    p.add_argument("id")
    p.add_argument("--json", action="store_true")

    p = update = verb("update", cmd_update, "change a license's terms")
    p.add_argument("id")
    p.add_argument("--add-features", type=parse_features, metavar="A,B")
    p.add_argument("--remove-features", type=parse_features, metavar="A,B")
    p.add_argument("--expires", dest="expires_at", type=parse_date, default=UNSET, metavar="DATE|never")
    p.add_argument("--support-until", dest="support_until", type=parse_date, default=UNSET, metavar="DATE|never")
    p.add_argument("--activations", type=parse_count, metavar="N")
    p.add_argument("--max-connections", dest="max_connections", type=parse_limit, default=UNSET, metavar="N|unlimited")
    p.add_argument("--seats", type=parse_count, metavar="N")
    p.add_argument(
        "--clone-policy",
        choices=("flag", "suspend"),
        help="two instances on one activation (a copied state folder): flag them (default) or suspend both",
    )

    for name, status, done in (
        ("suspend", "suspended", "suspended"),
        ("reinstate", "active", "reinstated"),
        ("revoke", "revoked", "revoked"),
    ):
        p = verb(name, status_verb(status, done), f"{name} a license")
        p.add_argument("id")

    vendor_activations.register(verb, open_service)

    p = verb("free", cmd_free, "free a lost activation (an instance destroyed without deactivating)")
    p.add_argument("activation_id")

    p = verb("offline-activate", cmd_offline_activate, "turn a usage request code into a usage license")
    p.add_argument("--request", required=True, metavar="FILE", help="the request code file ('-' = stdin)")
    p.add_argument("--out", metavar="FILE", help="also write the usage license to FILE")

    p = verb("offline-deactivate", cmd_offline_deactivate, "free an activation with an offline deactivation code")
    p.add_argument("--code", required=True, metavar="FILE", help="the deactivation code file ('-' = stdin)")

    p = verb("floating-issue", cmd_floating_issue, "turn a floating server's request code into its certificate")
    p.add_argument("--request", required=True, metavar="FILE")
    p.add_argument("--out", metavar="FILE")

    p = verb("contact", cmd_contact, "record a license's customer e-mail (portal sign-in, reminders)")
    p.add_argument("id")
    p.add_argument("email")

    verb("public-key", cmd_public_key, "print the vendor public key (what brokers pin)")
    _register_groups(verbs, verb, issue, update)


def _register_issue(verb: Callable[[str, Any, str], argparse.ArgumentParser]) -> argparse.ArgumentParser:
    p = verb("issue", cmd_issue, "issue a new license; prints only its key")
    p.add_argument(
        "--template", metavar="NAME", help="start from a license template (vendor template list); flags override it"
    )
    p.add_argument("--features", type=parse_features, help="comma-separated feature names (or from --template)")
    p.add_argument("--model", choices=("online", "offline", "floating"), help="default online")
    p.add_argument("--activations", type=parse_count, metavar="N", help="max activations (default 1)")
    p.add_argument("--seats", type=parse_count, metavar="N", help="seats of a floating license")
    p.add_argument(
        "--expires", type=parse_date, default=UNSET, metavar="DATE", help="YYYY-MM-DD (00:00 UTC), a unix time or never"
    )
    p.add_argument("--support-until", type=parse_date, default=UNSET, metavar="DATE")
    p.add_argument("--max-connections", type=parse_limit, default=UNSET, metavar="N")
    p.add_argument("--clone-policy", choices=("flag", "suspend"), help="default flag")
    return p


def _register_groups(
    verbs: argparse._SubParsersAction[argparse.ArgumentParser],
    verb: Any,
    issue: argparse.ArgumentParser,
    update: argparse.ArgumentParser,
) -> None:
    _overage_arguments(issue, update)
    heartbeat_arguments(issue, update)
    vendor_usage.register(verb, open_service, issue=issue, update=update)
    vendor_catalogue.register(verbs, open_service)
    webhooks.register(verbs, open_service, kind="vendor", database="vendor.db")
    vendor_keys.register(verbs, open_service)
    vendor_orders.register(verb, open_service)


def _overage_arguments(issue: argparse.ArgumentParser, update: argparse.ArgumentParser) -> None:
    text = "admit up to N x (1 + F) non-admin connections, e.g. 0.1 = 10%% headroom (0..1, default 0)"
    issue.add_argument("--overage", type=parse_overage, metavar="F", help=text)
    update.add_argument("--overage", type=parse_overage, metavar="F", help=text)
