"""``mqtt-licensing floating`` provisioning: bring a pool's certificate from the vendor (online,
or as offline request and certificate codes), refresh its terms, hand it back."""

from __future__ import annotations

import argparse
import asyncio
import sys
from contextlib import closing
from pathlib import Path
from typing import Any

from ..core import labels
from ..core.codes import armor, unarmor
from ..core.errors import ErrorCode, LicensingError, SetupError
from ..core.keys import mask_key, normalize_key
from ..core.signing import public_key_from_text
from ..core.timefmt import iso, relative
from .network import outbound_options
from .serverdata import open_data, read_text, require_data_folder, write_out


def key_args(p: argparse.ArgumentParser) -> None:
    group = p.add_mutually_exclusive_group(required=True)
    group.add_argument("--key-file", type=Path, help="a .txt file holding the license key")
    group.add_argument("--key", help="the license key itself")


def open_service(args: argparse.Namespace, *, must_exist: bool = False, **kwargs: Any) -> Any:
    """The floating data folder of ``--data``; only ``activate`` and ``request`` may create one."""
    from ..servers.floating.service import FloatingService

    kwargs.setdefault("database_url", args.database_url)
    if must_exist:
        _require_folder(args.data)
    return open_data(args.data, lambda: FloatingService.open(args.data, **kwargs), db_url=kwargs["database_url"])


def _require_folder(data: Path) -> None:
    from ..servers.floating.service import KEY_NAME

    require_data_folder(
        data,
        KEY_NAME,
        kind="floating server",
        create="mqtt-licensing floating activate (online) or floating request (offline)",
    )


def _license_key(args: argparse.Namespace) -> str:
    if args.key is not None:
        return normalize_key(args.key)
    try:
        text = args.key_file.read_text()
    except OSError as exc:
        raise SetupError(
            ErrorCode.INVALID_FIELD, f"cannot read {args.key_file}: {exc.strerror}; check --key-file"
        ) from None
    return normalize_key(text)


def vendor_key(value: str) -> Any:
    """A vendor public key given as a file path or as the key text itself."""
    path = Path(value)
    try:
        is_file = path.is_file()
    except OSError:
        is_file = False
    text = path.read_text() if is_file else value
    try:
        return public_key_from_text(text)
    except (LicensingError, ValueError):
        raise SetupError(
            ErrorCode.INVALID_FIELD,
            f"--vendor-key {value!r} is neither a public key file nor a public key "
            "(give the vendor's vendor.pub or the key text in it)",
        ) from None


def when(ts: int | None, now: int | None = None) -> str:
    if ts is None:
        return "never"
    text = str(iso(ts))
    return f"{text} ({relative(ts, now)})" if now is not None else text


def _describe(cert: Any) -> str:
    return (
        f"license {cert.license_id} ({cert.key_mask}), activation {cert.activation_id}: "
        f"{cert.seats} seat(s), features {', '.join(cert.features) or '-'}, "
        f"valid until {when(cert.valid_until)}, expires {when(cert.expires_at)}"
    )


# -- verbs -----------------------------------------------------------------------------------


def activate(args: argparse.Namespace) -> int:
    from ..servers.floating.provision import activate_online

    key = _license_key(args)
    vendor = vendor_key(args.vendor_key)
    with closing(open_service(args)) as service:
        fresh = service.never_provisioned()
        cert = asyncio.run(
            activate_online(service, key, args.vendor, vendor_public_key=vendor, options=outbound_options(args))
        )
        print(f"activated {mask_key(key)}: {_describe(cert)}")
        _close_new_pool(service, fresh)
    return 0


def _close_new_pool(service: Any, fresh: bool) -> None:
    """A new pool is closed: only brokers with its join token (or allowed otherwise) take a seat."""
    if fresh:
        token = service.allow("token")
        print(f"join token (put it in the broker configs as floating_join_token): {token}")
        print("  new instances need it; more rules: mqtt-licensing floating allow", file=sys.stderr)


def refresh(args: argparse.Namespace) -> int:
    from ..servers.floating.provision import refresh_online

    with closing(open_service(args, must_exist=True)) as service:
        cert = asyncio.run(refresh_online(service, args.vendor, options=outbound_options(args)))
    print(f"refreshed: {_describe(cert)}")
    return 0


def request(args: argparse.Namespace) -> int:
    from ..servers.floating.usage import MAX_RECORDS_PER_CODE

    key = _license_key(args)
    with closing(open_service(args)) as service:
        blob = service.offline_request(key)
        held = service.usage_status()["outbox"]
    if held:  # the oldest ones ride in the code; the certificate's answer receipts them
        carried = min(held, MAX_RECORDS_PER_CODE)
        print(f"it carries {carried} of {held} usage record(s) held for the vendor", file=sys.stderr)
    print(
        f"floating request for server {service.fingerprint} ({mask_key(key)}); send this code to the vendor. "
        "A newer request replaces this one.",
        file=sys.stderr,
    )
    write_out(armor(labels.FLOATING_REQUEST, blob), args.out)
    return 0


def install(args: argparse.Namespace) -> int:
    blob = unarmor(read_text(args.certificate), labels.FLOATING_CERTIFICATE)
    vendor = vendor_key(args.vendor_key) if args.vendor_key else None
    with closing(open_service(args, must_exist=True)) as service:
        fresh = service.never_provisioned()
        cert = service.install_certificate(blob, offline=True, vendor_public_key=vendor)
        print(f"installed: {_describe(cert)}")
        _close_new_pool(service, fresh)
    return 0


def deactivate(args: argparse.Namespace) -> int:
    with closing(open_service(args, must_exist=True)) as service:
        if args.vendor:
            from ..servers.floating.provision import deactivate_online

            old = asyncio.run(deactivate_online(service, args.vendor, options=outbound_options(args)))
            print(
                f"deactivated online{f' (activation {old.activation_id})' if old else ''}; "
                "the pool no longer leases seats"
            )
            return 0
        blob = service.deactivation_request(offline=True)
        old = service.forget_pool()
    print(
        f"deactivated{f' activation {old.activation_id}' if old else ''}; the pool no longer leases seats. "
        "Send this deactivation code to the vendor to free the activation:",
        file=sys.stderr,
    )
    write_out(armor(labels.DEACTIVATION_CODE, blob), args.out)
    return 0
