"""Fixtures for the operator tests that need no licensing agent.

``bare_broker`` is a plain amqtt broker (anonymous, no licensing plugin): the
honest setting for "nobody answers on $license/*". Tests against the real agent
use tests/helpers/broker.py instead.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, proc: subprocess.Popen, timeout: float = 15.0) -> None:
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
    proc = subprocess.Popen([sys.executable, "-c", _BARE_BROKER, str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
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
