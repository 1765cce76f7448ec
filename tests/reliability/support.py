"""Helpers for the reliability suite: real processes, a fault-injecting TCP proxy, checks.

Everything runs on 127.0.0.1 with ephemeral ports. Nothing of ours is mocked: the
broker and vendor server run as the real CLI (``mqtt-licensing broker -c FILE``,
``mqtt-licensing vendor serve``) in subprocesses so they can be killed with SIGKILL,
and :class:`FaultProxy` is a plain TCP server that sits between the agent and a real
server and misbehaves on request (refuses, stalls, resets, answers garbage).
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import socket
import socketserver
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgpack
import yaml

from mqtt_licensing.core.documents import ActivationCertificate
from mqtt_licensing.core.errors import ErrorCode
from mqtt_licensing.core.signing import fingerprint, unb64
from mqtt_licensing.servers._run import free_port
from mqtt_licensing.servers.activation import ActivationService
from tests.helpers.broker import broker_config, connect_packet

CLI = str(Path(sys.executable).with_name("mqtt-licensing"))
ERROR_CODES = frozenset(code.value for code in ErrorCode)


def wait_port(port: int, timeout: float = 15.0, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening on {port}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.02)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


def decode_any(payload: bytes) -> Any:
    """Replies use the request's encoding: JSON, or msgpack for a msgpack-looking request."""
    try:
        return json.loads(payload)
    except ValueError:
        return msgpack.unpackb(payload, raw=False)


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


class _Process:
    """A CLI subprocess with its output in a log file (shown when a test fails)."""

    def __init__(self, log_path: Path) -> None:
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self.kills = 0

    def _spawn(self, args: list[str]) -> None:
        assert self.proc is None or self.proc.poll() is not None, "already running"
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child
        log.write(f"\n===== start {' '.join(args[1:])}\n".encode())
        log.flush()
        self.proc = subprocess.Popen(
            args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
        )
        log.close()

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill9(self) -> None:
        """SIGKILL: no shutdown hook, no flush, no atexit - the process just stops."""
        assert self.proc is not None
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)
        self.kills += 1

    def terminate(self) -> None:
        if self.alive:
            assert self.proc is not None
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill9()

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""


class BrokerProcess(_Process):
    """``mqtt-licensing broker -c FILE.yaml`` with the agent config of tests/helpers/broker.py."""

    def __init__(
        self,
        workdir: Path,
        state_dir: Path,
        *,
        vendor_url: str | None,
        vendor_public_key: str,
        log_level: str = "INFO",
        **agent: Any,
    ) -> None:
        super().__init__(workdir / "broker.log")
        self.port = free_port()
        self.state_dir = state_dir
        self.config_path = workdir / "broker.yaml"
        self.log_level = log_level
        config = broker_config(
            self.port, state_dir, vendor_url=vendor_url, vendor_public_key=vendor_public_key, **agent
        )
        self.config_path.write_text(yaml.safe_dump(config))

    def spawn(self) -> None:
        self._spawn([CLI, "broker", "-c", str(self.config_path), "--log-level", self.log_level])

    def start(self, timeout: float = 20.0) -> BrokerProcess:
        self.spawn()
        wait_port(self.port, timeout, self.proc)
        return self


class VendorProcess(_Process):
    """``mqtt-licensing vendor serve --data DIR --port P``."""

    def __init__(
        self, data_dir: Path, *, port: int = 0, certificate_lifetime: int | None = None, extra: tuple[str, ...] = ()
    ) -> None:
        self.extra = extra  # more `vendor serve` options (--webhook-timeout ...)
        if not (data_dir / "vendor.key").exists():
            ActivationService.open(data_dir).close()  # a vendor data folder, as `vendor init` makes it
        super().__init__(data_dir.parent / f"{data_dir.name}.log")
        self.data_dir = data_dir
        self.port = port or free_port()
        self.certificate_lifetime = certificate_lifetime

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0) -> VendorProcess:
        args = [CLI, "vendor", "serve", "--data", str(self.data_dir), "--port", str(self.port)]
        if self.certificate_lifetime is not None:
            args += ["--certificate-lifetime", str(self.certificate_lifetime)]
        self._spawn([*args, *self.extra])
        wait_port(self.port, timeout, self.proc)
        return self


