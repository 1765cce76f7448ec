"""License keys kept so a signed-in customer can see theirs again, sealed at rest.

Each key is sealed with AES-256-GCM under a secret that lives in its own file in the vendor's data
folder (``shop-keys.secret``, 0600, made on first use like ``admin.token``), never in the
database: a stolen database (a dump, a backup, a replica's disk) without that file reveals no key.
Each record has its own random 96-bit nonce, and the license id is the associated data, so a
sealed key copied onto another license's row does not open. A key is never logged.

Replicas share the data folder's contents (one identity): the file is created with a hard link
from a complete temp file, which fails if another process made it first, so two starting at once
agree on one secret instead of each sealing with its own.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ...core.errors import ErrorCode, LicensingError
from .._files import atomic_write
from .account_store import AccountTx
from .store import ShopStore, ShopTx

SECRET_FILE = "shop-keys.secret"
KEPT = "kept"  # an order's pending_key when its key is kept sealed here (never a key: keys start MQL)
FORMAT = 1  # AES-256-GCM, 12-byte nonce, associated data = _AAD + license id
_AAD = b"mqtt-licensing shop key v1\x00"


def _corrupt(path: Path) -> LicensingError:
    return LicensingError(
        ErrorCode.STATE_CORRUPT,
        f"{path} is not a 32-byte key file: restore it from a backup (the keys sealed with it stay unreadable)",
    )


def load_or_create_secret(data_dir: Path) -> bytes:
    """The folder's 32-byte sealing secret, created owner-only on first use (race-free, see above)."""
    path = Path(data_dir) / SECRET_FILE
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{SECRET_FILE}.{os.getpid()}.{secrets.token_hex(4)}")
        atomic_write(tmp, secrets.token_bytes(32).hex().encode() + b"\n")
        try:
            os.link(tmp, path)  # fails with FileExistsError when another process made it first
        except FileExistsError:
            pass
        finally:
            tmp.unlink(missing_ok=True)
    try:
        secret = bytes.fromhex(path.read_text().strip())
    except ValueError:
        raise _corrupt(path) from None
    if len(secret) != 32:
        raise _corrupt(path)
    return secret


class KeyVault:
    """Seal and open license keys with one secret; None as the secret keeps nothing (no data folder)."""

    def __init__(self, secret: bytes | None) -> None:
        self._aead = AESGCM(secret) if secret is not None else None

    def __repr__(self) -> str:  # the secret stays out of every repr and log
        return f"KeyVault(enabled={self._aead is not None})"

    @property
    def enabled(self) -> bool:
        return self._aead is not None

    def seal(self, license_id: str, key: str) -> tuple[int, bytes, bytes] | None:
        """(format, nonce, sealed) to store, or None when keys are not kept."""
        if self._aead is None:
            return None
        nonce = secrets.token_bytes(12)
        return FORMAT, nonce, self._aead.encrypt(nonce, key.encode(), _AAD + license_id.encode())

    def keep(self, tx: ShopTx, license_id: str, key: str, now: int) -> bool:
        """Store a newly issued key sealed, in the transaction that records the license on its order;
        False when keys are not kept."""
        sealed = self.seal(license_id, key)
        if sealed is not None:
            AccountTx(tx.conn).keep_key(license_id, sealed, now)
        return sealed is not None

    def kept(self, store: ShopStore, license_id: str) -> str:
        """The kept key of a license (the key e-mail reads it from here)."""
        with store.transaction() as tx:
            sealed = AccountTx(tx.conn).kept_key(license_id)
        if sealed is None:
            raise LicensingError(ErrorCode.NOT_FOUND, f"no key of license {license_id} is kept")
        return self.open(license_id, *sealed)

    def open(self, license_id: str, fmt: int, nonce: bytes, sealed: bytes) -> str:
        if self._aead is None or fmt != FORMAT:
            raise LicensingError(ErrorCode.NOT_FOUND, "this key cannot be read here: ask the vendor to reissue it")
        try:
            return self._aead.decrypt(nonce, sealed, _AAD + license_id.encode()).decode()
        except InvalidTag:
            raise LicensingError(
                ErrorCode.STATE_CORRUPT,
                "the stored key does not open with this server's secret: ask the vendor to reissue it",
            ) from None


__all__ = ["FORMAT", "KEPT", "SECRET_FILE", "KeyVault", "load_or_create_secret"]
