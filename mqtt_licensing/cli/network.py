"""Command-line options both servers share for the network: serving HTTPS, and reaching another
server over HTTPS (trusted CA, proxy)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # httpx is imported only by the verbs that go on the network
    from ..clients.http import HttpOptions


def tls_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tls-cert", metavar="PEM", help="serve HTTPS with this certificate (chain) file")
    p.add_argument("--tls-key", metavar="PEM", help="the private key of --tls-cert")


def metrics_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--metrics-token-file",
        metavar="FILE",
        help="GET /metrics asks for this bearer token (default: DATA/metrics.token, made on first start)",
    )


def protect_metrics(app: Any, args: argparse.Namespace, data: Path) -> Path:
    """Guard ``app``'s /metrics with the token file's text; returns the file (for the start banner)."""
    from ..core.errors import ErrorCode, SetupError
    from ..servers._files import load_or_create_token
    from ..servers._observe import METRICS_TOKEN_FILE
    from ..servers._observe import protect_metrics as protect

    path = Path(args.metrics_token_file) if args.metrics_token_file else Path(data) / METRICS_TOKEN_FILE
    try:
        token = load_or_create_token(path.parent, path.name)
    except OSError as exc:
        raise SetupError(ErrorCode.INVALID_FIELD, f"metrics token file {path}: {exc.strerror or exc}") from None
    if len(token) < 16:
        raise SetupError(ErrorCode.INVALID_FIELD, f"metrics token file {path}: at least 16 characters, please")
    protect(app, token)
    return path


def outbound_args(p: argparse.ArgumentParser, whom: str = "the vendor") -> None:
    p.add_argument("--ca-file", metavar="PEM", help=f"trust only these CA certificates for {whom}'s HTTPS")
    p.add_argument("--http-proxy", metavar="URL", help=f"reach {whom} through this HTTP(S) proxy")
    p.add_argument(
        "--http-proxy-from-env", action="store_true", help="honour HTTPS_PROXY/HTTP_PROXY/NO_PROXY (off by default)"
    )


def outbound_options(args: argparse.Namespace, timeout: float = 30.0) -> HttpOptions:
    from ..clients.http import HttpOptions

    options = HttpOptions(
        timeout=timeout, ca_file=args.ca_file, proxy=args.http_proxy, proxy_from_env=args.http_proxy_from_env
    )
    if options.ca_file:
        options.ssl_context()  # an unreadable CA file: one line now, not at the first use
    return options


__all__ = ["metrics_args", "outbound_args", "outbound_options", "protect_metrics", "tls_args"]