def cli(*args: str, timeout: float = 30.0) -> str:
    """Run one CLI verb to completion; return its stdout (fails the test on a non-zero exit)."""
    done = subprocess.run([CLI, *args], capture_output=True, text=True, timeout=timeout, check=False)
    assert done.returncode == 0, f"mqtt-licensing {' '.join(args)} failed: {done.stderr}"
    return done.stdout


def check_state_folder(state_dir: Path, vendor_public_key: Any) -> dict[str, Any]:
    """What a kill -9 may leave: state.json must be a whole snapshot whose documents verify."""
    from cryptography.hazmat.primitives import serialization

    from mqtt_licensing.agent.statefile import StoredState
    from tests.helpers.statefolder import identity_mac_key

    raw = (state_dir / "state.json").read_bytes()
    state = StoredState.from_json(raw, identity_mac_key(state_dir))  # raises on a half-written file
    identity = serialization.load_pem_private_key((state_dir / "identity.key").read_bytes(), password=None)
    out: dict[str, Any] = {"state": state, "certificate": None}
    if state.source is not None and state.source.get("certificate"):
        cert = ActivationCertificate.open(unb64(state.source["certificate"]), vendor_public_key)
        assert cert.instance_fingerprint == fingerprint(identity)  # type: ignore[arg-type]
        out["certificate"] = cert
    assert not list(state_dir.glob("state.json.corrupt-*")), "a state file was found unreadable"
    return out


# -- a TCP proxy that injects faults -------------------------------------------------------


def _wait_for_peer_close(conn: socket.socket, delay: float, stop: threading.Event) -> None:
    """Hold a connection without answering until the client closes it, ``delay`` passes or the proxy stops."""
    deadline = time.monotonic() + delay
    conn.settimeout(0.05)
    while not stop.is_set() and time.monotonic() < deadline:
        try:
            if not conn.recv(65536):
                return
        except TimeoutError:
            continue


def _read_http_request(conn: socket.socket, timeout: float = 5.0) -> bytes:
    """Read one HTTP/1.1 request (headers and a Content-Length body) so the client is done sending."""
    conn.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    while len(body) < length:
        chunk = conn.recv(65536)
        if not chunk:
            break
        body += chunk
    return data


def http_response(status: int, body: bytes, content_type: str = "application/json") -> bytes:
    reason = {200: "OK", 201: "Created", 403: "Forbidden", 404: "Not Found", 500: "Internal Server Error"}.get(
        status, "Whatever"
    )
    return (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    ).encode() + body


