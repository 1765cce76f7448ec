"""Run an amqtt broker with the licensing agent, in the foreground or on a thread.

Used by ``mqtt-licensing broker``, the demo, the tests and the benchmarks, so the
broker they exercise is always started the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import difflib
import errno
import importlib
import logging
import signal
import socket
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dacite
import yaml
from amqtt.broker import Broker
from amqtt.contexts import BrokerConfig
from amqtt.errors import BrokerError

from ...agent import LicensingAgent
from ...agent.config import AgentConfig
from ...core.errors import ErrorCode, LicensingError
from .exposure import exposure_problem
from .plugin import LicensingPlugin, check_adapter_limits
from .versions import unsupported_amqtt

log = logging.getLogger(__name__)


class ConfigError(LicensingError):
    """A broker config mistake: one line naming the fix (the CLI prints it and exits 2)."""

    def __init__(self, message: str) -> None:
        super().__init__(ErrorCode.INVALID_FIELD, message)


class StartError(LicensingError):
    """The broker must not start (e.g. the agent cannot load its state): one line, exit 2."""


def load_config(path: str | Path) -> dict[str, Any]:
    """Read and check a broker_config YAML; relative paths in the agent section are taken from
    the file's folder. Every mistake is a :class:`ConfigError` naming the fix."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file (see broker_config/default.yaml for an example)") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read it ({exc.strerror})") from None
    try:
        config = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ConfigError(f"{path}:{where}: {problem} (fix the YAML there)") from None
    if not isinstance(config, dict):
        raise ConfigError(f"{path}: expected a mapping with listeners: and plugins: at the top")
    _check_top_level(path, config)
    for name, section in _plugin_sections(config):
        _check_plugin_name(path, str(name))
        if name.endswith("LicensingPlugin") and isinstance(section, dict):
            for key in ("state_dir", "trial_marker", "vendor_public_key"):
                value = section.get(key)
                if isinstance(value, str) and value and "\n" not in value and not Path(value).is_absolute():
                    candidate = path.parent / value
                    if key in ("state_dir", "trial_marker") or candidate.is_file() or _looks_like_path(value):
                        section[key] = str(candidate.resolve())
            _check_agent_section(path, section)
    return config


def _check_top_level(path: Path, config: dict[str, Any]) -> None:
    """Misspelled top-level keys and unusable listener binds, before amqtt trips over them."""
    known = [f.name for f in dataclasses.fields(BrokerConfig)]
    for key in sorted(set(config) - set(known), key=str):
        close = difflib.get_close_matches(str(key), known, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else f" (known: {', '.join(known)})"
        raise ConfigError(f"{path}: unknown top-level key {key!r}{hint}")
    listeners = config.get("listeners")
    if not isinstance(listeners, dict) or not listeners:
        raise ConfigError(f"{path}: listeners: needs at least one listener (see broker_config/default.yaml)")
    for name, listener in listeners.items():
        bind = listener.get("bind") if isinstance(listener, dict) else None
        if bind is None:
            continue
        _host, sep, port = str(bind).rpartition(":")  # no port at all: amqtt takes its default
        if sep and (not port.isdigit() or int(port) > 65535):
            raise ConfigError(
                f"{path}: listeners.{name}.bind is {bind!r}: write HOST:PORT, e.g. 0.0.0.0:1883 or 127.0.0.1:1884"
            )


def _check_plugin_name(path: Path, name: str) -> None:
    """A plugin class that cannot be imported is one line with the likely fix, not amqtt's traceback."""
    module_name, _, class_name = name.rpartition(".")
    try:
        module = importlib.import_module(module_name) if module_name else None
    except ImportError:
        module = None
    if module is not None and isinstance(getattr(module, class_name, None), type):
        return
    known = ["mqtt_licensing.adapters.amqtt.LicensingPlugin"]
    if module is not None:
        known += [f"{module_name}.{n}" for n, v in vars(module).items() if isinstance(v, type)]
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.8)
    hint = f" (did you mean {close[0]!r}?)" if close else " (a class in an installed module: module.Class)"
    raise ConfigError(f"{path}: plugin {name!r} cannot be imported{hint}")


def _looks_like_path(value: str) -> bool:
    return "/" in value or value.endswith(".pub")


