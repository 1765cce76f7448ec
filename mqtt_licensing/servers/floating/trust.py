"""The vendor keys a floating server trusts: the one it pins and the rotations accepted since.

``vendor.pub`` in the data folder is the pinned key (``--vendor-key`` at provisioning). When the
vendor rotates, the next certificate it signs for this server (an online refresh, or an offline
code's answer) carries the rotation document, signed by the old key: it is verified against the
keys trusted already (:class:`~mqtt_licensing.core.keyring.KeyRing`) and appended, as signed, to
``vendor-key-documents.txt``. Trust is replayed from the pinned key at every read, so an edited
file adds nothing. A retirement arrives the same way and ends the old key here too; the leases
this server signs embed its certificate, and with it these documents, for its brokers.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ...core.errors import ErrorCode, LicensingError
from ...core.keyring import KeyRing
from ...core.signing import b64, public_key_from_text, public_key_to_text, unb64
from .._files import atomic_write

VENDOR_KEY_FILE = "vendor.pub"
KEY_DOCUMENTS_FILE = "vendor-key-documents.txt"


def _file_state(path: Path) -> tuple[int, int, int] | None:
    """Whether a file changed, without reading it: both files are replaced by an atomic rename
    (a new inode), so a stat per lease request stands in for two reads and a decode."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return st.st_ino, st.st_mtime_ns, st.st_size


class VendorTrust:
    def __init__(self, data_dir: Path | None, fixed: Ed25519PublicKey | None = None) -> None:
        self.data_dir = data_dir
        self._fixed = fixed
        self._pinned_cache: tuple[tuple[int, int, int] | None, Ed25519PublicKey | None] = (None, None)
        self._ring_cache: tuple[Any, KeyRing | None] = (None, None)
        self._memory: list[bytes] = []  # the documents, when there is no data folder (tests)
        self.generation = 0  # changes whenever the trusted keys may have: what was verified is checked again

    @property
    def key_path(self) -> Path | None:
        return self.data_dir / VENDOR_KEY_FILE if self.data_dir is not None else None

    def pinned(self) -> Ed25519PublicKey | None:
        """The pinned vendor key: given at construction, else DIR/vendor.pub (re-read when it changes)."""
        if self._fixed is not None:
            return self._fixed
        path = self.key_path
        if path is None:
            return None
        state = _file_state(path)  # checked every time, so a newly pinned key is seen at once
        if state is None:
            return None
        if self._pinned_cache[0] != state:
            try:
                key = public_key_from_text(path.read_text())
            except FileNotFoundError:
                return None
            except (LicensingError, ValueError) as exc:
                raise LicensingError(ErrorCode.STATE_CORRUPT, f"{path} is not a vendor public key: {exc}") from None
            self._pinned_cache = (state, key)
        return self._pinned_cache[1]

    def pin(self, key: Ed25519PublicKey) -> None:
        """Store the vendor key every certificate must verify against (DIR/vendor.pub, atomically)."""
        self._fixed = None if self.data_dir is not None else key
        path = self.key_path
        if path is None:
            return
        text = public_key_to_text(key) + "\n"
        if path.exists() and path.read_text() == text:
            return
        atomic_write(path, text.encode(), mode=0o644)

    def _documents_text(self) -> str:
        if self.data_dir is None:
            return "\n".join(b64(d) for d in self._memory)
        try:
            return (self.data_dir / KEY_DOCUMENTS_FILE).read_text()
        except FileNotFoundError:
            return ""

    def ring(self) -> KeyRing | None:
        """Every vendor key trusted now (None: nothing pinned), replayed from the pinned key."""
        pinned = self.pinned()
        if pinned is None:
            return None
        documents: Any = (
            tuple(self._memory) if self.data_dir is None else _file_state(self.data_dir / KEY_DOCUMENTS_FILE)
        )
        state = (public_key_to_text(pinned) if self._fixed is not None else self._pinned_cache[0], documents)
        if self._ring_cache[0] != state:
            ring = KeyRing(pinned)
            ring.restore([unb64(line) for line in self._documents_text().split() if line])
            self._ring_cache = (state, ring)
            self.generation += 1
        cached = self._ring_cache[1]
        assert cached is not None
        return cached

    def learn(self, blob: bytes) -> bool:
        """Accept the rotations a vendor certificate carries (each verified); persist them if new."""
        ring = self.ring()
        if ring is None or not ring.accept_carried(blob):
            return False
        self.generation += 1
        if self.data_dir is None:
            self._memory = list(ring.documents)
        else:
            lines = "".join(b64(d) + "\n" for d in ring.documents)
            atomic_write(self.data_dir / KEY_DOCUMENTS_FILE, lines.encode(), mode=0o644)
        return True


__all__ = ["KEY_DOCUMENTS_FILE", "VENDOR_KEY_FILE", "VendorTrust"]
