"""``mqtt-licensing mosquitto agent -c agent.yaml``: the licensing agent beside a Mosquitto broker.

The YAML has two sections::

    mosquitto:
      socket: /run/mosquitto/mqtt-licensing.sock   # plugin_opt_socket in mosquitto.conf
      ws_port: 8083                                # Mosquitto's websockets listener (License page)
      snapshot_hold: 86400                         # how long the plugin may enforce a snapshot alone
    agent:                                         # the same section as an amqtt broker config's plugin
      state_dir: ...
"""

from __future__ import annotations

import asyncio
import contextlib
import difflib
import signal
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dacite
import yaml

from ...agent import LicensingAgent
from ...agent.config import AgentConfig
from ...agent.metrics import metrics_app
from ...core.errors import ErrorCode, LicensingError
from ...web import HttpListener, PageConfig, start_http
from .link import PluginLink

MOSQUITTO_KEYS = ("socket", "ws_port", "ws_tls", "snapshot_hold")


class ConfigError(LicensingError):
    def __init__(self, message: str) -> None:
        super().__init__(ErrorCode.INVALID_FIELD, message)


@dataclass
class MosquittoSettings:
    socket: str
    ws_port: int | None = None
    ws_tls: bool = False
    snapshot_hold: int = 86400


def load_config(path: str | Path) -> tuple[MosquittoSettings, AgentConfig]:
    """Read agent.yaml; relative paths are taken from its folder. Mistakes: one-line ConfigError."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read it ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML ({exc.__class__.__name__})") from None
    if (
        not isinstance(data, dict)
        or not isinstance(data.get("mosquitto"), dict)
        or not isinstance(data.get("agent"), dict)
    ):
        raise ConfigError(f"{path}: needs a mosquitto: and an agent: section (see broker_config/mosquitto-agent.yaml)")
    _unknown(path, "top-level", data, ("mosquitto", "agent"))
    _unknown(path, "mosquitto", data["mosquitto"], MOSQUITTO_KEYS)
    _unknown(path, "agent", data["agent"], tuple(AgentConfig.__dataclass_fields__))
    base = path.parent
    section = dict(data["agent"])
    for key in ("state_dir", "vendor_public_key", "password_file", "trial_marker"):
        value = section.get(key)
        if isinstance(value, str) and value and "\n" not in value and not Path(value).is_absolute():
            candidate = base / value
            if key == "state_dir" or candidate.exists() or "/" in value or value.endswith(".pub"):
                section[key] = str(candidate.resolve())
    mosquitto = dict(data["mosquitto"])
    if isinstance(mosquitto.get("socket"), str) and not Path(mosquitto["socket"]).is_absolute():
        mosquitto["socket"] = str((base / mosquitto["socket"]).resolve())
    try:
        settings = dacite.from_dict(MosquittoSettings, mosquitto, config=dacite.Config(strict=True))
        dacite.from_dict(AgentConfig, section, config=dacite.Config(strict=True))
        config = AgentConfig.from_dict(section)
        config.validate()
    except dacite.DaciteError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    except LicensingError as exc:
        raise ConfigError(f"{path}: {exc.message}") from None
    return settings, config


def _unknown(path: Path, where: str, section: dict[str, Any], known: tuple[str, ...]) -> None:
    for key in sorted(set(section) - set(known), key=str):
        close = difflib.get_close_matches(str(key), known, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(f"{path}: unknown {where} key {key!r}{hint}")


async def serve(
    settings: MosquittoSettings,
    config: AgentConfig,
    *,
    on_started: Callable[[LicensingAgent, PluginLink], None] | None = None,
    stop: asyncio.Event | None = None,
) -> None:
    """Run the agent and its link to the plugin until SIGINT/SIGTERM (or ``stop``)."""
    agent = LicensingAgent(config)
    try:
        await agent.load()
    except LicensingError as exc:
        raise LicensingError(
            exc.code, f"the license state in {config.state_dir} cannot be loaded: {exc.message}"
        ) from exc
    link = PluginLink(agent, settings.socket, hold=settings.snapshot_hold)
    await agent.start(link)
    http: HttpListener | None = None
    if config.http_bind:
        page = PageConfig(config.ws_url, settings.ws_port, settings.ws_tls, config.store_url)
        http = await start_http(config.http_bind, page, routes=metrics_app(agent.metrics, agent.status_document).routes)
    runner = asyncio.create_task(link.run())
    if stop is None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, stop.set)
    if on_started is not None:
        on_started(agent, link)
    try:
        await stop.wait()
    finally:
        if http is not None:
            await http.stop()
        await agent.stop()
        runner.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await runner
