"""What both servers share: their data folder, signing key, admin token, database
engine, JSON error handling and a way to run them (in the foreground or, for tests
and the demo, on a background thread).

Storage seam: servers talk to the database only through SQLAlchemy Core in their
own ``store`` module, and every change of state that counts runs inside one
``engine.begin()`` transaction. On SQLite that transaction starts with
``BEGIN IMMEDIATE`` so two writers can never both read "one activation left";
on PostgreSQL the stores lock the license row with ``SELECT ... FOR UPDATE``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import socket
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import sqlalchemy as sa
import uvicorn
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse

from ..core.errors import ErrorCode, LicensingError
from ..core.signing import b64, public_key_to_text

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 256 * 1024

# HTTP status for each error code a server may answer with; anything else is 400.
HTTP_STATUS: dict[ErrorCode, int] = {
    ErrorCode.UNAUTHORIZED: 401,
    ErrorCode.NOT_AUTHORIZED: 403,
    ErrorCode.SUSPENDED: 403,
    ErrorCode.REVOKED: 403,
    ErrorCode.EXPIRED: 403,
    ErrorCode.WRONG_MODEL: 409,
    ErrorCode.NOT_FOUND: 404,
    ErrorCode.KEY_NOT_FOUND: 404,
    ErrorCode.ACTIVATION_NOT_FOUND: 404,
    ErrorCode.LEASE_NOT_FOUND: 404,
    ErrorCode.NO_ACTIVATIONS_LEFT: 409,
    ErrorCode.ALREADY_FREE: 409,
    ErrorCode.NO_SEATS: 410,  # as Keygen Relay: the pool has nothing to give
    ErrorCode.NOT_PROVISIONED: 503,
    ErrorCode.RATE_LIMITED: 429,
    ErrorCode.PAYLOAD_TOO_LARGE: 413,
    ErrorCode.INTERNAL_ERROR: 500,
}


# -- the data folder -----------------------------------------------------------


def write_private(path: Path, data: bytes) -> None:
    """Create a secret file readable by its owner only, atomically."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def load_or_create_signing_key(data_dir: Path, name: str) -> Ed25519PrivateKey:
    """``<name>.key`` (PEM, mode 0600) and ``<name>.pub`` (base64 raw key, for pinning) in data_dir."""
    data_dir.mkdir(parents=True, exist_ok=True)
    key_path, pub_path = data_dir / f"{name}.key", data_dir / f"{name}.pub"
    if key_path.exists():
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise LicensingError(ErrorCode.STATE_CORRUPT, f"{key_path} is not an Ed25519 private key")
    else:
        key = Ed25519PrivateKey.generate()
        write_private(
            key_path,
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            ),
        )
    pub_text = public_key_to_text(key) + "\n"
    if not pub_path.exists() or pub_path.read_text() != pub_text:
        pub_path.write_text(pub_text)
    return key


def load_or_create_token(data_dir: Path, name: str = "admin.token") -> str:
    path = data_dir / name
    if path.exists():
        return path.read_text().strip()
    token = secrets.token_urlsafe(32)
    data_dir.mkdir(parents=True, exist_ok=True)
    write_private(path, (token + "\n").encode())
    return token


def create_db_engine(url: str) -> sa.Engine:
    """An engine whose transactions are safe for exact counting (see module docstring)."""
    if url.startswith("sqlite"):
        # SQLite takes one writer at a time anyway; one pooled connection makes this process's
        # writers queue in order on the pool instead of sleeping in SQLite's busy-retry backoff
        # (which put the p99 of concurrent check-ins in seconds). Other processes on the same
        # file (the CLI next to a running server) still meet SQLite's own lock.
        engine = sa.create_engine(
            url,
            connect_args={"timeout": 30, "check_same_thread": False},
            poolclass=sa.pool.QueuePool,
            pool_size=1,
            max_overflow=0,
            pool_timeout=60,
        )

        @sa.event.listens_for(engine, "connect")
        def _on_connect(dbapi_connection: Any, _record: Any) -> None:
            dbapi_connection.isolation_level = None  # let us issue BEGIN ourselves
            cur = dbapi_connection.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=FULL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        @sa.event.listens_for(engine, "begin")
        def _on_begin(conn: sa.Connection) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    return sa.create_engine(url, pool_pre_ping=True)


def sqlite_url(data_dir: Path, name: str) -> str:
    return f"sqlite:///{(data_dir / name).resolve()}"


# -- HTTP plumbing -------------------------------------------------------------


def error_response(exc: LicensingError) -> JSONResponse:
    body: dict[str, Any] = {"error": exc.to_dict()}
    if exc.evidence is not None:
        body["evidence"] = b64(exc.evidence)
    return JSONResponse(body, status_code=HTTP_STATUS.get(exc.code, 400))


async def licensing_error_handler(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, LicensingError)
    return error_response(exc)


async def unexpected_error_handler(_request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled server error")
    return error_response(LicensingError(ErrorCode.INTERNAL_ERROR, "internal server error"))


EXCEPTION_HANDLERS: dict[Any, Callable[[Request, Exception], Awaitable[JSONResponse]]] = {
    LicensingError: licensing_error_handler,
    Exception: unexpected_error_handler,
}


async def read_json(request: Request) -> dict[str, Any]:
    """The request body as a JSON object, or a typed error (never a 500)."""
    body = await request.body()
    if len(body) > MAX_BODY_BYTES:
        raise LicensingError(ErrorCode.PAYLOAD_TOO_LARGE, f"request body over {MAX_BODY_BYTES} bytes")
    try:
        data = json.loads(body or b"{}")
    except ValueError:
        raise LicensingError(ErrorCode.BAD_REQUEST, "the request body is not JSON") from None
    if not isinstance(data, dict):
        raise LicensingError(ErrorCode.BAD_REQUEST, "the request body must be a JSON object")
    return data


def require_bearer(request: Request, token: str) -> None:
    """Constant-time check of ``Authorization: Bearer <token>``; called on every admin route."""
    header = request.headers.get("authorization", "")
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer" or not secrets.compare_digest(given.strip().encode(), token.encode()):
        raise LicensingError(ErrorCode.UNAUTHORIZED, "a valid admin bearer token is required")


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


# -- running -------------------------------------------------------------------


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def serve_forever(app: Starlette, host: str, port: int) -> None:
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)


class ServerThread:
    """Run an ASGI app with uvicorn on a background thread (tests, the demo, benchmarks).

    A real server on a real socket; ``with ServerThread(app) as url: ...``.
    """

    def __init__(self, app: Starlette, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.port = port or free_port(host)
        config = uvicorn.Config(app, host=host, port=self.port, log_level="warning", access_log=False, lifespan="on")
        self.server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._run, name=f"uvicorn:{self.port}", daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def _run(self) -> None:
        asyncio.run(self.server.serve())

    def start(self) -> str:
        self._thread.start()
        while not self.server.started:
            if not self._thread.is_alive():
                raise RuntimeError(f"server on port {self.port} failed to start")
            threading.Event().wait(0.01)
        return self.url

    def stop(self) -> None:
        self.server.should_exit = True
        self._thread.join(timeout=10)

    def __enter__(self) -> str:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
