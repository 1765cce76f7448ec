"""Operator verbs: ``activate``, ``status``, ``reactivate``, ``deactivate``, ``offline-request``, ``events``.

Each verb connects to the broker as an admin client, publishes one ``$license/...``
request (see topics.md) and prints the reply: a readable summary by default, the
raw reply with ``--json``. Failures exit non-zero with ``error [code]: message``.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from ..clients.mqtt import DEFAULT_HOST, DEFAULT_PORT, DEFAULT_TIMEOUT, LicenseClient
from ..core.errors import ErrorCode, LicensingError
from ..core.keys import normalize_key
from .format import deactivation_banner, format_event, format_status, text_or_none

ENV_HOST = "MQTT_LICENSING_HOST"
ENV_PORT = "MQTT_LICENSING_PORT"
ENV_USERNAME = "MQTT_LICENSING_USERNAME"
ENV_PASSWORD = "MQTT_LICENSING_PASSWORD"
_RECONNECT_FIRST, _RECONNECT_MAX = 1.0, 30.0  # seconds between tries after a lost connection
_MAX_INPUT_FILE = 256 * 1024  # keys and codes are a few KB at most


class InputFileError(Exception):
    """A file named on the command line cannot be read or written (exit 2, like a usage error)."""


# -- formatting (pure functions: unit tested on sample documents) ---------------------------------


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0 < value < 86400:
        raise argparse.ArgumentTypeError("the timeout must be more than 0 seconds and less than a day")
    return value


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _duration(text: str) -> float:
    """``90s``, ``10m``, ``2h``, ``1d`` or plain seconds."""
    value = text.strip().lower()
    unit = _UNITS.get(value[-1:])
    number = value[:-1] if unit else value
    try:
        seconds = float(number) * (unit or 1)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an age like 90s, 10m, 2h or 1d") from None
    if not 0 <= seconds <= 366 * 86400:
        raise argparse.ArgumentTypeError("the age must be between 0 and 366 days")
    return seconds


def _connection_options() -> argparse.ArgumentParser:
    """The broker connection flags, short forms as the mosquitto clients have them (-h is --host there too)."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--help", action="help", help="show this help and exit")
    group = common.add_argument_group("broker connection")
    group.add_argument("-h", "--host", default=None, help=f"broker host (default ${ENV_HOST} or {DEFAULT_HOST})")
    group.add_argument(
        "-p", "--port", type=_port, default=None, help=f"broker port (default ${ENV_PORT} or {DEFAULT_PORT})"
    )
    group.add_argument("-u", "--username", default=None, help=f"admin user name (default: ${ENV_USERNAME})")
    group.add_argument(
        "-P",
        "--password",
        default=None,
        help=f"admin password (default: ${ENV_PASSWORD}; prompted on a terminal if a user is given)",
    )
    group.add_argument("-i", "--client-id", default=None, help="MQTT client id (default: a fresh random one)")
    group.add_argument(
        "-W",
        "--timeout",
        type=_positive_seconds,
        default=DEFAULT_TIMEOUT,
        help=f"seconds to wait for the broker and for each reply (default {DEFAULT_TIMEOUT:g})",
    )
    common.add_argument("--json", action="store_true", help="print the raw reply as JSON")
    return common


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 < port < 65536:
        raise argparse.ArgumentTypeError(f"{port} is not a port number (1-65535)")
    return port


def _endpoint(args: argparse.Namespace) -> tuple[str, int]:
    """--host/--port, else the environment, else the defaults; a bad $MQTT_LICENSING_PORT is a usage error."""
    host = args.host or os.environ.get(ENV_HOST) or DEFAULT_HOST
    if args.port is not None:
        return host, int(args.port)
    env_port = os.environ.get(ENV_PORT)
    if not env_port:
        return host, DEFAULT_PORT
    try:
        return host, _port(env_port)
    except argparse.ArgumentTypeError as exc:
        raise InputFileError(f"${ENV_PORT}: {exc}") from None


