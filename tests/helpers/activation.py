"""A real activation server for tests: uvicorn on 127.0.0.1 on a background thread.

    from tests.helpers.activation import start_vendor

    with start_vendor(tmp_path / "vendor") as vendor:
        key = vendor.issue(features=["mqtt_server"], max_activations=2)
        ... agent config: vendor.url, vendor.public_key_text ...
        vendor.stop(); ...; vendor.restart()      # "vendor down, then back" on the SAME port

Attributes: ``url``, ``token`` (admin bearer token), ``data_dir``, ``public_key``
(Ed25519PublicKey), ``public_key_text`` (what brokers pin), ``service`` (the
:class:`ActivationService`, for quick admin actions without HTTP), ``port``.
``clock`` (optional): a callable returning int unix seconds, shared by the server.
``serve=False`` opens the service without a socket: reach it in-process with :meth:`VendorHandle.client`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from mqtt_licensing.servers._files import load_or_create_token
from mqtt_licensing.servers._run import ServerThread
from mqtt_licensing.servers.activation import ActivationService, create_app
from mqtt_licensing.servers.activation.service import DEFAULT_CERTIFICATE_LIFETIME, system_clock
from tests.helpers.asgi import asgi_client


class VendorHandle:
    def __init__(
        self,
        data_dir: Path,
        *,
        certificate_lifetime: int = DEFAULT_CERTIFICATE_LIFETIME,
        port: int = 0,
        clock: Callable[[], int] | None = None,
        serve: bool = True,
        database_url: str | None = None,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.database_url = database_url
        self.serve = serve
        self.certificate_lifetime = certificate_lifetime
        self.clock = clock or system_clock
        self.port = port  # 0: picked and held at the first start, kept for restarts
        self.token = load_or_create_token(self.data_dir)
        self._service: ActivationService | None = None
        self._thread: ServerThread | None = None

    # -- lifecycle -------------------------------------------------------------
    def start(self) -> VendorHandle:
        """Start (or start again after :meth:`stop`) on the same port, reading state from disk."""
        if self._thread is not None:
            raise RuntimeError("the vendor server is already running")
        if self._service is not None:
            self._service.close()
        self._service = ActivationService.open(
            self.data_dir,
            certificate_lifetime=self.certificate_lifetime,
            clock=self.clock,
            database_url=self.database_url,
        )
        if self.serve:
            thread = ServerThread(create_app(self.service, self.token), port=self.port)
            thread.start()
            self._thread = thread
            self.port = thread.port
        return self

    def stop(self) -> None:
        """Stop serving (connections are refused); the service object stays usable for admin actions."""
        if self._thread is not None:
            self._thread.stop()
            self._thread = None

    def restart(self) -> None:
        self.stop()
        self.start()

    @property
    def running(self) -> bool:
        return self._thread is not None

    def close(self) -> None:
        self.stop()
        if self._service is not None:
            self._service.close()

    def __enter__(self) -> VendorHandle:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- what tests need ---------------------------------------------------------
    @property
    def service(self) -> ActivationService:
        """The service behind the server (it stays usable after :meth:`stop`, for admin actions)."""
        assert self._service is not None, "the vendor server was never started"
        return self._service

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def public_key(self) -> Ed25519PublicKey:
        return self.service.public_key

    @property
    def public_key_text(self) -> str:
        return self.service.public_key_text

    def client(self, *, admin: bool = False) -> httpx.AsyncClient:
        """An HTTP client of the app in-process (no socket), with the admin token if ``admin``."""
        return asgi_client(create_app(self.service, self.token), token=self.token if admin else None)

    def issue(self, features: list[str] | tuple[str, ...] = ("mqtt_server",), **terms: Any) -> str:
        """Issue a license and return its key. Terms: model, max_activations, seats,
        expires_at, support_until, max_connections (as ActivationService.issue_license)."""
        _license, key = self.service.issue_license(features=list(features), **terms)
        return key

    def issue_license(
        self, features: list[str] | tuple[str, ...] = ("mqtt_server",), **terms: Any
    ) -> tuple[dict[str, Any], str]:
        """Like :meth:`issue` but returns (license record, key)."""
        return self.service.issue_license(features=list(features), **terms)

    def license_id(self, key: str) -> str:
        """The id of the license a key belongs to."""
        from mqtt_licensing.core.keys import key_digest

        with self.service.store.transaction() as tx:
            lic = tx.get_license_by_digest(key_digest(key))
        assert lic is not None, "unknown key"
        return lic.id


def start_vendor(
    data_dir: Path | str,
    *,
    certificate_lifetime: int = DEFAULT_CERTIFICATE_LIFETIME,
    port: int = 0,
    clock: Callable[[], int] | None = None,
    serve: bool = True,
    database_url: str | None = None,
) -> VendorHandle:
    """Start a real vendor server; use as a context manager (or call ``close()``). ``database_url``:
    None for SQLite in the data folder."""
    handle = VendorHandle(
        Path(data_dir),
        certificate_lifetime=certificate_lifetime,
        port=port,
        clock=clock,
        serve=serve,
        database_url=database_url,
    )
    return handle.start()


__all__ = ["VendorHandle", "start_vendor"]
