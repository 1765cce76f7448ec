"""A server's data folder: its signing key, its admin token, and the one way files are written.

Every secret is written owner-only (0600) and atomically, so a crash leaves either the old file
or the new one, never half of one.
"""

from __future__ import annotations

import secrets
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from .._atomic import atomic_write
from ..core.errors import ErrorCode, LicensingError
from ..core.signing import public_key_to_text

TOKEN_FILE = "admin.token"
DATABASE_URL_FILE = "database.url"


def load_or_create_signing_key(data_dir: Path, name: str) -> Ed25519PrivateKey:
    """``<name>.key`` (PEM, mode 0600) and ``<name>.pub`` (base64 raw key, for pinning) in data_dir."""
    data_dir.mkdir(parents=True, exist_ok=True)
    key_path, pub_path = data_dir / f"{name}.key", data_dir / f"{name}.pub"
    if key_path.exists():
        try:
            key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        except (ValueError, TypeError):
            key = None
        if not isinstance(key, Ed25519PrivateKey):
            raise LicensingError(
                ErrorCode.STATE_CORRUPT,
                f"{key_path} is not an Ed25519 private key: restore it from a backup "
                "(a new key would leave every document signed so far untrusted)",
            )
    else:
        key = Ed25519PrivateKey.generate()
        atomic_write(
            key_path,
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            ),
        )
    pub_text = public_key_to_text(key) + "\n"
    if not pub_path.exists() or pub_path.read_text() != pub_text:
        atomic_write(pub_path, pub_text.encode(), mode=0o644)
    return key


def data_folder_problem(data_dir: Path, key_name: str) -> str | None:
    """Why ``data_dir`` is not a server data folder (None: it is one). Its signing key marks it:
    opening any other folder would make a new key, and with it a server nobody trusts."""
    if (data_dir / f"{key_name}.key").is_file():
        return None
    if not data_dir.exists():
        return "does not exist"
    if not data_dir.is_dir():
        return "is not a folder"
    return f"holds no {key_name}.key"


def load_or_create_token(data_dir: Path, name: str = TOKEN_FILE) -> str:
    """The admin bearer token of a data folder, created (owner-only) on first use."""
    path = Path(data_dir) / name
    if path.exists():
        return path.read_text().strip()
    token = secrets.token_urlsafe(32)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, (token + "\n").encode())
    return token


def database_url(data_dir: Path, db_file: str, given: str | None = None) -> str:
    """The database of a data folder: ``given``, else the one remembered in ``database.url`` (see
    :func:`remember_database_url`), else SQLite in ``db_file``."""
    path = Path(data_dir) / DATABASE_URL_FILE
    if given:
        return given
    if path.exists():
        return path.read_text().strip()
    return f"sqlite:///{(Path(data_dir) / db_file).resolve()}"


def remember_database_url(data_dir: Path, url: str) -> None:
    """Keep a URL that worked, so every later command on the folder uses the same database;
    owner-only, as it may hold a password."""
    path = Path(data_dir) / DATABASE_URL_FILE
    if url.startswith("sqlite") or (path.exists() and path.read_text().strip() == url):
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, (url + "\n").encode())


__all__ = [
    "DATABASE_URL_FILE",
    "TOKEN_FILE",
    "atomic_write",
    "data_folder_problem",
    "database_url",
    "load_or_create_signing_key",
    "load_or_create_token",
]
