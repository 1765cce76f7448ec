"""Compile the Mosquitto plugin (the C sources in ``plugin/``) with the system compiler.

Needs Mosquitto's plugin headers (Debian: ``mosquitto-dev``, ``libmosquitto-dev``), OpenSSL's
(``libssl-dev``) and a C compiler. The result is cached by the sources' hash, so a second build
of the same sources is free.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from importlib import resources
from pathlib import Path

from ...core.errors import ErrorCode, LicensingError

SOURCES = (
    "plugin.c",
    "connections.c",
    "topics.c",
    "commands.c",
    "usage.c",
    "records.c",
    "admission.c",
    "rights.c",
    "link.c",
    "frames.c",
    "wake.c",
    "snapshot.c",
    "passwords.c",
)
HEADERS = ("licensing.h",)
LIBRARY = "mqtt_licensing_mosquitto.so"


class BuildError(LicensingError):
    def __init__(self, message: str) -> None:
        super().__init__(ErrorCode.INVALID_FIELD, message)


def source_dir() -> Path:
    return Path(str(resources.files(__package__) / "plugin"))


def default_output() -> Path:
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "mqtt-licensing" / LIBRARY


def sources_digest() -> str:
    digest = hashlib.sha256()
    for name in SOURCES + HEADERS:
        digest.update((source_dir() / name).read_bytes())
    return digest.hexdigest()[:16]


def build(output: Path | None = None, *, compiler: str | None = None) -> Path:
    """Build the plugin into ``output`` (default: the user's cache); return its path."""
    output = Path(output) if output is not None else default_output()
    stamp = output.with_name(output.name + ".sources")
    digest = sources_digest()
    if output.is_file() and stamp.is_file() and stamp.read_text().strip() == digest:
        return output
    named = compiler or os.environ.get("CC")
    cc = shutil.which(named) if named else shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        where = f"{named!r} (CC) is not" if named else "no C compiler is"
        raise BuildError(f"{where} installed: install gcc (Debian: apt-get install gcc) or set CC")
    if not Path("/usr/include/mosquitto_broker.h").is_file() and "CFLAGS" not in os.environ:
        raise BuildError("mosquitto_broker.h not found: install mosquitto-dev and libmosquitto-dev")
    output.parent.mkdir(parents=True, exist_ok=True)
    src = source_dir()
    with tempfile.NamedTemporaryFile(dir=output.parent, prefix=".build-", suffix=".so", delete=False) as tmp:
        partial = Path(tmp.name)
    command = [
        cc,
        "-shared",
        "-fPIC",
        "-O2",
        "-Wall",
        *os.environ.get("CFLAGS", "").split(),
        "-o",
        str(partial),
        *(str(src / name) for name in SOURCES),
        "-lcrypto",
        "-lpthread",
    ]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        partial.unlink(missing_ok=True)
        first = next((line for line in result.stderr.splitlines() if "error" in line), result.stderr.strip())
        hint = " (install libssl-dev)" if "openssl" in result.stderr else ""
        raise BuildError(f"the plugin did not compile: {first}{hint}")
    partial.chmod(0o755)  # the temporary file was 0600; Mosquitto may run as another user
    os.replace(partial, output)  # atomic: a running broker never loads a half-written file
    stamp.write_text(digest + "\n")
    return output
