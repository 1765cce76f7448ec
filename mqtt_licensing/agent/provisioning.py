"""A license from configuration: the key a fleet's image or a Kubernetes Secret gives the broker.

``license_key`` / ``license_key_file`` in the agent's config, or ``MQTT_LICENSING_LICENSE_KEY`` /
``MQTT_LICENSING_LICENSE_KEY_FILE`` in the environment (which win: a container's environment is
set per deployment, its config file per image). The key is checked (its checksum) when the broker
starts, so a typo is one line then, not a refusal from the vendor later. It is never logged:
what is shown is where it came from and its mask.

``usage_license_file`` (or ``MQTT_LICENSING_USAGE_LICENSE_FILE``) is the offline counterpart: a
usage license the vendor made from this instance's request code, installed at start when no
license is held (or a renewal request is pending). It is read and verified then, not when the
config is checked: a bad file is one line and the trial serves, as an operator's bad paste would.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ..core.errors import ErrorCode, LicensingError
from ..core.keys import mask_key, normalize_key

ENV_KEY = "MQTT_LICENSING_LICENSE_KEY"
ENV_KEY_FILE = "MQTT_LICENSING_LICENSE_KEY_FILE"
ENV_USAGE_LICENSE_FILE = "MQTT_LICENSING_USAGE_LICENSE_FILE"
MAX_KEY_FILE = 4096
MAX_USAGE_LICENSE_FILE = 256 * 1024  # a usage license carries its features' definitions: a few kB


@dataclass(frozen=True)
class ConfiguredKey:
    key: str
    origin: str  # "env" | "config"

    @property
    def mask(self) -> str:
        return mask_key(self.key)

    def __repr__(self) -> str:  # never the key itself, whatever prints this
        return f"ConfiguredKey(origin={self.origin!r}, mask={self.mask!r})"


def _read(path: str, where: str) -> str:
    file = Path(path).expanduser()
    try:
        text = file.read_text()[:MAX_KEY_FILE]
    except OSError as exc:
        raise LicensingError(ErrorCode.INVALID_FIELD, f"{where}: cannot read {file}: {exc.strerror}") from None
    return text


def configured_key(
    license_key: str | None, license_key_file: str | None, environ: Mapping[str, str] | None = None
) -> ConfiguredKey | None:
    """The key the broker should hold with no operator action, checked; None when none is set."""
    env = os.environ if environ is None else environ
    candidates = (
        (env.get(ENV_KEY), "env", ENV_KEY),
        (_read(env[ENV_KEY_FILE], ENV_KEY_FILE) if env.get(ENV_KEY_FILE) else None, "env", ENV_KEY_FILE),
        (license_key, "config", "license_key"),
        (_read(license_key_file, "license_key_file") if license_key_file else None, "config", "license_key_file"),
    )
    for text, origin, where in candidates:
        if text and text.strip():
            try:
                return ConfiguredKey(normalize_key(text), origin)
            except LicensingError as exc:
                raise LicensingError(exc.code, f"{where}: {exc.message}") from None
    return None


@dataclass(frozen=True)
class UsageLicenseFile:
    path: str
    where: str  # the config field or environment variable that named it

    def read(self) -> str:
        """The armoured usage license; INVALID_FIELD in one line when the file cannot be read."""
        return _read(self.path, self.where)[:MAX_USAGE_LICENSE_FILE] if self.path else ""


def usage_license_file(configured: str | None, environ: Mapping[str, str] | None = None) -> UsageLicenseFile | None:
    """Where the offline usage license to install at start is (the environment wins), if anywhere."""
    env = os.environ if environ is None else environ
    if env.get(ENV_USAGE_LICENSE_FILE):
        return UsageLicenseFile(env[ENV_USAGE_LICENSE_FILE], ENV_USAGE_LICENSE_FILE)
    if configured:
        return UsageLicenseFile(configured, "usage_license_file")
    return None


__all__ = [
    "ENV_KEY",
    "ENV_KEY_FILE",
    "ENV_USAGE_LICENSE_FILE",
    "ConfiguredKey",
    "UsageLicenseFile",
    "configured_key",
    "usage_license_file",
]