def _key_options(parser: argparse.ArgumentParser, *, required: bool) -> argparse._MutuallyExclusiveGroup:
    group = parser.add_mutually_exclusive_group(required=required)
    group.add_argument(
        "--key", metavar="KEY", help="license key (MQL1-...); --key-file keeps it out of the process list"
    )
    group.add_argument("--key-file", metavar="FILE", help="file holding the license key (e.g. the .txt you received)")
    return group


def register(subparsers: argparse._SubParsersAction) -> None:
    common = _connection_options()

    p = subparsers.add_parser(
        "activate",
        parents=[common],
        add_help=False,
        help="activate this broker's license (online, offline or floating)",
        description="Activate the broker's license. Online: --key or --key-file. Offline: --usage-license-file "
        "(the vendor's answer to an offline-request). Floating: --floating URL --features a,b.",
    )
    group = _key_options(p, required=False)
    group.add_argument(
        "--usage-license-file", metavar="FILE", help="offline: the usage license received from the vendor"
    )
    group.add_argument("--floating", metavar="URL", help="floating: URL of the floating license server")
    p.add_argument("--features", metavar="A,B", help="floating: comma-separated features to lease")
    p.set_defaults(func=cmd_activate, parser=p)

    p = subparsers.add_parser(
        "status",
        parents=[common],
        add_help=False,
        help="show the license status",
        description="Ask the agent for its status; --watch follows the retained "
        "$license/status topic and prints every change until Ctrl-C.",
    )
    p.add_argument("--watch", action="store_true", help="keep printing each status change until Ctrl-C")
    p.add_argument(
        "--code-out", metavar="FILE", help="write the pending offline code (deactivation or request) to FILE"
    )
    p.set_defaults(func=cmd_status)

    p = subparsers.add_parser(
        "reactivate",
        parents=[common],
        add_help=False,
        help="refresh the license terms from the vendor now",
        description="Pull changed features or expiry without a restart (online licenses).",
    )
    p.set_defaults(func=cmd_reactivate)

    p = subparsers.add_parser(
        "deactivate",
        parents=[common],
        add_help=False,
        help="release this broker's license",
        description="Free the activation (online), return the seat (floating), or produce the deactivation "
        "code to send to the vendor (offline).",
    )
    p.add_argument("--out", metavar="FILE", help="offline: also write the deactivation code to FILE")
    p.set_defaults(func=cmd_deactivate)

    p = subparsers.add_parser(
        "offline-request",
        parents=[common],
        add_help=False,
        help="make an offline usage request code for the vendor",
        description="Generate a usage request code for an offline (air-gapped) activation. Send it to the "
        "vendor; each new request invalidates the previous one.",
    )
    _key_options(p, required=True)
    p.add_argument("--out", metavar="FILE", help="write the request code to FILE instead of standard output")
    p.set_defaults(func=cmd_offline_request)

    p = subparsers.add_parser(
        "offline-cancel",
        parents=[common],
        add_help=False,
        help="drop the pending offline request",
        description="Withdraw the pending usage request code: a usage license answering it is refused "
        "afterwards. Whatever serves now (the trial, a held license) keeps serving.",
    )
    p.set_defaults(func=cmd_offline_cancel)

    p = subparsers.add_parser(
        "events",
        parents=[common],
        add_help=False,
        help="print license events until Ctrl-C",
        description="Follow $license/events: transitions and refused connections. With --since, first "
        "the events the agent kept from that long ago (its last 500).",
    )
    p.add_argument(
        "--since",
        type=_duration,
        metavar="AGE",
        help="first print the recent events of this age: 90s, 10m, 2h, 1d (or seconds)",
    )
    p.set_defaults(func=cmd_events)


# -- verbs ----------------------------------------------------------------------------------


def _read_text(path: str, what: str) -> str:
    try:
        with open(path, "rb") as fh:
            data = fh.read(_MAX_INPUT_FILE + 1)
    except OSError as exc:
        raise InputFileError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    if len(data) > _MAX_INPUT_FILE:
        raise InputFileError(f"{what} {path} is larger than {_MAX_INPUT_FILE // 1024} KB: is it the right file?")
    return data.decode("utf-8", errors="replace")


