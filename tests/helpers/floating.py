"""A real floating license server on a background thread, for tests.

    vendor = Ed25519PrivateKey.generate()
    fls = start_floating(tmp_path / "fls", vendor_key=vendor, seats=3, ttl=5)
    ... FloatingClient(fls.url) ...
    fls.restart()   # same port, same data folder: leases must survive
    fls.stop()

``vendor_key`` (a private key) provisions the pool directly with a certificate
signed by that test vendor key (no vendor server needed); pass ``certificate``
to install a ready-made one, or neither to start unprovisioned.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from mqtt_licensing.core.documents import FloatingCertificate
from mqtt_licensing.core.signing import fingerprint, public_bytes
from mqtt_licensing.servers._files import load_or_create_signing_key, load_or_create_token
from mqtt_licensing.servers._run import ServerThread
from mqtt_licensing.servers.floating.app import create_app
from mqtt_licensing.servers.floating.service import KEY_NAME, FloatingService, system_clock

DEFAULT_FEATURES = ("mqtt_server", "mqtt_server_support")


def floating_server_key(data_dir: Path) -> Ed25519PrivateKey:
    """The floating server's identity key (created if missing), e.g. to sign a certificate before start."""
    return load_or_create_signing_key(Path(data_dir), KEY_NAME)


def make_pool_certificate(
    vendor_key: Ed25519PrivateKey,
    server_public_key: bytes | Ed25519PublicKey | Ed25519PrivateKey,
    *,
    seats: int = 10,
    features: Iterable[str] = DEFAULT_FEATURES,
    license_id: str = "lic_test",
    activation_id: str = "act_test",
    key_mask: str = "MQL1-AAAAA-*****-*****-*****-*****-AAAAA",
    issued_at: int | None = None,
    valid_until: int | None = None,
    expires_at: int | None = None,
    support_until: int | None = None,
    max_connections: int | None = None,
    request_nonce: str | None = None,
) -> bytes:
    """A FloatingCertificate for ``server_public_key`` signed by ``vendor_key``."""
    raw = server_public_key if isinstance(server_public_key, bytes) else public_bytes(server_public_key)
    return FloatingCertificate(
        license_id=license_id,
        key_mask=key_mask,
        activation_id=activation_id,
        server_fingerprint=fingerprint(raw),
        server_public_key=raw,
        seats=seats,
        features=tuple(sorted(set(features))),
        issued_at=int(time.time()) if issued_at is None else issued_at,
        valid_until=valid_until,
        expires_at=expires_at,
        support_until=support_until,
        max_connections=max_connections,
        request_nonce=request_nonce,
    ).sign(vendor_key)


@dataclass
class FloatingHandle:
    data_dir: Path
    ttl: int
    port: int
    vendor_public_key: Ed25519PublicKey | None
    clock: Callable[[], int]
    database_url: str | None = None
    service: FloatingService = field(init=False)
    token: str = field(init=False)
    _thread: ServerThread | None = field(default=None, init=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def fingerprint(self) -> str:
        return self.service.fingerprint

    @property
    def public_key(self) -> bytes:
        return self.service.public_key

    def start(self) -> FloatingHandle:
        """Open the data folder afresh (as a new process would) and serve on ``port``."""
        self.service = FloatingService.open(
            self.data_dir,
            ttl=self.ttl,
            vendor_public_key=self.vendor_public_key,
            clock=self.clock,
            database_url=self.database_url,
        )
        self.token = load_or_create_token(self.data_dir)
        self._thread = ServerThread(create_app(self.service, self.token), port=self.port)
        self._thread.start()
        self.port = self._thread.port
        return self

    def provision(self, certificate: bytes) -> FloatingCertificate:
        return self.service.install_certificate(certificate)

    def stop(self) -> None:
        if self._thread is not None:
            self._thread.stop()
            self._thread = None
            self.service.close()

    def restart(self) -> FloatingHandle:
        """Stop, then start again on the SAME port with the same data folder."""
        self.stop()
        deadline = time.monotonic() + 5
        while True:
            try:
                return self.start()
            except (RuntimeError, OSError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def __enter__(self) -> FloatingHandle:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def start_floating(
    data_dir: Path,
    *,
    ttl: int = 600,
    port: int = 0,
    certificate: bytes | None = None,
    vendor_public_key: Ed25519PublicKey | None = None,
    vendor_key: Ed25519PrivateKey | None = None,
    seats: int = 10,
    features: Iterable[str] = DEFAULT_FEATURES,
    expires_at: int | None = None,
    valid_until: int | None = None,
    clock: Callable[[], int] = system_clock,
    database_url: str | None = None,
) -> FloatingHandle:
    """Start a floating server; provisioned when ``certificate`` or ``vendor_key`` is given.
    ``database_url``: None for SQLite in the data folder."""
    data_dir = Path(data_dir)
    if vendor_public_key is None and vendor_key is not None:
        vendor_public_key = vendor_key.public_key()
    handle = FloatingHandle(data_dir, ttl, port, vendor_public_key, clock, database_url)
    handle.start()
    try:
        if certificate is None and vendor_key is not None:
            certificate = make_pool_certificate(
                vendor_key,
                handle.public_key,
                seats=seats,
                features=features,
                expires_at=expires_at,
                valid_until=valid_until,
            )
        if certificate is not None:
            handle.provision(certificate)
    except BaseException:
        handle.stop()
        raise
    return handle


__all__ = ["DEFAULT_FEATURES", "FloatingHandle", "floating_server_key", "make_pool_certificate", "start_floating"]
