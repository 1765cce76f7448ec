"""``mqtt-licensing floating ...``: run and provision a self-hosted floating license server.

floating serve      --data DIR [--host 127.0.0.1] [--port 8800] [--ttl 600] [--vendor-key PUB]
                    [--database-url URL] [--tls-cert PEM --tls-key PEM]
floating activate   --data DIR --key-file F --vendor URL --vendor-key PUB      (online)
floating refresh    --data DIR [--vendor URL]                                   (online: new terms)
floating request    --data DIR --key-file F [--out FILE]                        (offline, step 1)
floating install    --data DIR --certificate FILE [--vendor-key PUB]            (offline, step 2)
floating deactivate --data DIR [--vendor URL] [--out FILE]   (online with --vendor, else a code)
floating status     --data DIR [--json]
floating allow      --data DIR [--new-token] [--fingerprint FP] [--network NET] [--remove]   (who may lease)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from ..core import labels
from ..core.codes import armor, unarmor
from ..core.errors import ErrorCode, LicensingError, SetupError
from ..core.keys import mask_key, normalize_key
from ..core.signing import public_key_from_text
from ..core.timefmt import iso, relative
from .floating_access import register_allow
from .logs import add_log_options, setup_logging
from .network import outbound_args, outbound_options, tls_args
from .serverdata import open_data, require_data_folder, require_free_port

DEFAULT_PORT = 8800


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "floating",
        help="self-hosted floating license server",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="floating_verb", required=True, metavar="<command>")

    def command(name: str, help_text: str, func: Any) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument("--data", required=True, type=Path, help="the server's data folder (keys, database)")
        p.add_argument(
            "--database-url",
            "--db-url",
            dest="database_url",
            metavar="URL",
            help="the database, e.g. postgresql://user:pass@host/db (remembered in DIR/database.url; "
            "default: SQLite in DIR/floating.db)",
        )
        p.set_defaults(func=func)
        return p

    p = command("serve", "run the floating license server", _serve)
    add_log_options(p)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=DEFAULT_PORT)
    p.add_argument("--ttl", type=int, default=600, help="lease time to live in seconds (default 600)")
    p.add_argument(
        "--new-identities-per-minute",
        type=int,
        metavar="N",
        help="at most N instances new to the pool per source address and minute (default: no limit)",
    )
    p.add_argument("--vendor-key", help="pin the vendor public key (file or text); stored in DIR/vendor.pub")
    p.add_argument(
        "--refresh-interval",
        type=int,
        default=24 * 3600,
        help="seconds between certificate refreshes with the vendor for an online-activated pool "
        "(0: never; default 86400)",
    )
    p.add_argument(
        "--usage-forward-interval",
        type=float,
        default=300.0,
        help="seconds between forwarding the brokers' usage records to an online vendor (0: never; default 300)",
    )
    tls_args(p)
    outbound_args(p)

    p = command("activate", "activate this floating server online against the vendor", _activate)
    _key_args(p)
    p.add_argument("--vendor", required=True, help="the vendor activation server URL")
    p.add_argument("--vendor-key", required=True, help="the vendor public key (file or text) to pin")
    outbound_args(p)

    p = command("refresh", "pull the current terms (seats, features, validity) from the vendor", _refresh)
    p.add_argument("--vendor", help="the vendor activation server URL (default: the one activated with)")
    outbound_args(p)

    p = command("request", "offline activation, step 1: print a request code for the vendor", _request)
    _key_args(p)
    p.add_argument("--out", type=Path, help="also write the code to this file")

    p = command("install", "offline activation, step 2: install the certificate code from the vendor", _install)
    p.add_argument("--certificate", required=True, help="file with the certificate code ('-' for stdin)")
    p.add_argument("--vendor-key", help="the vendor public key (file or text) to pin (default: DIR/vendor.pub)")

    p = command(
        "deactivate",
        "return the activation to the vendor (online with --vendor, else print a "
        "deactivation code); the pool stops leasing",
        _deactivate,
    )
    p.add_argument("--vendor", help="the vendor activation server URL: deactivate online")
    p.add_argument("--out", type=Path, help="offline: also write the deactivation code to this file")
    outbound_args(p)

    register_allow(command)

    p = command("status", "seats used and free, and every lease", _status)
    p.add_argument("--json", action="store_true", help="machine-readable output")


def _key_args(p: argparse.ArgumentParser) -> None:
    group = p.add_mutually_exclusive_group(required=True)
    group.add_argument("--key-file", type=Path, help="a .txt file holding the license key")
    group.add_argument("--key", help="the license key itself")


# -- helpers -----------------------------------------------------------------------------


def _service(args: argparse.Namespace, *, must_exist: bool = False, **kwargs: Any) -> Any:
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


def _vendor_key(value: str) -> Any:
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


def _read_text(source: str) -> str:
    if source == "-":
        return sys.stdin.read()
    try:
        return Path(source).read_text()
    except OSError as exc:
        raise SetupError(
            ErrorCode.INVALID_FIELD, f"cannot read {source}: {exc.strerror}; check the file name"
        ) from None


def _write_code(text: str, out: Path | None) -> None:
    print(text, end="")
    if out is not None:
        try:
            out.write_text(text)
        except OSError as exc:
            raise SetupError(
                ErrorCode.INVALID_FIELD, f"cannot write {out}: {exc.strerror}; the code is above, choose another --out"
            ) from None
        print(f"(also written to {out})", file=sys.stderr)


def _when(ts: int | None, now: int | None = None) -> str:
    if ts is None:
        return "never"
    text = str(iso(ts))
    return f"{text} ({relative(ts, now)})" if now is not None else text


def _describe(cert: Any) -> str:
    return (
        f"license {cert.license_id} ({cert.key_mask}), activation {cert.activation_id}: "
        f"{cert.seats} seat(s), features {', '.join(cert.features) or '-'}, "
        f"valid until {_when(cert.valid_until)}, expires {_when(cert.expires_at)}"
    )


# -- verbs -----------------------------------------------------------------------------------


def _serve(args: argparse.Namespace) -> int:
    from ..servers._files import load_or_create_token
    from ..servers._run import serve_forever, tls_options
    from ..servers.floating.app import create_app
    from ..servers.floating.usage import vendor_duties

    vendor = _vendor_key(args.vendor_key) if args.vendor_key else None
    vendor_http = outbound_options(args)
    tls = tls_options(args.tls_cert, args.tls_key)  # a bad certificate stops us before anything opens
    # the cheap setup check first: its one line is then all the output. A new folder is allowed
    # here: an unprovisioned server may start and be provisioned later (it says so)
    require_free_port(args.host, args.port)
    setup_logging(args)
    service = _service(
        args, ttl=args.ttl, vendor_public_key=vendor, new_identities_per_minute=args.new_identities_per_minute
    )
    token = open_data(args.data, lambda: load_or_create_token(args.data))
    background = vendor_duties(service, args.refresh_interval, args.usage_forward_interval, vendor_http)

    status = service.status()
    pool = status["pool"]
    scheme = "https" if tls else "http"
    print(f"floating server {service.fingerprint} on {scheme}://{args.host}:{args.port}", file=sys.stderr)
    print(f"  data {args.data}  ttl {service.ttl} s  admin token in {args.data / 'admin.token'}", file=sys.stderr)
    if pool is None:
        print(
            f"  not provisioned{': ' + status['problem'] if status['problem'] else ''} "
            "- run 'mqtt-licensing floating activate' or 'floating request'/'floating install'",
            file=sys.stderr,
        )
    else:
        print(f"  pool: {pool['seats']} seat(s), features {', '.join(pool['features'])}", file=sys.stderr)
    try:
        serve_forever(
            create_app(service, token, background=background),
            args.host,
            args.port,
            tls_cert=args.tls_cert,
            tls_key=args.tls_key,
        )
    finally:
        service.close()
    return 0


def _activate(args: argparse.Namespace) -> int:
    from ..servers.floating.provision import activate_online

    key = _license_key(args)
    vendor = _vendor_key(args.vendor_key)
    service = _service(args)
    try:
        cert = asyncio.run(
            activate_online(service, key, args.vendor, vendor_public_key=vendor, options=outbound_options(args))
        )
    finally:
        service.close()
    print(f"activated {mask_key(key)}: {_describe(cert)}")
    return 0


def _refresh(args: argparse.Namespace) -> int:
    from ..servers.floating.provision import refresh_online

    service = _service(args, must_exist=True)
    try:
        cert = asyncio.run(refresh_online(service, args.vendor, options=outbound_options(args)))
    finally:
        service.close()
    print(f"refreshed: {_describe(cert)}")
    return 0


def _request(args: argparse.Namespace) -> int:
    from ..servers.floating.usage import MAX_RECORDS_PER_CODE

    key = _license_key(args)
    service = _service(args)
    try:
        blob = service.offline_request(key)
        held = service.usage_status()["outbox"]
    finally:
        service.close()
    if held:  # issue 16: the oldest ones ride in the code; the certificate's answer receipts them
        carried = min(held, MAX_RECORDS_PER_CODE)
        print(f"it carries {carried} of {held} usage record(s) held for the vendor", file=sys.stderr)
    print(
        f"floating request for server {service.fingerprint} ({mask_key(key)}); send this code to the vendor. "
        "A newer request replaces this one.",
        file=sys.stderr,
    )
    _write_code(armor(labels.FLOATING_REQUEST, blob), args.out)
    return 0


def _install(args: argparse.Namespace) -> int:
    blob = unarmor(_read_text(args.certificate), labels.FLOATING_CERTIFICATE)
    vendor = _vendor_key(args.vendor_key) if args.vendor_key else None
    service = _service(args, must_exist=True)
    try:
        cert = service.install_certificate(blob, offline=True, vendor_public_key=vendor)
    finally:
        service.close()
    print(f"installed: {_describe(cert)}")
    return 0


def _deactivate(args: argparse.Namespace) -> int:
    service = _service(args, must_exist=True)
    try:
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
    finally:
        service.close()
    print(
        f"deactivated{f' activation {old.activation_id}' if old else ''}; the pool no longer leases seats. "
        "Send this deactivation code to the vendor to free the activation:",
        file=sys.stderr,
    )
    _write_code(armor(labels.DEACTIVATION_CODE, blob), args.out)
    return 0


def _status(args: argparse.Namespace) -> int:
    service = _service(args, must_exist=True)
    try:
        status = service.status()
    finally:
        service.close()
    status.pop("ttl", None)  # the running server's --ttl is not recorded in the data folder
    if args.json:
        print(json.dumps(status, indent=2, sort_keys=True))
        return 0
    now = status["now"]
    pool = status["pool"]
    seats = status["seats"]
    lines = [f"floating server  {status['server_fingerprint']}"]
    if pool is None:
        lines.append("pool             not provisioned" + (f" ({status['problem']})" if status["problem"] else ""))
        if status["pending_request"]:
            lines.append("                 an offline request is pending: install the vendor's certificate")
    else:
        lines += [
            f"pool             {pool['state']}  license {pool['license_id']} ({pool['key_mask']})  "
            f"activation {pool['activation_id']}",
            f"features         {', '.join(pool['features']) or '-'}",
            f"valid until      {_when(pool['valid_until'], now)}",
            f"expires          {_when(pool['expires_at'], now)}",
        ]
        if pool["support_until"] is not None:
            lines.append(f"support until    {_when(pool['support_until'], now)}")
    lines.append(f"seats            {seats['used']} used, {seats['free']} free, {seats['total']} total")
    rules = ", ".join(f"{r['kind']} {r['value']}" for r in status["access"])
    lines.append(f"new instances    {rules or 'anyone who can reach this server (mqtt-licensing floating allow)'}")
    if status["vendor_url"]:
        lines.append(f"vendor           {status['vendor_url']}")
    for lease in status["leases"]:
        lines.append(
            f"  {lease['lease_id']}  instance {lease['instance_fingerprint']}  "
            f"features {','.join(lease['features']) or '-'}  expires {_when(lease['expires_at'], now)}"
            + (f"  CLONED x{lease['clone_count']}" if lease.get("clone_count") else "")
        )
    print("\n".join(lines))
    return 0
