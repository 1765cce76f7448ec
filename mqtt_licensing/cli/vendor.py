"""mqtt-licensing vendor ...: run the activation server and administer licenses.

Every verb except `serve` works directly on the data folder (--data DIR), safely
while the server runs (SQLite WAL, one transaction per change). Dates are
YYYY-MM-DD (meaning 00:00 UTC of that day), a unix time, or `never`.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..core.errors import ErrorCode, LicensingError, SetupError
from ..core.timefmt import iso
from . import vendor_usage
from .logs import add_log_options, setup_logging
from .network import tls_args
from .serverdata import open_data, require_data_folder, require_free_port

_CLEAR = ("never", "none", "unlimited", "")
_REFUSALS = (ErrorCode.NO_ACTIVATIONS_LEFT, ErrorCode.SUSPENDED, ErrorCode.REVOKED, ErrorCode.EXPIRED)


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


def parse_count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def parse_features(text: str) -> list[str]:
    return [f.strip() for f in text.split(",") if f.strip()]


_CREATE = "mqtt-licensing vendor init DIR"


def _service(args: argparse.Namespace, **options: Any) -> Any:
    """The vendor data folder of ``--data``; a folder ``vendor init`` did not make is refused."""
    from ..servers.activation.service import KEY_NAME, ActivationService  # per verb: keeps the CLI fast

    data = Path(args.data)
    require_data_folder(data, KEY_NAME, kind="vendor", create=_CREATE)
    url = args.database_url
    return open_data(data, lambda: ActivationService.open(data, database_url=url, **options), db_url=url)


def format_time(ts: Any) -> str:
    return iso(ts) or "never"


def _read_file(path: str) -> str:
    try:
        return Path(path).read_text() if path != "-" else sys.stdin.read()
    except OSError as exc:
        raise SetupError(ErrorCode.BAD_REQUEST, f"cannot read {path}: {exc.strerror}; check the file name") from None


def _write_out(text: str, out: str | None) -> None:
    if out:
        try:
            Path(out).write_text(text)
        except OSError as exc:
            print(text, end="" if text.endswith("\n") else "\n")  # made already: shown rather than lost
            raise SetupError(
                ErrorCode.INVALID_FIELD, f"cannot write {out}: {exc.strerror}; the text is above, choose another --out"
            ) from None
        print(f"written to {out}", file=sys.stderr)
    print(text, end="" if text.endswith("\n") else "\n")


def _print_json(obj: Any) -> None:
    print(json.dumps(obj, indent=2, sort_keys=True))


def _license_line(lic: dict[str, Any]) -> str:
    used = lic.get("activations_used", 0)
    cap = f"{used}/{lic['max_activations']}"
    seats = f" seats={lic['seats']}" if lic.get("seats") else ""
    expires = f" expires={format_time(lic['expires_at'])}" if lic.get("expires_at") else ""
    return (
        f"{lic['id']}  {lic['key_mask']}  {lic['model']:<8} {lic['status']:<9} activations={cap}{seats}"
        f"  features={','.join(lic['features'])}{expires}"
    )


def _activation_line(act: dict[str, Any]) -> str:
    state = "active" if act["active"] else f"freed ({act['freed_reason']}, {format_time(act['freed_at'])})"
    if act.get("clone_count"):  # issue 10: two instances presented diverging check-in chains
        state += f"  CLONED x{act['clone_count']} since {format_time(act['cloned_at'])}"
    return (
        f"{act['id']}  {act['license_id']}  {act['model']:<8} instance={act['instance_fingerprint']}  "
        f"created={format_time(act['created_at'])}  last_check_in={format_time(act['last_check_in_at'])}  {state}"
    )


def _print_license(lic: dict[str, Any]) -> None:
    rows = [
        ("id", lic["id"]),
        ("key", lic["key_mask"]),
        ("model", lic["model"]),
        ("status", lic["status"]),
        ("clone policy", lic.get("clone_policy", "flag")),
        ("features", ", ".join(lic["features"])),
        ("activations", f"{lic.get('activations_used', 0)} of {lic['max_activations']} in use"),
    ]
    if lic.get("seats") is not None:
        rows.append(("seats", str(lic["seats"])))
    rows += [
        ("expires", format_time(lic["expires_at"])),
        ("support until", format_time(lic["support_until"])),
        ("max connections", "unlimited" if lic["max_connections"] is None else str(lic["max_connections"])),
        ("metering", lic.get("metering", "best_effort")),
        ("created", format_time(lic["created_at"])),
        ("updated", format_time(lic["updated_at"])),
    ]
    for name, value in rows:
        print(f"{name + ':':<17}{value}")
    if "activations" in lic:
        print("activations:" if lic["activations"] else "activations:     none")
        for act in lic["activations"]:
            print("  " + _activation_line(act))


# -- verbs ---------------------------------------------------------------------


def cmd_serve(args: argparse.Namespace) -> int:
    from ..servers._files import load_or_create_token
    from ..servers._proxies import parse_networks
    from ..servers._run import serve_forever, tls_options
    from ..servers.activation.app import create_app
    from ..servers.activation.service import DEFAULT_CERTIFICATE_LIFETIME, KEY_NAME

    proxies = parse_networks(args.trusted_proxies or "")  # a bad entry stops here, before anything is made
    shop_config = None
    if args.shop_config:  # checked before anything is opened: a mistake is one line, nothing touched
        from ..servers.activation.shop.config import load_config

        shop_config = load_config(args.shop_config)
    data = Path(args.data)
    # the cheap setup checks first: their one line is then all the output
    tls = tls_options(args.tls_cert, args.tls_key)  # a bad certificate stops us before anything opens
    require_data_folder(data, KEY_NAME, kind="vendor", create=_CREATE)
    require_free_port(args.host, args.port)
    setup_logging(args)
    lifetime = args.certificate_lifetime or DEFAULT_CERTIFICATE_LIFETIME
    service = _service(args, certificate_lifetime=lifetime)
    token = open_data(data, lambda: load_or_create_token(data))
    shop = None
    if shop_config is not None:
        from ..servers.activation.shop.app import Shop

        shop = Shop(service, shop_config)
    scheme = "https" if tls else "http"
    print(f"vendor activation server on {scheme}://{args.host}:{args.port}", flush=True)
    if shop is not None:
        print(f"  store and customer portal:      {scheme}://{args.host}:{args.port}/shop/", flush=True)
    print(f"  public key (pin it in brokers): {data / 'vendor.pub'}  ({service.public_key_text})", flush=True)
    print(f"  admin token:                    {data / 'admin.token'}", flush=True)
    if proxies:
        print(f"  X-Forwarded-For trusted from:   {', '.join(map(str, proxies))}", flush=True)
    serve_forever(
        create_app(service, token, trusted_proxies=proxies, **(shop.hooks() if shop else {})),
        args.host,
        args.port,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
    )
    return 0


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


def cmd_issue(args: argparse.Namespace) -> int:
    service = _service(args)
    _lic, key = service.issue_license(
        features=args.features,
        model=args.model,
        max_activations=args.activations,
        seats=args.seats,
        expires_at=args.expires,
        support_until=args.support_until,
        max_connections=args.max_connections,
        metering=args.metering,
    )
    print(key)
    return 0


def cmd_licenses(args: argparse.Namespace) -> int:
    licenses = _service(args).list_licenses()
    if args.json:
        _print_json(licenses)
    elif not licenses:
        print("no licenses issued yet")
    for lic in [] if args.json else licenses:
        print(_license_line(lic))
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    lic = _service(args).get_license(args.id)
    if args.json:
        _print_json(lic)
    else:
        _print_license(lic)
    return 0


def cmd_update(args: argparse.Namespace) -> int:
    changes: dict[str, Any] = {}
    if args.add_features:
        changes["add_features"] = args.add_features
    if args.remove_features:
        changes["remove_features"] = args.remove_features
    for name in ("expires_at", "support_until", "max_connections"):
        if getattr(args, name) is not _UNSET:
            changes[name] = getattr(args, name)
    if args.activations is not None:
        changes["max_activations"] = args.activations
    if args.seats is not None:
        changes["seats"] = args.seats
    if args.metering is not None:
        changes["metering"] = args.metering
    if args.clone_policy is not None:
        changes["clone_policy"] = args.clone_policy
    if not changes:
        raise LicensingError(ErrorCode.BAD_REQUEST, "nothing to change: give at least one option")
    _print_license(_service(args).update_license(args.id, changes))
    return 0


def _status_verb(status: str, done: str) -> Any:
    def run(args: argparse.Namespace) -> int:
        lic = _service(args).set_status(args.id, status)
        print(f"license {lic['id']} {done}")
        return 0

    return run


def cmd_activations(args: argparse.Namespace) -> int:
    acts = _service(args).list_activations(args.license, include_freed=args.all)
    if args.json:
        _print_json(acts)
        return 0
    if not acts:
        print("no activations")
    for act in acts:
        print(_activation_line(act))
    return 0


def cmd_free(args: argparse.Namespace) -> int:
    act = _service(args).free_activation(args.activation_id)
    print(f"activation {act['id']} of license {act['license_id']} freed")
    return 0


def cmd_offline_activate(args: argparse.Namespace) -> int:
    try:
        result = _service(args).offline_activate(_read_file(args.request))
    except LicensingError as exc:
        if exc.code in _REFUSALS:  # tell the vendor what to tell the customer
            raise LicensingError(
                exc.code,
                f"{exc.message} (the customer's broker keeps serving as before; "
                "`mqtt-licensing offline-cancel` there drops the request)",
            ) from exc
        raise
    what = "updated" if result["reused"] else "created"
    print(
        f"activation {result['activation_id']} of license {result['license_id']} {what}; usage license:",
        file=sys.stderr,
    )
    _write_out(result["usage_license"], args.out)
    return 0


def cmd_offline_deactivate(args: argparse.Namespace) -> int:
    result = _service(args).offline_deactivate(_read_file(args.code))
    if result["freed"]:
        print(f"activation {result['activation_id']} of license {result['license_id']} freed")
    else:
        print(
            f"activation {result['activation_id']} of license {result['license_id']} was already free "
            f"({result.get('freed_reason')}, {format_time(result.get('freed_at'))})"
        )
    return 0


def cmd_floating_issue(args: argparse.Namespace) -> int:
    result = _service(args).floating_issue(_read_file(args.request))
    print(
        f"floating certificate for activation {result['activation_id']} of license {result['license_id']}:",
        file=sys.stderr,
    )
    _write_out(result["certificate"], args.out)
    return 0


def cmd_contact(args: argparse.Namespace) -> int:
    from ..servers.activation.shop.portal import record_contact

    license_id, email = args.id, args.email
    record_contact(_service(args), license_id, email)
    print(f"license {license_id}: portal sign-in codes and reminders go to {email}")
    return 0


def cmd_public_key(args: argparse.Namespace) -> int:
    print(_service(args).public_key_text)
    return 0


_UNSET: Any = object()


def _register_init(verbs: argparse._SubParsersAction) -> None:
    p = verbs.add_parser(
        "init",
        help="create a vendor data folder (signing key, database, admin token)",
        description="Create a vendor data folder: every other vendor verb refuses a folder init did not make, "
        "so a mistyped --data never makes a new signing key.",
    )
    p.add_argument("dir", metavar="DIR", help="the new vendor data folder")
    p.add_argument("--database-url", metavar="URL", help="the database (default: SQLite in DIR/vendor.db); remembered")
    p.set_defaults(func=cmd_init)


def _serve_arguments(p: argparse.ArgumentParser) -> None:
    add_log_options(p)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8700)
    p.add_argument(
        "--certificate-lifetime",
        type=parse_count,
        default=None,
        metavar="SECONDS",
        help="how long an online certificate stays valid without a check-in (default 7 days)",
    )
    tls_args(p)
    p.add_argument(
        "--trusted-proxies",
        metavar="NETS",
        help="comma-separated addresses or networks of your reverse proxies: only their X-Forwarded-For "
        "names the client a rate limit counts (default: none, the TCP peer counts)",
    )
    p.add_argument(
        "--shop-config",
        metavar="FILE",
        help="also serve the store and customer portal under /shop (YAML; see README, 'The store')",
    )


def register(subparsers: argparse._SubParsersAction) -> None:  # noqa: PLR0915 - one flat table of verbs
    vendor = subparsers.add_parser(
        "vendor",
        help="the vendor activation server and license administration",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    verbs = vendor.add_subparsers(dest="vendor_verb", required=True, metavar="<command>")
    _register_init(verbs)

    def verb(name: str, func: Any, help_text: str) -> argparse.ArgumentParser:
        p = verbs.add_parser(name, help=help_text, description=help_text)
        p.add_argument("--data", required=True, metavar="DIR", help="the vendor data folder")
        p.add_argument(
            "--database-url",
            metavar="URL",
            help="the database, e.g. postgresql://user:pass@host/db (remembered in DIR/database.url; "
            "default: SQLite in DIR/vendor.db)",
        )
        p.set_defaults(func=func)
        return p

    _serve_arguments(verb("serve", cmd_serve, "run the activation server (HTTP JSON API)"))

    p = issue = verb("issue", cmd_issue, "issue a new license; prints only its key")
    p.add_argument("--features", type=parse_features, required=True, help="comma-separated feature names")
    p.add_argument("--model", choices=("online", "offline", "floating"), default="online")
    p.add_argument("--activations", type=parse_count, default=1, metavar="N", help="max activations (default 1)")
    p.add_argument("--seats", type=parse_count, metavar="N", help="seats of a floating license")
    p.add_argument("--expires", type=parse_date, metavar="DATE", help="YYYY-MM-DD (00:00 UTC), a unix time or never")
    p.add_argument("--support-until", type=parse_date, metavar="DATE")
    p.add_argument("--max-connections", type=parse_limit, metavar="N")

    p = verb("licenses", cmd_licenses, "list licenses")
    p.add_argument("--json", action="store_true")

    p = verb("show", cmd_show, "show one license with its activations")
    p.add_argument("id")
    p.add_argument("--json", action="store_true")

    p = update = verb("update", cmd_update, "change a license's terms")
    p.add_argument("id")
    p.add_argument("--add-features", type=parse_features, metavar="A,B")
    p.add_argument("--remove-features", type=parse_features, metavar="A,B")
    p.add_argument("--expires", dest="expires_at", type=parse_date, default=_UNSET, metavar="DATE|never")
    p.add_argument("--support-until", dest="support_until", type=parse_date, default=_UNSET, metavar="DATE|never")
    p.add_argument("--activations", type=parse_count, metavar="N")
    p.add_argument("--max-connections", dest="max_connections", type=parse_limit, default=_UNSET, metavar="N|unlimited")
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
        p = verb(name, _status_verb(status, done), f"{name} a license")
        p.add_argument("id")

    p = verb("activations", cmd_activations, "list activations")
    p.add_argument("--license", metavar="ID")
    p.add_argument("--all", action="store_true", help="include freed activations")
    p.add_argument("--json", action="store_true")

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
    vendor_usage.register(verb, _service, issue=issue, update=update)
