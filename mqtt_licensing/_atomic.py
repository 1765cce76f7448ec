"""The one atomic file write, shared by the agent's state folder and the servers' data folders.

Outside ``core`` (which does no I/O) and below both ``agent`` and ``servers``, so neither depends
on the other for it.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path


def atomic_write(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Replace ``path`` with ``data``: the file and its folder are fsynced, the temp file removed on error.

    A kill -9 at any point leaves the old file or the new one, never a torn one. The temp name is
    unique per writer, so two threads saving at once cannot write into one temp file.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
