"""The operator verbs' command line: ``activate``, ``status``, ``reactivate``, ``deactivate``,
``offline-request``, ``offline-cancel``, ``events``.

The verbs that send one request are in :mod:`.license_verbs`, the ones that follow a
topic until Ctrl-C in :mod:`.license_follow`; the connection flags of all of them are
here, with the short forms the mosquitto clients use.
"""

from __future__ import annotations

import argparse

from ..clients.mqtt import DEFAULT_HOST, DEFAULT_PORT, DEFAULT_TIMEOUT
from .license_follow import cmd_events
from .license_io import ENV_CAFILE, ENV_HOST, ENV_PASSWORD, ENV_PORT, ENV_USERNAME, number_arg, parse_port
from .license_verbs import (
    cmd_activate,
    cmd_deactivate,
    cmd_offline_cancel,
    cmd_offline_request,
    cmd_reactivate,
    cmd_status,
)


def _positive_seconds(text: str) -> float:
    value = number_arg(text, float, "a number of seconds")
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
    """The broker connection flags, short forms as the mosquitto clients have them, except the host:
    -h is help on every verb of this command, so the host is -H/--host."""
    common = argparse.ArgumentParser(add_help=False)
    group = common.add_argument_group("broker connection")
    group.add_argument("-H", "--host", default=None, help=f"broker host (default ${ENV_HOST} or {DEFAULT_HOST})")
    group.add_argument(
        "-p", "--port", type=parse_port, default=None, help=f"broker port (default ${ENV_PORT} or {DEFAULT_PORT})"
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
    tls = common.add_argument_group("MQTT over TLS (the mosquitto clients' options; any of them turns TLS on)")
    tls.add_argument(
        "--cafile",
        metavar="PEM",
        help=f"trust these CA certificates for the broker (default: ${ENV_CAFILE}, else the system's)",
    )
    tls.add_argument("--cert", metavar="PEM", help="client certificate, for a broker that asks for one")
    tls.add_argument(
        "--cert-key", metavar="PEM", help="the private key of --cert (mosquitto's --key: here --key is the license key)"
    )
    tls.add_argument("--insecure", action="store_true", help="do not check the broker's name against its certificate")
    common.add_argument("--json", action="store_true", help="print the raw reply as JSON")
    return common


def _key_options(parser: argparse.ArgumentParser, *, required: bool) -> argparse._MutuallyExclusiveGroup:
    group = parser.add_mutually_exclusive_group(required=required)
    group.add_argument(
        "--key", metavar="KEY", help="license key (MQL1-...); --key-file keeps it out of the process list"
    )
    group.add_argument("--key-file", metavar="FILE", help="file holding the license key (e.g. the .txt you received)")
    return group


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    common = _connection_options()

    def verb(name: str, *, help: str, description: str) -> argparse.ArgumentParser:
        return subparsers.add_parser(name, parents=[common], help=help, description=description)

    p = verb(
        "activate",
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

    p = verb(
        "status",
        help="show the license status",
        description="Ask the agent for its status; --watch follows the retained "
        "$license/status topic and prints every change until Ctrl-C.",
    )
    p.add_argument("--watch", action="store_true", help="keep printing each status change until Ctrl-C")
    p.add_argument(
        "--code-out", metavar="FILE", help="write the pending offline code (deactivation or request) to FILE"
    )
    p.set_defaults(func=cmd_status)

    p = verb(
        "reactivate",
        help="refresh the license terms from the vendor now",
        description="Pull changed features or expiry without a restart (online licenses).",
    )
    p.set_defaults(func=cmd_reactivate)

    p = verb(
        "deactivate",
        help="release this broker's license",
        description="Free the activation (online), return the seat (floating), or produce the deactivation "
        "code to send to the vendor (offline).",
    )
    p.add_argument("--out", metavar="FILE", help="offline: also write the deactivation code to FILE")
    p.set_defaults(func=cmd_deactivate)

    p = verb(
        "offline-request",
        help="make an offline usage request code for the vendor",
        description="Generate a usage request code for an offline (air-gapped) activation. Send it to the "
        "vendor; each new request invalidates the previous one.",
    )
    _key_options(p, required=True)
    p.add_argument("--out", metavar="FILE", help="write the request code to FILE instead of standard output")
    p.set_defaults(func=cmd_offline_request)

    p = verb(
        "offline-cancel",
        help="drop the pending offline request",
        description="Withdraw the pending usage request code: a usage license answering it is refused "
        "afterwards. Whatever serves now (the trial, a held license) keeps serving.",
    )
    p.set_defaults(func=cmd_offline_cancel)

    p = verb(
        "events",
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
