"""Run an amqtt broker with the licensing agent, in the foreground or on a thread.

Used by ``mqtt-licensing broker``, the demo, the tests and the benchmarks, so the
broker they exercise is always started the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from amqtt.broker import Broker
from amqtt.errors import BrokerError

from ...agent.service import LicensingAgent
from ...core.errors import ErrorCode, LicensingError
from .plugin import LicensingPlugin

log = logging.getLogger(__name__)


def load_config(path: str | Path) -> dict[str, Any]:
    """Read a broker_config YAML; relative paths in the agent section are taken from the file's folder."""
    path = Path(path)
    config = yaml.safe_load(path.read_text()) or {}
    for name, section in _plugin_sections(config):
        if name.endswith("LicensingPlugin") and isinstance(section, dict):
            for key in ("state_dir", "vendor_public_key"):
                value = section.get(key)
                if isinstance(value, str) and value and "\n" not in value and not Path(value).is_absolute():
                    candidate = path.parent / value
                    if key == "state_dir" or candidate.is_file():
                        section[key] = str(candidate.resolve())
    return config


def _plugin_sections(config: dict[str, Any]) -> list[tuple[str, Any]]:
    plugins = config.get("plugins") or {}
    if isinstance(plugins, dict):
        return list(plugins.items())
    out: list[tuple[str, Any]] = []
    for item in plugins:
        if isinstance(item, dict):
            out.extend(item.items())
    return out


def find_agent(broker: Broker) -> LicensingAgent:
    for plugin in broker.plugins_manager.plugins:
        if isinstance(plugin, LicensingPlugin):
            return plugin.agent
    raise LookupError("this broker has no LicensingPlugin configured")


async def serve(config: dict[str, Any], on_started: Callable[[Broker], None] | None = None) -> None:
    """Run until SIGINT/SIGTERM, then shut down cleanly (a floating seat is returned)."""
    broker = Broker(config)
    try:
        await broker.start()
    except BrokerError as exc:
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


class BrokerThread:
    """An amqtt broker (with whatever plugins its config names) on its own thread and event loop."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config
        self.loop = asyncio.new_event_loop()
        self.broker: Broker | None = None
        self._thread = threading.Thread(target=self.loop.run_forever, name="amqtt-broker", daemon=True)

    def start(self) -> BrokerThread:
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
