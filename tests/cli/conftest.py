"""Fixtures for the operator tests.

``licensing`` is the real thing: a vendor server and an amqtt broker with the
licensing agent (tests/helpers), with the CLI pointed at it. ``bare_broker`` is a
plain amqtt broker without the agent (anonymous, no plugin): the honest setting
for "nobody answers on $license/*". ``silent_server`` accepts TCP and never
answers (no CONNACK).
"""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

from mqtt_licensing.servers._run import free_port

if TYPE_CHECKING:
    from tests.helpers.activation import VendorHandle
    from tests.helpers.broker import BrokerHandle

_BARE_BROKER = """
import asyncio, sys
from amqtt.broker import Broker

async def main():
    broker = Broker({"listeners": {"default": {"type": "tcp", "bind": "127.0.0.1:" + sys.argv[1]}},
                     "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}}})
    await broker.start()
    await asyncio.Event().wait()

asyncio.run(main())
"""


def wait_for_port(port: int, proc: subprocess.Popen[Any], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"broker exited with {proc.returncode}: {proc.stderr.read() if proc.stderr else ''}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port} after {timeout} s")


@pytest.fixture
def bare_broker() -> Iterator[int]:
    """Port of a plain amqtt broker without the licensing agent."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-c", _BARE_BROKER, str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    try:
        wait_for_port(port, proc)
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def silent_server() -> Iterator[int]:
    """Port of a TCP server that accepts connections and never says anything (no CONNACK)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    accepted: list[socket.socket] = []
    server.settimeout(0.1)
    import threading

    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
                accepted.append(conn)
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        stop.set()
        thread.join(timeout=2)
        for conn in accepted:
            conn.close()
        server.close()


# -- the real thing: a vendor server and a broker with the licensing agent ----------------------


def without_progress(err: str) -> str:
    """stderr less the "waiting for the vendor at ... ..." lines: the CLI prints one whenever a
    server takes longer than its first poll (0.25 s), which a loaded machine may well do.
    tests/cli/test_slow_vendor.py checks that line itself."""
    return "".join(line for line in err.splitlines(keepends=True) if not _PROGRESS.match(line))


_PROGRESS = re.compile(r"waiting for the (vendor|license server) at \S+ \(up to [\d.]+ s\) \.\.\.$")


class Licensing:
    """A running vendor server and broker, and the operator CLI pointed at that broker as admin."""

    def __init__(self, vendor: VendorHandle, broker: BrokerHandle, capsys: pytest.CaptureFixture[str]) -> None:
        self.vendor = vendor
        self.broker = broker
        self._capsys = capsys

    @property
    def port(self) -> int:
        return self.broker.port

    def cli(self, *argv: str, admin: bool = True) -> tuple[int, str, str]:
        """Run ``mqtt-licensing <argv>`` in-process against the broker; returns (exit code, stdout, stderr)."""
        from mqtt_licensing.cli.main import main
        from tests.helpers.broker import ADMIN, ADMIN_PASSWORD

        extra = ["--port", str(self.port), "--timeout", "15"]
        if admin:
            extra += ["--username", ADMIN, "--password", ADMIN_PASSWORD]
        self._capsys.readouterr()
        rc = main([*argv, *extra])
        captured = self._capsys.readouterr()
        return rc, captured.out, without_progress(captured.err)


@pytest.fixture
def licensing(tmp_path, capsys) -> Iterator[Licensing]:
    from tests.helpers.activation import start_vendor
    from tests.helpers.broker import start_broker

    with start_vendor(tmp_path / "vendor") as vendor, start_broker(tmp_path / "state", vendor=vendor) as broker:
        yield Licensing(vendor, broker, capsys)
