"""``mqtt-licensing vendor`` verbs on licenses and activations: issue, list, show, update,
suspend/reinstate/revoke, free, the offline codes and floating certificates, the public key.
Each opens the data folder for itself (safe while the server runs) and closes with the process."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ..core.errors import ErrorCode, LicensingError
from .serverdata import open_data, read_text, require_data_folder, write_out
from .vendor_activations import activation_line, format_time

_REFUSALS = (ErrorCode.NO_ACTIVATIONS_LEFT, ErrorCode.SUSPENDED, ErrorCode.REVOKED, ErrorCode.EXPIRED)
UNSET: Any = object()  # `update` tells "not given" from "never"/"unlimited" (None)
CREATE = "mqtt-licensing vendor init DIR"


def open_service(args: argparse.Namespace, **options: Any) -> Any:
    """The vendor data folder of ``--data``; a folder ``vendor init`` did not make is refused."""
    from ..servers.activation.service import KEY_NAME, ActivationService  # per verb: keeps the CLI fast

    data = Path(args.data)
    require_data_folder(data, KEY_NAME, kind="vendor", create=CREATE)
    url = args.database_url
    return open_data(data, lambda: ActivationService.open(data, database_url=url, **options), db_url=url)


def _read_code(path: str) -> str:
    return read_text(path, code=ErrorCode.BAD_REQUEST)


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


def _heartbeat_text(lic: dict[str, Any]) -> str:
    beat, release = lic.get("heartbeat_interval"), lic.get("release_after")
    if beat is None:
        return "none (a daily check-in; activations are never released)"
    released = f"released after {release} s silent" if release is not None else "never released"
    return f"every {beat} s; {released}"


def _features_text(lic: dict[str, Any]) -> str:
    titles = {d["name"]: d["title"] for d in lic.get("definitions", [])}
    return ", ".join(f"{n} ({titles[n]})" if n in titles else n for n in lic["features"])


def _print_license(lic: dict[str, Any]) -> None:
    rows = [
        ("id", lic["id"]),
        ("key", lic["key_mask"]),
        ("model", lic["model"]),
        ("status", lic["status"]),
        ("clone policy", lic.get("clone_policy", "flag")),
        ("features", _features_text(lic)),
        ("activations", f"{lic.get('activations_used', 0)} of {lic['max_activations']} in use"),
    ]
    if lic.get("seats") is not None:
        rows.append(("seats", str(lic["seats"])))
    rows += [
        ("expires", format_time(lic["expires_at"])),
        ("support until", format_time(lic["support_until"])),
        ("max connections", "unlimited" if lic["max_connections"] is None else str(lic["max_connections"])),
        ("overage", f"{lic.get('overage', 0.0):.0%} over max connections"),
        ("metering", lic.get("metering", "best_effort")),
        ("heartbeats", _heartbeat_text(lic)),
        ("created", format_time(lic["created_at"])),
        ("updated", format_time(lic["updated_at"])),
    ]
    for name, value in rows:
        print(f"{name + ':':<17}{value}")
    if "activations" in lic:
        print("activations:" if lic["activations"] else "activations:     none")
        for act in lic["activations"]:
            print("  " + activation_line(act))


def cmd_issue(args: argparse.Namespace) -> int:
    given = {
        "features": args.features,
        "model": args.model,
        "max_activations": args.activations,
        "seats": args.seats,
        "expires_at": args.expires,
        "support_until": args.support_until,
        "max_connections": args.max_connections,
        "metering": args.metering,
        "overage": args.overage,
        "clone_policy": args.clone_policy,
        "heartbeat_interval": args.heartbeat_interval,
        "release_after": args.release_after,
    }
    # Only the flags given: with --template the rest comes from the template ("never" is given).
    terms = {name: value for name, value in given.items() if value is not None and value is not UNSET}
    terms.update({name: None for name in ("expires_at", "support_until", "max_connections") if given[name] is None})
    if args.template is None and args.features is None:
        raise LicensingError(ErrorCode.BAD_REQUEST, "give --features (or --template NAME)")
    _lic, key = open_service(args).issue_license(template=args.template, **terms)
    print(key)
    return 0


def cmd_licenses(args: argparse.Namespace) -> int:
    licenses = open_service(args).list_licenses()
    if args.json:
        _print_json(licenses)
    elif not licenses:
        print("no licenses issued yet")
    for lic in [] if args.json else licenses:
        print(_license_line(lic))
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    lic = open_service(args).get_license(args.id)
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
        if getattr(args, name) is not UNSET:
            changes[name] = getattr(args, name)
    if args.activations is not None:
        changes["max_activations"] = args.activations
    if args.seats is not None:
        changes["seats"] = args.seats
    if args.metering is not None:
        changes["metering"] = args.metering
    if args.clone_policy is not None:
        changes["clone_policy"] = args.clone_policy
    if args.overage is not None:
        changes["overage"] = args.overage
    for name in ("heartbeat_interval", "release_after"):
        if getattr(args, name) is not None:  # 0 clears the term
            changes[name] = getattr(args, name)
    if not changes:
        raise LicensingError(ErrorCode.BAD_REQUEST, "nothing to change: give at least one option")
    _print_license(open_service(args).update_license(args.id, changes))
    return 0


def status_verb(status: str, done: str) -> Any:
    def run(args: argparse.Namespace) -> int:
        lic = open_service(args).set_status(args.id, status)
        print(f"license {lic['id']} {done}")
        return 0

    return run


def cmd_free(args: argparse.Namespace) -> int:
    act = open_service(args).free_activation(args.activation_id)
    print(f"activation {act['id']} of license {act['license_id']} freed")
    return 0


def cmd_offline_activate(args: argparse.Namespace) -> int:
    try:
        result = open_service(args).offline_activate(_read_code(args.request))
    except LicensingError as exc:
        if exc.code in _REFUSALS:  # tell the vendor what to tell the customer
            raise LicensingError(
                exc.code,
                f"{exc.message} (the customer's broker keeps serving as before; "
                "`mqtt-licensing offline-cancel` there drops the request)",
            ) from exc
        raise
    what = "updated" if result.reused else "created"
    print(
        f"activation {result.activation_id} of license {result.license_id} {what}; usage license:",
        file=sys.stderr,
    )
    write_out(result.usage_license, args.out)
    return 0


def cmd_offline_deactivate(args: argparse.Namespace) -> int:
    result = open_service(args).offline_deactivate(_read_code(args.code))
    if result.freed:
        print(f"activation {result.activation_id} of license {result.license_id} freed")
    else:
        print(
            f"activation {result.activation_id} of license {result.license_id} was already free "
            f"({result.freed_reason}, {format_time(result.freed_at)})"
        )
    return 0


def cmd_floating_issue(args: argparse.Namespace) -> int:
    result = open_service(args).floating_issue(_read_code(args.request))
    print(
        f"floating certificate for activation {result.activation_id} of license {result.license_id}:",
        file=sys.stderr,
    )
    write_out(result.certificate, args.out)
    return 0


def cmd_contact(args: argparse.Namespace) -> int:
    from ..servers.shop.app import Shop
    from ..servers.shop.portal import record_contact

    license_id, email = args.id, args.email
    service = open_service(args)
    store = open_data(Path(args.data), lambda: Shop.store_of(service, database_url=args.database_url))
    try:
        record_contact(service, store, license_id, email)
    finally:
        store.close()
    print(f"license {license_id}: portal sign-in codes and reminders go to {email}")
    return 0


def cmd_public_key(args: argparse.Namespace) -> int:
    print(open_service(args).public_key_text)
    return 0


def parse_seconds(text: str) -> int:
    """Seconds of a heartbeat term; 0 or none clears it (no heartbeats, no release)."""
    if text.strip().lower() in ("none", "never", ""):
        return 0
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds (or 'none')") from None
    if value < 0:
        raise argparse.ArgumentTypeError("must not be negative")
    return value


def heartbeat_arguments(issue: argparse.ArgumentParser, update: argparse.ArgumentParser) -> None:
    for p in (issue, update):
        p.add_argument(
            "--heartbeat-interval",
            type=parse_seconds,
            metavar="S",
            help="online instances send a heartbeat every S seconds (0/none: no heartbeats, the default)",
        )
        p.add_argument(
            "--release-after",
            type=parse_seconds,
            metavar="S",
            help="release an activation whose instance was silent S seconds (> 2 x the interval; 0/none: never)",
        )
