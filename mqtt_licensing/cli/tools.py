"""Small helper verbs: ``hash-password`` (scrypt hash for broker_config)."""

from __future__ import annotations

import argparse
import getpass
import sys

from ..core.passwords import hash_password


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "hash-password",
        help="print the scrypt hash of a password, for broker_config",
        description="Hash a password for the admin/users section of a broker config. Without --password the "
        "password is prompted for twice (or read as one line from standard input when that is "
        "not a terminal), so it need not appear on the command line.",
    )
    p.add_argument("--password", default=None, help="the password (default: prompt for it)")
    p.set_defaults(func=cmd_hash_password)


def _read_password() -> str | None:
    if not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\r\n")
    first = getpass.getpass("Password: ")
    if getpass.getpass("Repeat password: ") != first:
        print("error: the passwords differ", file=sys.stderr)
        return None
    return first


def cmd_hash_password(args: argparse.Namespace) -> int:
    password = args.password if args.password is not None else _read_password()
    if password is None:
        return 2
    if not password:
        print("error: the password is empty", file=sys.stderr)
        return 2
    print(hash_password(password))
    return 0
