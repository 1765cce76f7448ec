"""``mqtt-licensing vendor key rotate|retire|list``: change the key that signs, without touching a site.

After ``rotate`` (and after ``retire``), restart ``vendor serve`` and copy the data folder's
``vendor.key`` and ``key-documents.txt`` to every replica: brokers and floating servers learn
the new key at their next check-in from the documents, each signed by a key they already trust."""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .serverdata import data_command, require_data_folder

CREATE = "mqtt-licensing vendor init DIR"


def register(verbs: argparse._SubParsersAction[argparse.ArgumentParser], _open_service: Callable[..., Any]) -> None:
    group = verbs.add_parser("key", help="rotate and retire the vendor signing key", description=__doc__)
    sub = group.add_subparsers(dest="key_verb", required=True, metavar="<command>")

    def verb(name: str, help_text: str, func: Callable[[argparse.Namespace], int]) -> argparse.ArgumentParser:
        return data_command(sub, name, help_text, func, kind="vendor", database="vendor.db")

    verb("rotate", "make a new signing key current (the old one endorses it)", _rotate)
    p = verb("retire", "end a previous key: what it signed is refused from then on", _retire)
    p.add_argument("fingerprint", help="the previous key's fingerprint (a unique prefix will do)")
    p = verb("list", "the current key, the previous ones and the retired ones", _list)
    p.add_argument("--json", action="store_true")


def _folder(args: argparse.Namespace) -> Path:
    data = Path(args.data)
    require_data_folder(data, "vendor", kind="vendor", create=CREATE)
    return data


def _rotate(args: argparse.Namespace) -> int:
    from ..servers.activation import keys

    old, new = keys.rotate(_folder(args), int(time.time()))
    print(f"vendor key rotated: {old[:12]} -> {new[:12]} (the old key endorses the new one)")
    print("  restart `vendor serve` (and copy vendor.key, key-documents.txt to every replica);")
    print(f"  after every site has checked in, end the old key: mqtt-licensing vendor key retire {old[:12]}")
    return 0


def _retire(args: argparse.Namespace) -> int:
    from ..servers.activation import keys

    keys.retire(_folder(args), args.fingerprint, int(time.time()))
    print(
        f"vendor key {args.fingerprint} retired: restart `vendor serve`; sites refuse what it signs once they see this"
    )
    return 0


def _list(args: argparse.Namespace) -> int:
    from ..servers.activation import keys

    described = keys.describe(_folder(args))
    if args.json:
        print(json.dumps(dataclasses.asdict(described), indent=2, sort_keys=True))
        return 0
    print(f"current   {described.current}")
    for fp in described.previous:
        print(f"previous  {fp}{'  (retired)' if fp in described.retired else ''}")
    return 0