def _check_agent_section(path: Path, section: dict[str, Any]) -> None:
    unknown = sorted(set(section) - set(AgentConfig.__dataclass_fields__))
    for key in unknown:
        close = difflib.get_close_matches(key, AgentConfig.__dataclass_fields__, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else " (see README: agent configuration)"
        raise ConfigError(f"{path}: unknown agent config key {key!r}{hint}")
    key_text = section.get("vendor_public_key")
    if (
        isinstance(key_text, str)
        and "\n" not in key_text.strip()
        and _looks_like_path(key_text)
        and not Path(key_text).expanduser().is_file()
    ):
        raise ConfigError(
            f"{path}: vendor_public_key file {key_text} not found "
            "(copy vendor.pub from the vendor server's data folder there, or paste the key text)"
        )
    try:
        # the types amqtt will insist on when it loads the plugin, checked here with one line each
        dacite.from_dict(AgentConfig, section, config=dacite.Config(strict=True))
    except dacite.DaciteError as exc:
        raise ConfigError(f"{path}: agent config: {exc} (see README: agent configuration)") from None
    try:
        agent_config = AgentConfig.from_dict(section)
        agent_config.validate()
        check_adapter_limits(agent_config)
    except (LicensingError, TypeError) as exc:
        message = exc.message if isinstance(exc, LicensingError) else str(exc)
        raise ConfigError(f"{path}: {message}") from None


def _plugin_sections(config: dict[str, Any]) -> list[tuple[str, Any]]:
    plugins = config.get("plugins") or {}
    if isinstance(plugins, dict):
        return list(plugins.items())
    out: list[tuple[str, Any]] = []
    for item in plugins:
        if isinstance(item, dict):
            out.extend(item.items())
    return out


def _check_ports_free(config: dict[str, Any]) -> None:
    """Name a busy port in one line before amqtt would log a traceback for it."""
    listeners = config.get("listeners") or {}
    for name, listener in listeners.items() if isinstance(listeners, dict) else ():
        bind = listener.get("bind") if isinstance(listener, dict) else None
        if not isinstance(bind, str) or ":" not in bind:
            continue
        host, _, port_text = bind.rpartition(":")
        if not port_text.isdigit() or int(port_text) == 0:
            continue
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as asyncio's server does
            try:
                probe.bind((host.strip("[]") or "0.0.0.0", int(port_text)))
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    raise ConfigError(
                        f"listener {name!r}: port {port_text} is in use: stop what holds it "
                        f"or change listeners.{name}.bind in the broker config"
                    ) from None


def _check_amqtt() -> None:
    if (problem := unsupported_amqtt()) is not None:
        raise StartError(ErrorCode.INTERNAL_ERROR, problem)


def find_agent(broker: Broker) -> LicensingAgent:
    for plugin in broker.plugins_manager.plugins:
        if isinstance(plugin, LicensingPlugin):
            return plugin.agent
    raise LookupError("this broker has no LicensingPlugin configured")


async def serve(config: dict[str, Any], on_started: Callable[[Broker], None] | None = None) -> None:
    """Run until SIGINT/SIGTERM, then shut down cleanly (a floating seat is returned)."""
    _check_amqtt()
    sections = [s for name, s in _plugin_sections(config) if name.endswith("LicensingPlugin") and isinstance(s, dict)]
    if (problem := exposure_problem(config, sections)) is not None:
        raise ConfigError(problem)
    _check_ports_free(config)
    broker = Broker(config)
    await _load_agents(broker)
    try:
        await broker.start()
    except BrokerError as exc:
        cause = exc.__cause__ or exc.__context__
        if isinstance(cause, OSError) and cause.errno == errno.EADDRINUSE:
            raise ConfigError(
                f"a listener's port is in use ({cause.strerror}): stop the other broker or change "
                "listeners: ... bind: in the broker config"
            ) from None
        raise LicensingError(ErrorCode.INTERNAL_ERROR, f"the broker could not start: {exc}") from None
    if on_started is not None:
        on_started(broker)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await broker.shutdown()


async def _load_agents(broker: Broker) -> None:
    """Load each agent's state before the broker listens: amqtt runs ``on_broker_pre_start`` as a
    task and only logs what it raises, so a state the agent cannot load (a newer state.json, a
    damaged identity.key, an unwritable folder) would leave a broker running that admits only
    admins. Here it stops the start with one line instead; the plugin then skips its own load."""
    for plugin in broker.plugins_manager.plugins:
        if not isinstance(plugin, LicensingPlugin):
            continue
        state_dir = plugin.agent.config.state_dir
        try:
            await plugin.agent.load()
        except LicensingError as exc:
            raise StartError(exc.code, f"the license state in {state_dir} cannot be loaded: {exc.message}") from exc
        except OSError as exc:
            raise StartError(
                ErrorCode.STATE_CORRUPT,
                f"the license state folder {state_dir} cannot be used ({exc.strerror}: {exc.filename}); "
                "fix its permissions or point state_dir in the broker config elsewhere",
            ) from exc


class BrokerThread:
    """An amqtt broker (with whatever plugins its config names) on its own thread and event loop."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config
        self.loop = asyncio.new_event_loop()
        self.broker: Broker | None = None
        self._thread = threading.Thread(target=self.loop.run_forever, name="amqtt-broker", daemon=True)

    def start(self) -> BrokerThread:
        _check_amqtt()
        self._thread.start()

        async def _start() -> Broker:
            broker = Broker(self.config)
            await broker.start()
            return broker

        self.broker = asyncio.run_coroutine_threadsafe(_start(), self.loop).result(timeout=30)
        return self

    @property
    def agent(self) -> LicensingAgent:
        assert self.broker is not None
        return find_agent(self.broker)

    def call(self, coro: Any, timeout: float = 30) -> Any:
        """Run a coroutine on the broker's loop (e.g. an agent method) and wait for it."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=timeout)

    def stop(self) -> None:
        if self.broker is not None:
            try:
                self.call(self.broker.shutdown(), timeout=30)
            finally:
                self.broker = None
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
        if not self._thread.is_alive():
            self.loop.close()

    def __enter__(self) -> BrokerThread:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
