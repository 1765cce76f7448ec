"""``mqtt-licensing demo``: a vendor server and a broker with the agent, ready to play with.

Everything runs in this one process (vendor server on a thread, broker on the
main event loop) from files written under ``--dir``, so what the demo uses is
what an operator would configure by hand: a real broker_config YAML, a real
vendor data folder, license keys as .txt files.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import shlex
import sys
from pathlib import Path
from typing import Any

DEMO_ADMIN, DEMO_PASSWORD = "admin", "demo-admin"


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("demo", help="run a vendor server and a broker with the agent, with demo keys")
    p.add_argument("--dir", default="demo-data", help="where the demo keeps its files (default ./demo-data)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=1883, help="MQTT port (default 1883)")
    p.add_argument("--vendor-port", type=int, default=8700, help="vendor server port (default 8700)")
    p.add_argument("--http-port", type=int, default=8080, help="the broker's License page (default 8080)")
    p.add_argument("--ws-port", type=int, default=8083, help="MQTT over WebSocket for the License page (default 8083)")
    p.add_argument(
        "--store",
        action="store_true",
        help="also run the store and customer portal against localstripe and an SMTP sink (needs the test extra)",
    )
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    import yaml

    from ..adapters.amqtt.runner import load_config, serve
    from ..core.passwords import hash_password
    from ..servers._files import load_or_create_token
    from ..servers._run import ServerThread
    from ..servers.activation import ActivationService, create_app

    # Before anything is opened or written: a demo already running keeps its files (broker.yaml).
    _check_ports_free(args.host, (("--port", args.port), ("--vendor-port", args.vendor_port)))
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("mqtt_licensing").setLevel(logging.INFO)
    root = Path(args.dir).resolve()
    vendor_dir = root / "vendor"
    service = ActivationService.open(vendor_dir)
    store, shop = _start_store(args, root, service) if args.store else (None, None)
    vendor = ServerThread(
        create_app(service, load_or_create_token(vendor_dir), **(shop.hooks() if shop else {})),
        host=args.host,
        port=args.vendor_port,
    )
    vendor.start()

    keys = _demo_keys(service, root)
    config_path = root / "broker.yaml"
    config: dict[str, Any] = {
        "listeners": {
            "default": {"type": "tcp", "bind": f"{args.host}:{args.port}"},
            "ws": {"type": "ws", "bind": f"{args.host}:{args.ws_port}"},  # the License page's MQTT
        },
        "plugins": {
            "mqtt_licensing.adapters.amqtt.LicensingPlugin": {
                "state_dir": "broker-state",
                "http_bind": f"{args.host}:{args.http_port}",
                # The demo's own trial, so deleting demo-data starts it over (the default marker is
                # per host). Absolute: it must not depend on how a relative path resolves.
                "trial_marker": str(root / "trial.json"),
                "vendor_url": vendor.url,
                "vendor_public_key": "vendor/vendor.pub",
                "admins": {DEMO_ADMIN: hash_password(DEMO_PASSWORD)},
                "readers": [],
                "client_classes": {
                    "snowflake_bridge": {"features": ["iot_bridge_snowflake"], "client_id_prefixes": ["snowflake-"]}
                },
                "check_in_interval": 60,
                "retry_interval": 10,
            }
        },
    }
    if store is not None:  # the page's Upgrade button opens the demo store
        config["plugins"]["mqtt_licensing.adapters.amqtt.LicensingPlugin"]["store_url"] = f"{vendor.url}/shop/upgrade"
    config_path.write_text("# written by `mqtt-licensing demo`\n" + yaml.safe_dump(config, sort_keys=False))
    instructions = _instructions(args, root, vendor.url, keys) + (
        store.instructions(f"mqtt-licensing activate{'' if args.port == 1883 else f' --port {args.port}'}")
        if store
        else ""
    )
    try:
        asyncio.run(serve(load_config(config_path), on_started=lambda _broker: print(instructions, flush=True)))
    except KeyboardInterrupt:
        pass
    finally:
        vendor.stop()
        if shop is not None:
            shop.close()
        if store is not None:
            store.stop()
        service.close()
    return 0


def _check_ports_free(host: str, ports: tuple[tuple[str, int], ...]) -> None:
    import errno
    import socket

    from ..core.errors import ErrorCode, SetupError

    for flag, port in ports:
        if port == 0:
            continue
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers bind
            try:
                probe.bind((host, port))
            except OSError as exc:
                if exc.errno != errno.EADDRINUSE:
                    raise
                raise SetupError(
                    ErrorCode.PORT_IN_USE,
                    f"port {port} on {host} is in use (a demo already running?): stop it or pick another {flag}",
                ) from None


def _start_store(args: argparse.Namespace, root: Path, service: Any) -> tuple[Any, Any]:
    from ..servers.shop.devtools import DemoStore

    store = DemoStore(root / "store", f"http://{args.host}:{args.vendor_port}")
    return store, store.start(service)


def _demo_keys(service: Any, root: Path) -> dict[str, Path]:
    """Issue the demo licenses once; later runs reuse the key files."""
    import time

    one_year = int(time.time()) + 365 * 86400
    specs: dict[str, dict[str, Any]] = {
        "license.txt": {
            "features": ["mqtt_server", "mqtt_server_support"],
            "max_activations": 2,
            "support_until": one_year,
        },
        "offline-license.txt": {"features": ["mqtt_server"], "model": "offline"},
    }
    paths = {}
    for name, terms in specs.items():
        path = root / name
        if not path.exists():
            record, key = service.issue_license(**terms)
            path.write_text(key + "\n")
            (root / (name.removesuffix(".txt") + ".id")).write_text(record["id"] + "\n")
        paths[name] = path
    return paths


def page_url(args: argparse.Namespace) -> str:
    host = f"[{args.host}]" if ":" in args.host else args.host
    return f"http://{host}:{args.http_port}/"


def _instructions(args: argparse.Namespace, root: Path, vendor_url: str, keys: dict[str, Path]) -> str:
    def rel(p: Path) -> str:
        return shlex.quote(str(p.relative_to(Path.cwd())) if p.is_relative_to(Path.cwd()) else str(p))

    vendor_dir = rel(root / "vendor")
    license_id = (root / "license.id").read_text().strip()
    port = "" if args.port == 1883 else f" --port {args.port}"
    key_file = rel(keys["license.txt"])
    mq = f"-V mqttv311 -h {args.host} -p {args.port} -u {DEMO_ADMIN} -P {DEMO_PASSWORD}"
    # A new terminal has no venv on its PATH: the first line puts this one there.
    venv = Path(sys.prefix)
    activate = f"\n  source {rel(venv / 'bin' / 'activate')}" if sys.prefix != sys.base_prefix else ""
    return (
        f"""
