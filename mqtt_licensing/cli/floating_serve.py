"""mqtt-licensing floating serve: the floating license server, in one process or in ``--workers N``."""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from typing import Any

from .floating_provision import open_service, vendor_key
from .logs import setup_logging
from .network import outbound_options, protect_metrics
from .serverdata import open_data, require_free_port


@dataclass
class _Serving:
    """What ``floating serve`` checked and opened before serving, and how a worker builds its app."""

    args: argparse.Namespace
    proxies: list[Any]
    vendor_http: Any
    token: str = ""

    def open(self) -> Any:
        args = self.args
        return open_service(args, ttl=args.ttl, new_identities_per_minute=args.new_identities_per_minute)

    def make_app(self, index: int, service: Any = None) -> Any:
        """Worker ``index``'s app over ``service`` (the parent's) or its own; only worker 0 runs the
        background duties (certificate refresh, usage forwarding, the webhook outbox): one process
        talks to the vendor, as one did before."""
        from ..servers.floating.app import create_app
        from ..servers.floating.usage import vendor_duties

        args = self.args
        service = service or self.open()
        duties = index == 0
        background = (
            vendor_duties(service, args.refresh_interval, args.usage_forward_interval, self.vendor_http)
            if duties
            else []
        )
        app = create_app(
            service,
            self.token,
            trusted_proxies=self.proxies,
            background=background,
            webhook_timeout=args.webhook_timeout,
            duties=duties,
        )
        protect_metrics(app, args, args.data)
        return app


def serve(args: argparse.Namespace) -> int:
    from starlette.applications import Starlette

    from ..servers._files import load_or_create_token
    from ..servers._proxies import parse_networks
    from ..servers._run import serve_forever, tls_options

    proxies = parse_networks(args.trusted_proxies or "")  # a bad entry stops here, before anything is made
    vendor = vendor_key(args.vendor_key) if args.vendor_key else None
    vendor_http = outbound_options(args)
    tls = tls_options(args.tls_cert, args.tls_key)  # a bad certificate stops us before anything opens
    # the cheap setup check first: its one line is then all the output. A new folder is allowed
    # here: an unprovisioned server may start and be provisioned later (it says so)
    require_free_port(args.host, args.port)
    setup_logging(args)
    serving = _Serving(args, list(proxies), vendor_http)
    # The vendor key is pinned here, once: the workers find it in the folder.
    service = open_service(
        args, ttl=args.ttl, vendor_public_key=vendor, new_identities_per_minute=args.new_identities_per_minute
    )
    serving.token = open_data(args.data, lambda: load_or_create_token(args.data))

    status = service.status()
    pool = status["pool"]
    scheme = "https" if tls else "http"
    print(f"floating server {service.fingerprint} on {scheme}://{args.host}:{args.port}", file=sys.stderr)
    print(f"  data {args.data}  ttl {service.ttl} s  admin token in {args.data / 'admin.token'}", file=sys.stderr)
    if pool is None:
        print(
            f"  not provisioned{': ' + status['problem'] if status['problem'] else ''} "
            "- run 'mqtt-licensing floating activate' or 'floating request'/'floating install'",
            file=sys.stderr,
        )
    else:
        print(f"  pool: {pool['seats']} seat(s), features {', '.join(pool['features'])}", file=sys.stderr)
    if args.workers > 1:
        print(f"  worker processes: {args.workers} (background duties in the first)", file=sys.stderr)
    # The token file is made here, once, before any worker reads it.
    print(f"  /metrics bearer token in {protect_metrics(Starlette(), args, args.data)}", file=sys.stderr)
    options = {"tls_cert": args.tls_cert, "tls_key": args.tls_key}
    if args.workers > 1:
        from ..servers._workers import serve_workers

        service.close()  # each worker opens its own: nothing opened here crosses the fork
        serve_workers(serving.make_app, args.host, args.port, args.workers, **options)
        return 0
    try:
        serve_forever(serving.make_app(0, service), args.host, args.port, **options)
    finally:
        service.close()
    return 0


__all__ = ["serve"]
