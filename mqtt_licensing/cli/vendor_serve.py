"""mqtt-licensing vendor serve: the activation server, in one process or in ``--workers N``."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import webhooks
from .logs import add_log_options, setup_logging
from .network import metrics_args, protect_metrics, tls_args
from .serverdata import open_data, parse_count, require_data_folder, require_free_port, workers_arg
from .vendor_admin import CREATE, open_service


@dataclass
class _Serving:
    """What ``vendor serve`` checked before opening anything, and how a worker builds its app."""

    args: argparse.Namespace
    data: Path
    proxies: list[Any]
    shop_config: Any
    lifetime: int
    token: str = ""

    def open(self) -> tuple[Any, Any]:
        """The service and, with ``--shop-config``, the store over it."""
        args = self.args
        service = open_service(args, certificate_lifetime=self.lifetime)
        if self.shop_config is None:
            return service, None
        from ..servers.shop.app import Shop

        config = self.shop_config
        return service, open_data(self.data, lambda: Shop.open(service, config, database_url=args.database_url))

    def make_app(self, index: int, opened: tuple[Any, Any] | None = None) -> Any:
        """Worker ``index``'s app over ``opened`` (the parent's service and store) or its own;
        only worker 0 runs the background duties."""
        from ..servers.activation.app import create_app

        service, shop = opened or self.open()
        app = create_app(
            service,
            self.token,
            trusted_proxies=self.proxies,
            webhook_timeout=self.args.webhook_timeout,
            duties=index == 0,
            **(shop.hooks() if shop else {}),
        )
        protect_metrics(app, self.args, self.data)
        return app


def _prepare(args: argparse.Namespace) -> _Serving:
    """The cheap setup checks first: their one line is then all the output."""
    from ..servers._proxies import parse_networks
    from ..servers._run import tls_options
    from ..servers.activation.service import DEFAULT_CERTIFICATE_LIFETIME, KEY_NAME

    proxies = parse_networks(args.trusted_proxies or "")  # a bad entry stops here, before anything is made
    shop_config = None
    if args.shop_config:  # checked before anything is opened: a mistake is one line, nothing touched
        from ..servers.shop.config import load_config

        shop_config = load_config(args.shop_config)
    tls_options(args.tls_cert, args.tls_key)  # a bad certificate stops us before anything opens
    data = Path(args.data)
    require_data_folder(data, KEY_NAME, kind="vendor", create=CREATE)
    require_free_port(args.host, args.port)
    setup_logging(args)
    return _Serving(args, data, list(proxies), shop_config, args.certificate_lifetime or DEFAULT_CERTIFICATE_LIFETIME)


def cmd_serve(args: argparse.Namespace) -> int:
    from starlette.applications import Starlette

    from ..servers._files import load_or_create_token
    from ..servers._run import serve_forever

    serving = _prepare(args)
    data = serving.data
    service, shop = serving.open()
    serving.token = open_data(data, lambda: load_or_create_token(data))
    scheme = "https" if args.tls_cert else "http"
    print(f"vendor activation server on {scheme}://{args.host}:{args.port}", flush=True)
    if shop is not None:
        print(f"  store and customer portal:      {scheme}://{args.host}:{args.port}/shop/", flush=True)
    print(f"  public key (pin it in brokers): {data / 'vendor.pub'}  ({service.public_key_text})", flush=True)
    print(f"  admin token:                    {data / 'admin.token'}", flush=True)
    if serving.proxies:
        print(f"  X-Forwarded-For trusted from:   {', '.join(map(str, serving.proxies))}", flush=True)
    if args.workers > 1:
        print(f"  worker processes:               {args.workers} (background duties in the first)", flush=True)
    # The token file is made here, once, before any worker reads it.
    print(f"  /metrics bearer token:          {protect_metrics(Starlette(), args, data)}", flush=True)
    tls = {"tls_cert": args.tls_cert, "tls_key": args.tls_key}
    if args.workers > 1:
        from ..servers._workers import serve_workers

        # Each worker opens its own: nothing opened here crosses the fork.
        if shop is not None:
            shop.close()
        service.close()
        serve_workers(serving.make_app, args.host, args.port, args.workers, **tls)
        return 0
    try:
        serve_forever(serving.make_app(0, (service, shop)), args.host, args.port, **tls)
    finally:
        if shop is not None:
            shop.close()
    return 0


def serve_arguments(p: argparse.ArgumentParser) -> None:
    add_log_options(p)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8700)
    p.add_argument(
        "--certificate-lifetime",
        type=parse_count,
        default=None,
        metavar="SECONDS",
        help="how long an online certificate stays valid without a check-in (default 7 days)",
    )
    tls_args(p)
    metrics_args(p)
    p.add_argument(
        "--trusted-proxies",
        metavar="NETS",
        help="comma-separated addresses or networks of your reverse proxies: only their X-Forwarded-For "
        "names the client a rate limit counts (default: none, the TCP peer counts)",
    )
    webhooks.timeout_arg(p)
    workers_arg(p)
    p.add_argument(
        "--shop-config",
        metavar="FILE",
        help="also serve the store and customer portal under /shop (YAML; see README, 'The store')",
    )


__all__ = ["cmd_serve", "serve_arguments"]
