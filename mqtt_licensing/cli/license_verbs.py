"""The operator verbs that send one request: ``activate``, ``status``, ``reactivate``,
``deactivate``, ``offline-request``, ``offline-cancel``.

Each connects to the broker as an admin client, publishes one ``$license/...`` request
(see topics.md) and prints the reply: a readable summary by default, the raw reply with
``--json``. Failures exit non-zero with ``error [code]: message``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from ..core.errors import ErrorCode, LicensingError
from .format import deactivation_banner, format_status, text_or_none
from .license_follow import watch_status
from .license_io import (
    InputFileError,
    client_from_args,
    emit_json,
    guarded,
    license_key_from_args,
    read_text,
    write_text,
)

OFFLINE_REQUEST_INSTRUCTIONS = (
    "Send this usage request code to your vendor (as text or as the file).",
    "They answer with a usage license; apply it with:",
    "    mqtt-licensing activate --usage-license-file FILE",
    "Each new request invalidates the previous one: only the usage license",
    "answering this newest request will be accepted.",
)


def _request(args: argparse.Namespace, operation: str, fields: dict[str, Any]) -> dict[str, Any]:
    """Send one request; with --json print the reply (or the error reply) as it is."""
    try:
        with client_from_args(args) as client:
            # Progress goes to stderr: stdout stays the reply alone (--json, scripts).
            reply = client.request(operation, fields, on_progress=None if operation == "status" else _progress)
    except LicensingError as exc:
        if args.json:
            emit_json({"ok": False, "operation": operation, "error": exc.to_dict()}, sys.stdout)
        raise
    if args.json:
        emit_json(reply, sys.stdout)
    return reply


def _progress(event: dict[str, Any]) -> None:
    print(f"{event.get('message') or 'waiting for a license server'} ...", file=sys.stderr, flush=True)


def _with_status(headline: str, reply: dict[str, Any]) -> str:
    status = reply.get("status")
    return headline if status is None else f"{headline}\n\n{format_status(status)}"


def _offline_code(doc: Any) -> tuple[str, str] | None:
    """``(what, code)``: the deactivation code a status carries, else its pending request code."""
    offline = (doc.get("offline") if isinstance(doc, dict) else None) or {}
    if code := text_or_none(offline.get("deactivation_code")):
        return "deactivation", code
    if code := text_or_none(offline.get("request_code")):
        return "usage request", code
    return None


@guarded
def cmd_activate(args: argparse.Namespace) -> int:
    parser: argparse.ArgumentParser = args.parser
    if args.features is not None and args.floating is None:
        parser.error("--features only goes with --floating URL")
    if args.floating is not None:
        fields: dict[str, Any] = {"method": "floating", "server_url": args.floating}
        if args.features is not None:
            features = [f.strip() for f in args.features.split(",") if f.strip()]
            if not features:
                parser.error("--features needs at least one feature name")
            fields["features"] = features
        method = "floating"
    elif args.usage_license_file is not None:
        text = read_text(args.usage_license_file, "usage license file")
        if not text.strip():
            raise InputFileError(f"usage license file {args.usage_license_file} is empty")
        fields, method = {"method": "offline", "usage_license": text}, "offline"
    elif args.key is not None or args.key_file is not None:
        fields, method = {"method": "online", "license_key": license_key_from_args(args)}, "online"
    else:
        parser.error(
            "say what to activate: --key KEY, --key-file FILE, --usage-license-file FILE "
            "or --floating URL --features A,B"
        )

    reply = _request(args, "activate", fields)
    if not args.json:
        print(_with_status(f"Activated ({method}).", reply))
    return 0


@guarded
def cmd_status(args: argparse.Namespace) -> int:
    if args.watch:
        return watch_status(args)
    reply = _request(args, "status", {})
    doc = reply.get("status")
    offline_code = _offline_code(doc)
    if not args.json:
        text = format_status(doc)
        if offline_code and not args.code_out:
            text += f"\n\nTo write the {offline_code[0]} code to a file: mqtt-licensing status --code-out FILE"
        print(text)
    if args.code_out:
        # the code travels to the vendor on a file: say so when there is none rather than write an empty one
        if offline_code is None:
            raise LicensingError(
                ErrorCode.NO_PENDING_REQUEST,
                "there is no offline code to write (no deactivation code, no pending request); "
                f"{args.code_out} was not written",
            )
        write_text(args.code_out, offline_code[1], "offline code")
        if not args.json:
            print(f"Wrote the code to {args.code_out}.")
    return 0


@guarded
def cmd_deactivate(args: argparse.Namespace) -> int:
    reply = _request(args, "deactivate", {})
    code = text_or_none(reply.get("deactivation_code"))
    if not args.json:
        if code:
            print(f"Deactivated (offline license).\n\n{deactivation_banner(code)}")
        elif reply.get("seat_released") is False:
            print(
                _with_status(
                    "Deactivated, but the floating server could not be told: the seat frees itself "
                    "when its lease expires.",
                    reply,
                )
            )
        else:
            print(
                _with_status("Deactivated: the activation (or floating seat) is free to use on another broker.", reply)
            )
    if code and args.out:
        write_text(args.out, code, "deactivation code")  # after printing: a bad path must not lose the code
        if not args.json:
            print(f"The code was also written to {args.out}.")
    if args.out and not code:
        print(
            f"note: there is no deactivation code (not an offline license); {args.out} was not written", file=sys.stderr
        )
    return 0


@guarded
def cmd_offline_request(args: argparse.Namespace) -> int:
    key = license_key_from_args(args)
    reply = _request(args, "offline_request", {"license_key": key})
    code = text_or_none(reply.get("request_code"))
    if code is None:
        raise LicensingError(ErrorCode.BAD_RESPONSE, "the agent's reply carries no request_code")
    if args.out:
        try:
            write_text(args.out, code, "request code")
        except InputFileError:
            if not args.json:
                print(code.rstrip("\n"))  # the request is made: show it rather than lose it
            raise
        if not args.json:
            print(f"Wrote the usage request code to {args.out}.")
            print("\n".join(OFFLINE_REQUEST_INSTRUCTIONS))
    elif not args.json:
        print(code.rstrip("\n"))
        print("\n" + "\n".join(OFFLINE_REQUEST_INSTRUCTIONS), file=sys.stderr)
    return 0


def _verb(operation: str, headline: str) -> Callable[[argparse.Namespace], int]:
    """A verb that sends a request without fields and prints ``headline`` and the new status."""

    @guarded
    def verb(args: argparse.Namespace) -> int:
        reply = _request(args, operation, {})
        if not args.json:
            print(_with_status(headline, reply))
        return 0

    return verb


cmd_offline_cancel = _verb("offline_cancel", "Cancelled the pending offline request.")
cmd_reactivate = _verb("reactivate", "Reactivated: license terms refreshed.")
