"""What the operator verbs take from outside their flags, or write besides the reply on stdout.

The environment and a password prompt (for the broker connection), key and code files.
A file or environment mistake is an :class:`InputFileError`: a usage error (exit 2),
reported before any network traffic.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO, TypeVar

from ..clients.mqtt import DEFAULT_HOST, DEFAULT_PORT, ClientTls, LicenseClient
from ..core.keys import normalize_key

ENV_HOST = "MQTT_LICENSING_HOST"
ENV_PORT = "MQTT_LICENSING_PORT"
ENV_USERNAME = "MQTT_LICENSING_USERNAME"
ENV_PASSWORD = "MQTT_LICENSING_PASSWORD"
ENV_CAFILE = "MQTT_LICENSING_CAFILE"
_MAX_INPUT_FILE = 256 * 1024  # keys and codes are a few KB at most

N = TypeVar("N", int, float)


class InputFileError(Exception):
    """A file named on the command line cannot be read or written (exit 2, like a usage error)."""


def guarded(func: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Turn an :class:`InputFileError` of a verb into ``error: ...`` and exit 2."""

    def wrapper(args: argparse.Namespace) -> int:
        try:
            return func(args)
        except InputFileError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2

    wrapper.__name__ = func.__name__
    wrapper.__doc__ = func.__doc__
    return wrapper


def number_arg(text: str, convert: Callable[[str], N], what: str) -> N:
    """``convert(text)``, or the argparse error saying the text is not ``what``."""
    try:
        return convert(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None


def parse_port(text: str) -> int:
    port = number_arg(text, int, "a port number")
    if not 0 < port < 65536:
        raise argparse.ArgumentTypeError(f"{port} is not a port number (1-65535)")
    return port


def endpoint(args: argparse.Namespace) -> tuple[str, int]:
    """--host/--port, else the environment, else the defaults; a bad $MQTT_LICENSING_PORT is a usage error."""
    host = args.host or os.environ.get(ENV_HOST) or DEFAULT_HOST
    if args.port is not None:
        return host, int(args.port)
    env_port = os.environ.get(ENV_PORT)
    if not env_port:
        return host, DEFAULT_PORT
    try:
        return host, parse_port(env_port)
    except argparse.ArgumentTypeError as exc:
        raise InputFileError(f"${ENV_PORT}: {exc}") from None


def credentials(args: argparse.Namespace) -> tuple[str | None, str | None]:
    username = args.username if args.username is not None else os.environ.get(ENV_USERNAME) or None
    password = args.password if args.password is not None else os.environ.get(ENV_PASSWORD)
    if username is not None and password is None and sys.stdin.isatty():
        password = getpass.getpass(f"MQTT password for {username}: ")
    return username, password


def client_from_args(args: argparse.Namespace) -> LicenseClient:
    """A not yet connected client for the broker the flags and the environment name."""
    username, password = credentials(args)
    host, port = endpoint(args)
    return LicenseClient(
        host, port, username=username, password=password, client_id=args.client_id, timeout=args.timeout,
        tls=tls_from_args(args),
    )  # fmt: skip


def tls_from_args(args: argparse.Namespace) -> ClientTls | None:
    """TLS when any TLS option (or $MQTT_LICENSING_CAFILE) is given; else plain MQTT."""
    cafile = args.cafile or os.environ.get(ENV_CAFILE) or None
    if args.cert_key and not args.cert:
        raise InputFileError("--cert-key goes with --cert (the client certificate it belongs to)")
    if not (cafile or args.cert or args.insecure):
        return None
    return ClientTls(cafile=cafile, certfile=args.cert, keyfile=args.cert_key, insecure=args.insecure)


def read_text(path: str, what: str) -> str:
    try:
        with open(path, "rb") as fh:
            data = fh.read(_MAX_INPUT_FILE + 1)
    except OSError as exc:
        raise InputFileError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    if len(data) > _MAX_INPUT_FILE:
        raise InputFileError(f"{what} {path} is larger than {_MAX_INPUT_FILE // 1024} KB: is it the right file?")
    return data.decode("utf-8", errors="replace")


def write_text(path: str, text: str, what: str) -> None:
    try:
        Path(path).write_text(text if text.endswith("\n") else text + "\n", encoding="utf-8")
    except OSError as exc:
        raise InputFileError(f"cannot write {what} to {path}: {exc.strerror or exc}") from None


def license_key_from_args(args: argparse.Namespace) -> str:
    """The canonical key from --key or --key-file; a typo fails here with invalid_key, before any network."""
    text = args.key if args.key is not None else read_text(args.key_file, "key file")
    return normalize_key(text)


def emit_json(obj: Any, out: TextIO) -> None:
    out.write(json.dumps(obj, indent=2, sort_keys=False) + "\n")
    out.flush()
