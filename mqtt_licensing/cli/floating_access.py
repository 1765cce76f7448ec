"""``mqtt-licensing floating allow``: who may take a new seat of the pool, and what a cloned lease
costs (``--clone-policy``, ``--unsuspend``).

Without any rule the pool is open to anyone who can reach the floating server. The first rule
closes it to everyone else; leases already held renew as before.
"""

from __future__ import annotations

import argparse
from typing import Any


def register_allow(command: Any) -> None:
    p = command(
        "allow",
        "admit new instances to the pool by join token, fingerprint or network (the first rule closes the pool)",
        _allow,
    )
    p.add_argument("--new-token", action="store_true", help="make a join token (printed once) for broker configs")
    p.add_argument("--fingerprint", action="append", default=[], metavar="FP", help="an instance fingerprint")
    p.add_argument("--network", action="append", default=[], metavar="NET", help="a source network, e.g. 10.0.0.0/8")
    p.add_argument("--remove", action="store_true", help="remove the --fingerprint / --network rules given")
    p.add_argument("--remove-tokens", action="store_true", help="revoke every join token")
    p.add_argument(
        "--clone-policy",
        choices=("flag", "suspend"),
        help="a lease renewed by two copies of one instance: flag it (default) or suspend that instance",
    )
    p.add_argument("--unsuspend", action="append", default=[], metavar="FP", help="lift a clone suspension")


def _allow(args: argparse.Namespace) -> int:
    from ..servers.floating.service import FloatingService  # imported per verb: keeps every CLI call fast

    service = FloatingService.open(args.data)
    try:
        rules = [("fingerprint", v) for v in args.fingerprint] + [("network", v) for v in args.network]
        for kind, value in rules:
            if args.remove:
                service.disallow(kind, value)
            else:
                service.allow(kind, value)
        if args.remove_tokens:
            with service.store.transaction() as tx:
                for kind, value in tx.access_rules():
                    if kind == "token":
                        tx.remove_access(kind, value)
        _clones(service, args)
        if args.new_token:
            print(f"join token (put it in the broker config as floating_join_token): {service.allow('token')}")
        status = service.status()
    finally:
        service.close()
    access = status["access"]
    print(f"clone policy: {status['clone_policy']}")
    for held in status["suspended"]:
        print(f"suspended: {held['instance_fingerprint']} (lease {held['lease_id']} renewed by two copies)")
    if not access:
        print("access: open to anyone who can reach this server (no rules)")
    for rule in access:
        print(f"access: {rule['kind']:<12} {rule['value']}")
    return 0


def _clones(service: Any, args: argparse.Namespace) -> None:
    if args.clone_policy:
        service.set_clone_policy(args.clone_policy)
    for fp in args.unsuspend:
        print(f"{'unsuspended' if service.unsuspend(fp) else 'not suspended'}: {fp}")


__all__ = ["register_allow"]
