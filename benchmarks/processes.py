"""The processes under test: amqtt brokers (bare or with the agent), Mosquitto, the
vendor activation server and the floating license server.

Each runs in its own OS process so the load generator (this process) never shares
an event loop or a GIL with what it measures. Everything listens on 127.0.0.1 on a
free ephemeral port, logs to a file in the run's work folder, and is stopped by
its own pid (SIGTERM, then SIGKILL after a grace period).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from mqtt_licensing.core.passwords import hash_password
from mqtt_licensing.servers._run import free_port

REPO = Path(__file__).resolve().parent.parent
CLI = [sys.executable, "-m", "mqtt_licensing.cli.main"]
AGENT_PLUGIN = "mqtt_licensing.adapters.amqtt.LicensingPlugin"
# The baseline: amqtt's own trivial auth plugin, the cheapest way to admit a client.
TRIVIAL_AUTH_PLUGIN = "amqtt.plugins.authentication.AnonymousAuthPlugin"

ADMIN, ADMIN_PASSWORD = "bench-admin", "bench-admin-secret"
# A cheap scrypt cost: the admin connects a handful of times.
_ADMIN_HASH = hash_password(ADMIN_PASSWORD, n=2**10)
# The password client of the CONNECT benchmark: a production-cost hash, verified once per broker
# (the agent keeps a keyed digest of a good login), as a fleet of devices with passwords has it.
USER, USER_PASSWORD = "bench-user", "bench-user-secret"
_USER_HASH = hash_password(USER_PASSWORD)
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _stat(pid: int | str) -> list[str] | None:
    """The fields of /proc/PID/stat after the command name (field 3 on), or None if it is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def _cpu_ticks(fields: list[str]) -> int:
    return int(fields[11]) + int(fields[12])  # utime + stime


def _family(pid: int) -> list[list[str]]:
    """The stat fields of ``pid`` and of its live children (one level: a server's workers)."""
    own = _stat(pid)
    children = [f for p in os.listdir("/proc") if p.isdigit() and (f := _stat(p)) is not None and f[1] == str(pid)]
    return ([own] if own is not None else []) + children


def _listeners(port: int) -> int:
    """Sockets listening on ``port`` (IPv4, /proc/net/tcp: state 0A)."""
    rows = Path("/proc/net/tcp").read_text().splitlines()[1:]
    return sum(1 for row in rows if (f := row.split())[3] == "0A" and int(f[1].split(":")[1], 16) == port)