mqtt-licensing demo is running (Ctrl-C stops it)
  vendor activation server : {vendor_url}   data: {vendor_dir}
  broker with the agent    : mqtt://{args.host}:{args.port}   config: {rel(root / "broker.yaml")}
  License page             : {page_url(args)}   (log in as {DEMO_ADMIN})
  admin login              : {DEMO_ADMIN} / {DEMO_PASSWORD}
  demo license key         : {rel(keys["license.txt"])}   (online; license id {license_id})
  offline license key      : {rel(keys["offline-license.txt"])}

Try, in another terminal (same folder):{activate}
  export MQTT_LICENSING_USERNAME={DEMO_ADMIN} MQTT_LICENSING_PASSWORD={DEMO_PASSWORD}
  mqtt-licensing status{port}
  mqtt-licensing activate{port} --key-file {rel(keys["license.txt"])}
  mqtt-licensing vendor update --data {vendor_dir} {license_id} --add-features iot_bridge_snowflake
  mqtt-licensing reactivate{port}
  mqtt-licensing deactivate{port}

The same with mosquitto-clients (mosquitto_rr prints the reply; mosquitto_sub watches):
  mosquitto_rr {mq} -i ops -q 1 -W 10 -t '$license/activate' -e '$license/reply/ops' -m "{{\\"license_key\\": \\"$(cat {key_file})\\"}}"
  mosquitto_rr {mq} -i ops -q 1 -W 10 -t '$license/status' -e '$license/reply/ops' -m '{{}}'
  mosquitto_sub {mq} -i watcher -t '$license/status' -t '$license/events' -v &
  mosquitto_pub {mq} -i ops -t '$license/deactivate' -m '{{}}'
""".rstrip()
        + "\n"
    )