class FaultProxy:
    """A TCP proxy on 127.0.0.1 in front of a real server; its ``mode`` is changed while running.

    Modes: ``pass`` (relay to ``upstream``), ``down`` (nothing listens: connection refused),
    ``slow`` (read the request, answer nothing for ``delay`` seconds, then close),
    ``reset`` (accept, then RST), ``close`` (read the request, close without a word),
    ``respond`` (answer with ``response`` bytes, a full HTTP response). ``latency`` delays every
    relayed chunk in ``pass`` mode (each direction).
    """

    def __init__(self, upstream_port: int) -> None:
        self.port = free_port()
        self.upstream_port = upstream_port
        self.mode = "pass"
        self.delay = 5.0
        self.latency = 0.0  # ``pass``: seconds each relayed chunk waits (a slow network, both ways)
        self.response = b""
        self.connections = 0
        # ``slow`` requests whose client has not given up on them yet (by serial): a status read
        # while one of these is still held was answered before that request ended
        self.hanging: set[int] = set()
        self._serial = 0
        self._stop = threading.Event()
        self._server: socketserver.ThreadingTCPServer | None = None
        self._thread: threading.Thread | None = None
        self._listen()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def set(
        self, mode: str, *, upstream_port: int | None = None, response: bytes | None = None, delay: float | None = None
    ) -> None:
        if upstream_port is not None:
            self.upstream_port = upstream_port
        if response is not None:
            self.response = response
        if delay is not None:
            self.delay = delay
        if mode == "down":
            self._close_listener()
        elif self._server is None:
            self._listen()
        self.mode = mode

    def _listen(self) -> None:
        proxy = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                proxy.connections += 1
                proxy._serve(self.request)

        class Server(socketserver.ThreadingTCPServer):
            allow_reuse_address = True
            daemon_threads = True

        deadline = time.monotonic() + 5
        while True:
            try:
                self._server = Server(("127.0.0.1", self.port), Handler)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            daemon=True,
            name=f"fault-proxy:{self.port}",
        )
        self._thread.start()

    def _close_listener(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def _serve(self, conn: socket.socket) -> None:
        mode = self.mode
        try:
            if mode == "reset":
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                return
            if mode == "slow":
                _read_http_request(conn)
                self._serial += 1  # only the handler threads of one proxy, each a new serial under the GIL
                serial = self._serial
                self.hanging.add(serial)
                try:
                    _wait_for_peer_close(conn, self.delay, self._stop)
                finally:
                    self.hanging.discard(serial)
                return
            if mode == "close":
                _read_http_request(conn)
                conn.shutdown(socket.SHUT_RDWR)
                return
            if mode == "respond":
                _read_http_request(conn)
                conn.sendall(self.response)
                return
            self._relay(conn)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                conn.close()

    def _relay(self, conn: socket.socket) -> None:
        upstream = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=5)
        try:
            conn.settimeout(None)
            upstream.settimeout(None)
            peers = {conn: upstream, upstream: conn}
            while not self._stop.is_set():
                ready, _, _ = select.select(list(peers), [], [], 0.2)
                for sock in ready:
                    data = sock.recv(65536)
                    if not data:
                        return
                    if self.latency:
                        time.sleep(self.latency)
                    peers[sock].sendall(data)
        finally:
            upstream.close()

    def close(self) -> None:
        self._stop.set()
        self._close_listener()


def wait_until(predicate: Callable[[], Any], timeout: float, message: str, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"{message} (not within {timeout}s)")
        time.sleep(interval)


SCALE = max(1, int(os.environ.get("RELIABILITY_SCALE", "1")))


def hypothesis_settings(max_examples: int, **kwargs: Any) -> Any:
    """Bounded Hypothesis settings for this suite: no example database in the repository, no deadline."""
    from hypothesis import HealthCheck, settings

    return settings(
        max_examples=max_examples * SCALE,
        database=None,
        deadline=None,
        print_blob=True,
        suppress_health_check=list(HealthCheck),
        **kwargs,
    )


def connack_code(
    port: int,
    client_id: str,
    *,
    username: str | None = None,
    password: str | None = None,
    clean_session: bool = True,
    timeout: float = 5.0,
) -> int:
    """One raw MQTT 3.1.1 CONNECT: return the CONNACK return code (0 accepted, 5 not authorized),
    then DISCONNECT. A few milliseconds, where a paho client takes a second to stop its loop."""
    packet = connect_packet(client_id, username=username, password=password, keepalive=30, clean_session=clean_session)
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(packet)
        data = b""
        while len(data) < 4:
            chunk = sock.recv(4 - len(data))
            if not chunk:
                raise ConnectionError(f"no CONNACK (got {data!r})")
            data += chunk
        assert data[0] == 0x20, data
        if data[3] == 0:
            with contextlib.suppress(OSError):
                sock.sendall(b"\xe0\x00")
        return data[3]