class Process:
    """A child process this benchmark started, and only that one."""

    def __init__(self, name: str, argv: list[str], log_path: Path, port: int | None = None) -> None:
        self.name = name
        self.argv = argv
        self.log_path = log_path
        self.port = port
        self._popen: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> Process:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
        with open(self.log_path, "ab") as log:
            self._popen = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT, cwd=REPO, env=env)
        if self.port is not None:
            self._wait_listening(timeout)
        return self

    @property
    def pid(self) -> int:
        assert self._popen is not None
        return self._popen.pid

    def _wait_listening(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._popen is not None and self._popen.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited with {self._popen.returncode}; see {self.log_path}:\n"
                    + self.log_path.read_text()[-3000:]
                )
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port or 0)) == 0:
                    return
            time.sleep(0.05)
        raise TimeoutError(f"{self.name} did not listen on port {self.port} within {timeout}s; see {self.log_path}")

    def wait_workers(self, workers: int, timeout: float = 30.0) -> None:
        """Until ``workers`` sockets listen on the port (``serve --workers N``: each worker listens on
        its own once its app is built; a load started before would reach the first ones only)."""
        deadline = time.monotonic() + timeout
        while _listeners(self.port or 0) < workers:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name}: fewer than {workers} workers listen; see {self.log_path}")
            time.sleep(0.05)

    def rss_kib(self) -> int:
        """Resident set size (VmRSS) of the process, in KiB."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise RuntimeError(f"no VmRSS for pid {self.pid}")

    def cpu_seconds(self) -> float:
        """User + system CPU time of the process so far (all its threads), and of its live child
        processes (``serve --workers N``: the workers do the serving)."""
        return sum(_cpu_ticks(fields) for fields in _family(self.pid)) / _CLOCK_TICKS

    def stop(self, grace: float = 15.0) -> None:
        popen, self._popen = self._popen, None
        if popen is None or popen.poll() is not None:
            return
        popen.send_signal(signal.SIGTERM)  # brokers and servers shut down cleanly on SIGTERM
        try:
            popen.wait(grace)
        except subprocess.TimeoutExpired:
            popen.kill()
            popen.wait(5)


# -- brokers ---------------------------------------------------------------------------------------


def _listener(port: int) -> dict[str, Any]:
    return {"default": {"type": "tcp", "bind": f"127.0.0.1:{port}"}}


def bare_broker_config(port: int) -> dict[str, Any]:
    """amqtt with nothing but the trivial auth plugin (no $SYS, no logging plugins)."""
    return {"listeners": _listener(port), "plugins": {TRIVIAL_AUTH_PLUGIN: {"allow_anonymous": True}}}


def agent_broker_config(
    port: int, state_dir: Path, *, vendor_url: str, vendor_public_key: str, **agent: Any
) -> dict[str, Any]:
    """amqtt with the licensing agent as its only plugin, production defaults otherwise."""
    section: dict[str, Any] = {
        "state_dir": str(state_dir),
        "vendor_url": vendor_url,
        "vendor_public_key": vendor_public_key,
        "admins": {ADMIN: _ADMIN_HASH},
        "users": {USER: _USER_HASH},
        **agent,
    }
    return {"listeners": _listener(port), "plugins": {AGENT_PLUGIN: section}}


def start_amqtt(name: str, config: dict[str, Any], work: Path, *, profile: bool = False) -> Process:
    """``config`` must listen on a port (see the *_config helpers); ``profile`` writes a cProfile dump."""
    port = int(config["listeners"]["default"]["bind"].rsplit(":", 1)[1])
    config_path = work / f"{name}.json"
    config_path.write_text(json.dumps(config, indent=1))
    argv = [sys.executable, "-m", "benchmarks.broker_runner", str(config_path)]
    if profile:
        argv += ["--profile", str(work / f"{name}.prof")]
    return Process(name, argv, work / f"{name}.log", port).start()


def mosquitto_available() -> bool:
    return shutil.which("mosquitto") is not None


def start_mosquitto(work: Path) -> Process:
    port = free_port()
    conf = work / "mosquitto.conf"
    # Anonymous on loopback, nothing persisted, no per-message logging: Mosquitto at its plainest.
    conf.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
        "log_dest stderr\nlog_type error\nlog_type warning\nmax_queued_messages 100000\n"
    )
    return Process(
        "mosquitto", [shutil.which("mosquitto") or "mosquitto", "-c", str(conf)], work / "mosquitto.log", port
    ).start()


# -- HTTP servers --------------------------------------------------------------------------------


def cli(*args: str, work: Path) -> str:
    """Run one ``mqtt-licensing`` command to completion; return its stdout."""
    result = subprocess.run([*CLI, *args], cwd=REPO, capture_output=True, text=True, check=False, timeout=120)
    if result.returncode != 0:
        (work / "cli-errors.log").open("a").write(f"$ {' '.join(args)}\n{result.stdout}{result.stderr}\n")
        raise RuntimeError(f"mqtt-licensing {' '.join(args)} failed: {result.stderr.strip()[-2000:]}")
    return result.stdout


class Vendor:
    """The vendor activation server's data folder, and the server process over it."""

    def __init__(self, work: Path, database_url: str | None = None) -> None:
        self.work = work
        self.data = work / "vendor"
        self.port = free_port()
        self.process: Process | None = None
        # remembered in the data folder by the first command that names it
        self.db_args = ["--database-url", database_url] if database_url else []
        cli("vendor", "init", str(self.data), *self.db_args, work=work)  # every other vendor verb needs the folder

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def public_key_path(self) -> Path:
        return self.data / "vendor.pub"

    def issue(self, *extra: str, features: str = "mqtt_server") -> str:
        """A new license key, issued with the CLI on the data folder (safe while the server runs)."""
        argv = ["vendor", "issue", "--data", str(self.data), *self.db_args, "--features", features, *extra]
        return cli(*argv, work=self.work).strip()

    def start(self, workers: int = 1) -> Vendor:
        self.process = Process(
            "vendor",
            [*CLI, "vendor", "serve", "--data", str(self.data), "--port", str(self.port), "--workers", str(workers)],
            self.work / "vendor.log",
            self.port,
        ).start()
        self.process.wait_workers(workers)
        return self

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()


class Floating:
    """A floating license server, activated online against ``vendor`` with ``seats`` seats."""

    def __init__(
        self, work: Path, vendor: Vendor, *, seats: int, ttl: int, database_url: str | None = None, workers: int = 1
    ) -> None:
        self.work = work
        self.workers = workers
        self.data = work / "floating"
        self.port = free_port()
        self.ttl = ttl
        key = vendor.issue("--model", "floating", "--seats", str(seats))
        cli(
            "floating",
            "activate",
            "--data",
            str(self.data),
            *(["--database-url", database_url] if database_url else []),
            "--key",
            key,
            "--vendor",
            vendor.url,
            "--vendor-key",
            str(vendor.public_key_path),
            work=work,
        )
        # A new pool admits only its join token: the benchmark's instances come from loopback.
        cli("floating", "allow", "--data", str(self.data), "--network", "127.0.0.0/8", work=work)
        self.process = self._process()

    def _process(self) -> Process:
        return Process(
            "floating",
            [
                *CLI,
                "floating",
                "serve",
                "--data",
                str(self.data),
                "--port",
                str(self.port),
                "--ttl",
                str(self.ttl),
                "--refresh-interval",
                "0",
                "--workers",
                str(self.workers),
            ],
            self.work / "floating.log",
            self.port,
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def token(self) -> str:
        return (self.data / "admin.token").read_text().strip()

    def start(self) -> Floating:
        self.process.start()
        self.process.wait_workers(self.workers)
        return self

    def restart(self, *, ttl: int) -> Floating:
        """Stop, then serve the same data folder (pool, leases) with another lease TTL."""
        self.process.stop()
        self.ttl = ttl
        self.process = self._process()
        return self.start()

    def stop(self) -> None:
        self.process.stop()