def _write_text(path: str, text: str, what: str) -> None:
    try:
        Path(path).write_text(text if text.endswith("\n") else text + "\n", encoding="utf-8")
    except OSError as exc:
        raise InputFileError(f"cannot write {what} to {path}: {exc.strerror or exc}") from None


def license_key_from_args(args: argparse.Namespace) -> str:
    """The canonical key from --key or --key-file; a typo fails here with invalid_key, before any network."""
    text = args.key if args.key is not None else _read_text(args.key_file, "key file")
    return normalize_key(text)


def _credentials(args: argparse.Namespace) -> tuple[str | None, str | None]:
    username = args.username if args.username is not None else os.environ.get(ENV_USERNAME) or None
    password = args.password if args.password is not None else os.environ.get(ENV_PASSWORD)
    if username is not None and password is None and sys.stdin.isatty():
        password = getpass.getpass(f"MQTT password for {username}: ")
    return username, password


def _client(args: argparse.Namespace) -> LicenseClient:
    username, password = _credentials(args)
    host, port = _endpoint(args)
    return LicenseClient(
        host, port, username=username, password=password, client_id=args.client_id, timeout=args.timeout
    )


def _emit_json(obj: Any, out: TextIO) -> None:
    out.write(json.dumps(obj, indent=2, sort_keys=False) + "\n")
    out.flush()


def _request(args: argparse.Namespace, operation: str, fields: dict[str, Any]) -> dict[str, Any]:
    """Send one request; with --json print the reply (or the error reply) as it is."""
    try:
        with _client(args) as client:
            # Progress goes to stderr: stdout stays the reply alone (--json, scripts).
            reply = client.request(operation, fields, on_progress=None if operation == "status" else _progress)
    except LicensingError as exc:
        if args.json:
            _emit_json({"ok": False, "operation": operation, "error": exc.to_dict()}, sys.stdout)
        raise
    if args.json:
        _emit_json(reply, sys.stdout)
    return reply


def _progress(event: dict[str, Any]) -> None:
    print(f"{event.get('message') or 'waiting for a license server'} ...", file=sys.stderr, flush=True)


def _with_status(headline: str, reply: dict[str, Any]) -> str:
    status = reply.get("status")
    return headline if status is None else f"{headline}\n\n{format_status(status)}"


