"""``mqtt-licensing floating ...``: run and provision a self-hosted floating license server.

floating serve      --data DIR [--host 127.0.0.1] [--port 8800] [--ttl 600] [--vendor-key PUB]
                    [--database-url URL] [--tls-cert PEM --tls-key PEM] [--trusted-proxies NETS]
                    [--workers N]
floating activate   --data DIR --key-file F --vendor URL --vendor-key PUB      (online)
floating refresh    --data DIR [--vendor URL]                                   (online: new terms)
floating request    --data DIR --key-file F [--out FILE]                        (offline, step 1)
floating install    --data DIR --certificate FILE [--vendor-key PUB]            (offline, step 2)
floating deactivate --data DIR [--vendor URL] [--out FILE]   (online with --vendor, else a code)
floating status     --data DIR [--label TEXT] [--silent-for DURATION] [--json]
floating allow      --data DIR [--new-token] [--fingerprint FP] [--network NET] [--remove]   (who may lease)
"""

# Here: the argparse table and `status`; `serve` (and `--workers`) is in floating_serve.py,
# provisioning (activate, refresh, the offline codes, deactivate) in floating_provision.py, `allow`
# in floating_access.py.

from __future__ import annotations

import argparse
import json
from contextlib import closing
from pathlib import Path
from typing import Any

from ..core.listing import LeaseFilter, parse_duration, parse_label
from ..core.timefmt import relative
from ..servers.defaults import FLOATING_FORWARD_INTERVAL as DEFAULT_FORWARD_INTERVAL
from ..servers.defaults import FLOATING_REFRESH_INTERVAL as DEFAULT_REFRESH_INTERVAL
from ..servers.defaults import FLOATING_TTL as DEFAULT_TTL
from . import webhooks
from .floating_access import register_allow
from .floating_provision import (
    activate,
    deactivate,
    install,
    key_args,
    open_service,
    refresh,
    request,
    when,
)
from .floating_serve import serve
from .format import safe_text
from .logs import add_log_options
from .network import metrics_args, outbound_args, tls_args
from .serverdata import checked, data_command, workers_arg

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
        return data_command(sub, name, help_text, func, kind="floating server", database="floating.db")

    p = command("serve", "run the floating license server", serve)
    add_log_options(p)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=DEFAULT_PORT)
    p.add_argument(
        "--ttl", type=int, default=DEFAULT_TTL, help=f"lease time to live in seconds (default {DEFAULT_TTL})"
    )
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
        default=DEFAULT_REFRESH_INTERVAL,
        help="seconds between certificate refreshes with the vendor for an online-activated pool "
        f"(0: never; default {DEFAULT_REFRESH_INTERVAL})",
    )
    p.add_argument(
        "--usage-forward-interval",
        type=float,
        default=DEFAULT_FORWARD_INTERVAL,
        help="seconds between forwarding the brokers' usage records to an online vendor "
        f"(0: never; default {DEFAULT_FORWARD_INTERVAL})",
    )
    p.add_argument(
        "--trusted-proxies",
        metavar="NETS",
        help="comma-separated addresses or networks of your reverse proxies: only their X-Forwarded-For "
        "names the client the new-identity limit and network rules see (default: none, the TCP peer)",
    )
    webhooks.timeout_arg(p)
    workers_arg(p)
    tls_args(p)
    metrics_args(p)
    outbound_args(p)

    p = command("activate", "activate this floating server online against the vendor", activate)
    key_args(p)
    p.add_argument("--vendor", required=True, help="the vendor activation server URL")
    p.add_argument("--vendor-key", required=True, help="the vendor public key (file or text) to pin")
    outbound_args(p)

    p = command("refresh", "pull the current terms (seats, features, validity) from the vendor", refresh)
    p.add_argument("--vendor", help="the vendor activation server URL (default: the one activated with)")
    outbound_args(p)

    p = command("request", "offline activation, step 1: print a request code for the vendor", request)
    key_args(p)
    p.add_argument("--out", type=Path, help="also write the code to this file")

    p = command("install", "offline activation, step 2: install the certificate code from the vendor", install)
    p.add_argument("--certificate", required=True, help="file with the certificate code ('-' for stdin)")
    p.add_argument("--vendor-key", help="the vendor public key (file or text) to pin (default: DIR/vendor.pub)")

    p = command(
        "deactivate",
        "return the activation to the vendor (online with --vendor, else print a "
        "deactivation code); the pool stops leasing",
        deactivate,
    )
    p.add_argument("--vendor", help="the vendor activation server URL: deactivate online")
    p.add_argument("--out", type=Path, help="offline: also write the deactivation code to this file")
    outbound_args(p)

    register_allow(command)

    p = command("status", "seats used and free, and every lease (or those a filter picks)", _status)
    p.add_argument(
        "--label",
        metavar="TEXT",
        type=checked(lambda t: parse_label(t, "")),
        help="only leases whose broker's label, or one it had, contains TEXT (any case)",
    )
    p.add_argument(
        "--silent-for",
        metavar="DURATION",
        type=checked(lambda t: parse_duration(t, "")),
        help="only leases not renewed for longer than DURATION (90s, 10m, 2h): brokers missing renewals",
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")
    webhooks.register(sub, open_service, kind="floating server", database="floating.db")


# -- verbs -----------------------------------------------------------------------------------


def _status(args: argparse.Namespace) -> int:
    wanted = LeaseFilter(label=args.label, silent_for=args.silent_for)
    with closing(open_service(args, must_exist=True)) as service:
        status = service.status(wanted)
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
            f"valid until      {when(pool['valid_until'], now)}",
            f"expires          {when(pool['expires_at'], now)}",
        ]
        if pool["support_until"] is not None:
            lines.append(f"support until    {when(pool['support_until'], now)}")
    lines.append(f"seats            {seats['used']} used, {seats['free']} free, {seats['total']} total")
    rules = ", ".join(f"{r['kind']} {r['value']}" for r in status["access"])
    lines.append(f"new instances    {rules or 'ANYONE who can reach this server'}")
    if not rules:  # a pool from before new pools were closed by default
        lines.append(
            "WARNING          the pool is open to anyone: close it with "
            f"mqtt-licensing floating allow --data {args.data} --new-token"
        )
    if status.get("remembered_instances"):
        lines.append(f"returning        {status['remembered_instances']} instance(s) leased to before, admitted again")
    if status["vendor_url"]:
        lines.append(f"vendor           {status['vendor_url']}")
    for lease in status["leases"]:
        lines.append(
            f"  {lease['lease_id']}  instance {lease['instance_fingerprint']}  "
            # The instance chose its label: a terminal escape in it prints as text (\x1b).
            + (f"label {safe_text(lease['label'])}  " if lease.get("label") else "")
            + f"features {','.join(lease['features']) or '-'}  renewed {relative(lease['renewed_at'], now)}  "
            + f"expires {when(lease['expires_at'], now)}"
            + (f"  CLONED x{lease['clone_count']}" if lease.get("clone_count") else "")
        )
    if wanted.active:  # the filter is what was typed: escaped like a label
        shown, used = len(status["leases"]), seats["used"]
        lines.append(safe_text(f"leases           {shown} of {used} match ({status['filter']})"))
    print("\n".join(lines))
    return 0
