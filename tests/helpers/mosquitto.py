"""A real Debian Mosquitto with the licensing plugin, and its agent, on 127.0.0.1 and ephemeral ports.

    with MosquittoHandle(tmp_path, plugin, vendor=vendor) as broker:   # mosquitto + in-process agent
        broker.port, broker.agent
        with broker.admin() as c: c.request("activate", {"license_key": key})
        broker.kill_agent(); broker.start_agent()

``agent_process=True`` runs the agent as ``mqtt-licensing mosquitto agent`` in its own process
(so that a test can kill -9 it); otherwise it runs on a thread of the test process.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import yaml

from mqtt_licensing.adapters.mosquitto.link import PluginLink
from mqtt_licensing.adapters.mosquitto.runner import load_config, serve
from mqtt_licensing.agent import LicensingAgent
from mqtt_licensing.clients.mqtt import LicenseClient
from mqtt_licensing.core.errors import LicensingError
from mqtt_licensing.servers._run import free_port
from tests.helpers.broker import _ADMIN_HASH, _READER_HASH, ADMIN, ADMIN_PASSWORD, READER

MOSQUITTO = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None)


def missing() -> str | None:
    """Why the Mosquitto tests cannot run here (None: they can)."""
    if MOSQUITTO is None:
        return "needs the mosquitto package"
    if not Path("/usr/include/mosquitto_broker.h").is_file():
        return "needs mosquitto-dev and libmosquitto-dev (plugin headers)"
    if not (shutil.which("cc") or shutil.which("gcc")):
        return "needs a C compiler"
    if not Path("/usr/include/openssl/evp.h").is_file():
        return "needs libssl-dev"
    return None


def wait_port(port: int, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while True:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        if time.monotonic() > deadline:
            raise TimeoutError(f"nothing listens on {port}")
        time.sleep(0.05)


class _AgentThread:
    def __init__(self, config_path: Path) -> None:
        self.settings, self.config = load_config(config_path)
        self.loop = asyncio.new_event_loop()
        self.agent: LicensingAgent | None = None
        self.link: PluginLink | None = None
        self._stop = asyncio.Event()
        self._started = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="mosquitto-agent", daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)

        def started(agent: LicensingAgent, link: PluginLink) -> None:
            self.agent, self.link = agent, link
            self._started.set()

        try:
            self.loop.run_until_complete(serve(self.settings, self.config, on_started=started, stop=self._stop))
        except BaseException as exc:  # reported to the test by start()
            self._error = exc
            self._started.set()

    def start(self) -> _AgentThread:
        self._thread.start()
        if not self._started.wait(30) or self._error is not None:
            raise RuntimeError(f"the agent did not start: {self._error}")
        return self

    def call(self, coro: Any, timeout: float = 30) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=timeout)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=20)


class MosquittoHandle:
    def __init__(
        self,
        folder: Path,
        plugin: Path,
        *,
        vendor: Any,
        agent_process: bool = False,
        ws_port: int | None = None,
        persistence: bool = False,
        snapshot_hold: int | None = None,
        plugin_options: dict[str, str] | None = None,
        **agent_options: Any,
    ) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.plugin = plugin
        self.port = free_port()
        self.ws_port = ws_port
        self.socket = self.folder / "agent.sock"
        self.persistence = persistence
        self.plugin_options = plugin_options or {}
        self.agent_process = agent_process
        section: dict[str, Any] = {
            "state_dir": str(self.folder / "state"),
            "vendor_url": vendor.url,
            "vendor_public_key": vendor.public_key_text,
            "admins": {ADMIN: _ADMIN_HASH},
            "users": {READER: _READER_HASH},
            "readers": [READER],
            "tick_interval": 0.2,
            "http_timeout": 3.0,
        }
        section.update(agent_options)
        self.agent_yaml = self.folder / "agent.yaml"
        mosquitto: dict[str, Any] = {"socket": str(self.socket)}
        if ws_port is not None:
            mosquitto["ws_port"] = ws_port
        if snapshot_hold is not None:
            mosquitto["snapshot_hold"] = snapshot_hold
        self.agent_yaml.write_text(yaml.safe_dump({"mosquitto": mosquitto, "agent": section}))
        self.broker: subprocess.Popen[bytes] | None = None
        self.agent_thread: _AgentThread | None = None
        self.agent_proc: subprocess.Popen[bytes] | None = None

    # -- Mosquitto --------------------------------------------------------------------------

    def conf_text(self) -> str:
        lines = [
            "per_listener_settings false",
            # Run as the test's user: root Mosquitto would switch to "mosquitto", which may not
            # read the tmp folder, and the agent socket admits only the broker's own user.
            f"user {getpass.getuser()}",
            f"listener {self.port} 127.0.0.1",
            "allow_anonymous true",  # the plugin decides; this only matters without it
            f"plugin {self.plugin}",
            f"plugin_opt_socket {self.socket}",
            *(f"plugin_opt_{name} {value}" for name, value in self.plugin_options.items()),
            f"log_dest file {self.folder / 'mosquitto.log'}",
            "log_type all",
        ]
        if self.ws_port is not None:
            lines += [f"listener {self.ws_port} 127.0.0.1", "protocol websockets"]
        if self.persistence:
            lines += ["persistence true", f"persistence_location {self.folder}/"]
        return "\n".join(lines) + "\n"

    def start_broker(self) -> None:
        conf = self.folder / "mosquitto.conf"
        conf.write_text(self.conf_text())
        assert MOSQUITTO is not None
        with open(self.folder / "mosquitto.stderr", "ab") as err:
            self.broker = subprocess.Popen([MOSQUITTO, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=err)
        wait_port(self.port)

    def kill_broker(self) -> None:
        if self.broker is not None:
            self.broker.send_signal(signal.SIGKILL)
            self.broker.wait(10)
            self.broker = None

    def stop_broker(self) -> None:
        if self.broker is not None:
            self.broker.terminate()
            try:
                self.broker.wait(10)
            except subprocess.TimeoutExpired:
                self.broker.kill()
                self.broker.wait(10)
            self.broker = None

    def log(self) -> str:
        path = self.folder / "mosquitto.log"
        return path.read_text(errors="replace") if path.exists() else ""

    # -- the agent --------------------------------------------------------------------------

    def start_agent(self) -> None:
        if self.agent_process:
            env = {**os.environ, "PYTHONUNBUFFERED": "1"}
            command = [
                sys.executable,
                "-m",
                "mqtt_licensing.cli.main",
                "mosquitto",
                "agent",
                "-c",
                str(self.agent_yaml),
            ]
            with open(self.folder / "agent.log", "ab") as log:
                self.agent_proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
        else:
            self.agent_thread = _AgentThread(self.agent_yaml).start()
        self.wait_ready()

    def kill_agent(self) -> None:
        """kill -9 (an agent process) or a clean stop (an agent thread)."""
        if self.agent_proc is not None:
            self.agent_proc.send_signal(signal.SIGKILL)
            self.agent_proc.wait(10)
            self.agent_proc = None
        if self.agent_thread is not None:
            self.agent_thread.stop()
            self.agent_thread = None

    def stop_agent(self) -> None:
        """A clean stop (SIGTERM to an agent process): the agent closes its open interval."""
        if self.agent_proc is not None:
            self.agent_proc.terminate()
            self.agent_proc.wait(20)
            self.agent_proc = None
        if self.agent_thread is not None:
            self.agent_thread.stop()
            self.agent_thread = None

    @property
    def agent(self) -> LicensingAgent:
        assert self.agent_thread is not None and self.agent_thread.agent is not None
        return self.agent_thread.agent

    def call(self, coro: Any, timeout: float = 30) -> Any:
        assert self.agent_thread is not None
        return self.agent_thread.call(coro, timeout)

    def wait_ready(self, timeout: float = 20) -> None:
        """Until an admin's status request is answered (the plugin has a snapshot, the agent replies)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.status()
                return
            except LicensingError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    # -- clients ----------------------------------------------------------------------------

    def admin(self, **kwargs: Any) -> LicenseClient:
        return LicenseClient(
            "127.0.0.1",
            self.port,
            username=ADMIN,
            password=ADMIN_PASSWORD,
            timeout=kwargs.pop("timeout", 15.0),
            **kwargs,
        )

    def status(self) -> dict[str, Any]:
        with self.admin(timeout=5.0) as c:
            return c.request("status")["status"]

    def start(self) -> MosquittoHandle:
        self.start_broker()
        self.start_agent()
        return self

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self.kill_agent()
        self.stop_broker()

    def __enter__(self) -> MosquittoHandle:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