def _guarded(func: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """File problems are usage errors (exit 2), reported before any network traffic."""

    def wrapper(args: argparse.Namespace) -> int:
        try:
            return func(args)
        except InputFileError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2

    wrapper.__name__ = func.__name__
    wrapper.__doc__ = func.__doc__
    return wrapper


@_guarded
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
        text = _read_text(args.usage_license_file, "usage license file")
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


@_guarded
def cmd_status(args: argparse.Namespace) -> int:
    if args.watch:
        return _watch_status(args)
    reply = _request(args, "status", {})
    doc = reply.get("status")
    if not args.json:
        text = format_status(doc)
        offline = (doc.get("offline") if isinstance(doc, dict) else None) or {}
        code = text_or_none(offline.get("deactivation_code")) or text_or_none(offline.get("request_code"))
        if code and not args.code_out:
            what = "deactivation" if offline.get("deactivation_code") else "usage request"
            text += f"\n\nTo write the {what} code to a file: mqtt-licensing status --code-out FILE"
        print(text)
    if args.code_out:
        _write_offline_code(doc, args.code_out)
        if not args.json:
            print(f"Wrote the code to {args.code_out}.")
    return 0


def _write_offline_code(doc: Any, path: str) -> None:
    """The deactivation code a status carries (else the pending request code), to carry to the vendor."""
    offline = (doc.get("offline") if isinstance(doc, dict) else None) or {}
    code = text_or_none(offline.get("deactivation_code")) or text_or_none(offline.get("request_code"))
    if code is None:
        raise LicensingError(
            ErrorCode.NO_PENDING_REQUEST,
            f"there is no offline code to write (no deactivation code, no pending request); {path} was not written",
        )
    _write_text(path, code, "offline code")


def _follow(args: argparse.Namespace, stream: Callable[[LicenseClient], Iterator[dict[str, Any]]],
            show: Callable[[dict[str, Any]], None]) -> int:  # fmt: skip
    """Print a stream until Ctrl-C. A lost connection (broker restart, network) is retried with backoff;
    the first connection is not, so a wrong port or password still fails at once."""
    delay, connected_once = _RECONNECT_FIRST, False
    while True:
        try:
            with _client(args) as client:
                if connected_once:
                    print("reconnected", file=sys.stderr, flush=True)
                connected_once, delay = True, _RECONNECT_FIRST
                for item in stream(client):
                    show(item)
                    sys.stdout.flush()
            return 0
        except KeyboardInterrupt:
            return 0
        except LicensingError as exc:
            if not connected_once or exc.code != ErrorCode.SERVER_UNREACHABLE:
                raise
            print(f"{exc.message}; reconnecting in {delay:g} s", file=sys.stderr, flush=True)
        try:
            time.sleep(delay)
        except KeyboardInterrupt:
            return 0
        delay = min(delay * 2, _RECONNECT_MAX)


def _watch_status(args: argparse.Namespace) -> int:
    shown: list[str] = []

    def show(doc: dict[str, Any]) -> None:
        if args.json:
            sys.stdout.write(json.dumps(doc, separators=(",", ":")) + "\n")
            return
        # A check-in republishes the document with a new updated_at only: not a change worth a line.
        lines = [line for line in format_status(doc).splitlines() if not line.startswith("Updated:")]
        stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        if not shown:
            sys.stdout.write(f"--- {stamp}: status ---\n" + "\n".join(lines) + "\n")
        elif lines != shown:
            changed = [line for line in lines if line not in shown]
            gone = [line.split(":", 1)[0] for line in shown if line not in lines and ":" in line]
            gone = [label for label in gone if not any(line.startswith(label + ":") for line in lines)]
            sys.stdout.write(f"\n--- {stamp}: changed ---\n" + "\n".join(changed + [f"{g}: -" for g in gone]) + "\n")
        shown[:] = lines

    return _follow(args, lambda client: client.status_updates(), show)


@_guarded
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
        _write_text(args.out, code, "deactivation code")  # after printing: a bad path must not lose the code
        if not args.json:
            print(f"The code was also written to {args.out}.")
    if args.out and not code:
        print(
            f"note: there is no deactivation code (not an offline license); {args.out} was not written", file=sys.stderr
        )
    return 0


OFFLINE_REQUEST_INSTRUCTIONS = (
    "Send this usage request code to your vendor (as text or as the file).",
    "They answer with a usage license; apply it with:",
    "    mqtt-licensing activate --usage-license-file FILE",
    "Each new request invalidates the previous one: only the usage license",
    "answering this newest request will be accepted.",
)


@_guarded
def cmd_offline_request(args: argparse.Namespace) -> int:
    key = license_key_from_args(args)
    reply = _request(args, "offline_request", {"license_key": key})
    code = text_or_none(reply.get("request_code"))
    if code is None:
        raise LicensingError(ErrorCode.BAD_RESPONSE, "the agent's reply carries no request_code")
    if args.out:
        try:
            _write_text(args.out, code, "request code")
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


@_guarded
def cmd_offline_cancel(args: argparse.Namespace) -> int:
    reply = _request(args, "offline_cancel", {})
    if not args.json:
        print(_with_status("Cancelled the pending offline request.", reply))
    return 0


@_guarded
def cmd_reactivate(args: argparse.Namespace) -> int:
    reply = _request(args, "reactivate", {})
    if not args.json:
        print(_with_status("Reactivated: license terms refreshed.", reply))
    return 0


@_guarded
def cmd_events(args: argparse.Namespace) -> int:
    def show(event: dict[str, Any]) -> None:
        sys.stdout.write((json.dumps(event, separators=(",", ":")) if args.json else format_event(event)) + "\n")

    first = True

    def stream(client: LicenseClient) -> Iterator[dict[str, Any]]:
        nonlocal first
        if first and args.since is not None:  # the backlog once; a reconnect goes on with live events
            yield from client.recent_events(args.since)
        first = False
        yield from client.events()

    return _follow(args, stream, show)
