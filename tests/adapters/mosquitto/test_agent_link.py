"""The plugin without its agent, and the agent's socket: kill -9 of the agent with clients
connected and its return, the snapshot's valid_until, a socket created 0600 that refuses other
users and garbage."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import stat
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers.broker import ADMIN, ADMIN_PASSWORD, RawClient, wait_for
from tests.helpers.mosquitto import MosquittoHandle


@pytest.mark.timeout(60)
def test_the_broker_stays_single_threaded_and_the_agent_wakes_it(tmp_path: Path, plugin: Path, vendor) -> None:
    """A thread in Mosquitto would put every syscall and malloc of its loop on glibc's
    multi-threaded paths: the agent wakes the loop with the real-time signal the plugin handles."""
    with MosquittoHandle(tmp_path / "b", plugin, vendor=vendor) as broker:
        assert broker.broker is not None and broker.agent_thread is not None
        proc = Path(f"/proc/{broker.broker.pid}/status").read_text()
        fields = dict(line.split(":\t", 1) for line in proc.splitlines() if ":\t" in line)
        assert fields["Threads"].strip() == "1"
        wake_signal = signal.SIGRTMIN + 5
        assert int(fields["SigCgt"], 16) & (1 << (wake_signal - 1)), "the plugin handles its wake signal"
        waker = broker.agent_thread.link.waker if broker.agent_thread.link else None
        assert waker is not None and (waker.pid, waker.signo) == (broker.broker.pid, wake_signal)
        assert broker.status()["state"] == "trial"


@pytest.mark.timeout(60)
def test_an_agent_that_may_not_signal_the_broker_gets_the_watcher_thread(tmp_path: Path, plugin: Path, vendor) -> None:
    """plugin_opt_wake thread (an agent of another user): the plugin names no signal, a thread in
    the broker watches the socket, and replies still come."""
    with MosquittoHandle(tmp_path / "b", plugin, vendor=vendor, plugin_options={"wake": "thread"}) as broker:
        assert broker.broker is not None and broker.agent_thread is not None
        proc = Path(f"/proc/{broker.broker.pid}/status").read_text()
        assert "Threads:\t2" in proc
        waker = broker.agent_thread.link.waker if broker.agent_thread.link else None
        assert waker is not None and waker.signo == 0
        assert broker.status()["state"] == "trial"


@pytest.mark.timeout(120)
def test_kill_9_of_the_agent_with_100_clients_then_the_agent_back(tmp_path: Path, plugin: Path, vendor) -> None:
    key = vendor.issue(features=["mqtt_server"], max_connections=102)
    with MosquittoHandle(tmp_path / "b", plugin, vendor=vendor, agent_process=True) as broker:
        with broker.admin() as admin:
            assert admin.request("activate", {"license_key": key})["status"]["state"] == "active"
        clients = [RawClient(broker.port) for _ in range(100)]
        try:
            assert all(c.connect(f"dev-{i}", keepalive=0) == 0 for i, c in enumerate(clients))
            wait_for(lambda: broker.status()["connections"] == 100)
            broker.kill_agent()
            # the plugin goes on deciding from the last snapshot: one more, then the cap
            with RawClient(broker.port) as extra, RawClient(broker.port) as over:
                assert extra.connect("dev-extra") == 0
                assert over.connect("dev-over", clean_session=True) == 0  # 102: the license's cap
                with RawClient(broker.port) as refused:
                    assert refused.connect("dev-refused") == 5
                with RawClient(broker.port) as admin_socket:
                    assert admin_socket.connect("ops", username=ADMIN, password=ADMIN_PASSWORD) == 0
                broker.start_agent()  # told the live connections by the plugin
                wait_for(lambda: broker.status()["connections"] == 102)
                assert broker.status()["state"] == "active"
        finally:
            for c in clients:
                c.close()
        wait_for(lambda: broker.status()["connections"] == 0)


def test_past_the_snapshots_valid_until_only_admins_get_in(tmp_path: Path, plugin: Path, vendor) -> None:
    with MosquittoHandle(tmp_path / "b", plugin, vendor=vendor, snapshot_hold=2) as broker:
        broker.kill_agent()
        time.sleep(2.5)
        with RawClient(broker.port) as user:
            assert user.connect("dev-1") == 5
        with RawClient(broker.port) as admin:
            assert admin.connect("ops", username=ADMIN, password=ADMIN_PASSWORD) == 0
        broker.start_agent()
        with RawClient(broker.port) as user:
            assert user.connect("dev-2") == 0


def frame(kind: bytes, *fields: bytes) -> bytes:
    body = kind + b"".join(struct.pack(">I", len(f)) + f for f in fields)
    return struct.pack(">I", len(body)) + body


def closed_by_plugin(sock: socket.socket) -> bool:
    sock.settimeout(10)
    try:
        while sock.recv(65536):
            pass
    except ConnectionResetError:
        pass
    return True


def test_the_socket_is_0600_and_garbage_keeps_the_last_good_snapshot(tmp_path: Path, plugin: Path, vendor) -> None:
    with MosquittoHandle(tmp_path / "b", plugin, vendor=vendor, trial_max_connections=1) as broker:
        assert stat.S_IMODE(broker.socket.stat().st_mode) == 0o600
        broker.kill_agent()
        attempts = [
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",  # not a frame at all
            frame(b"S", b"serving\t1\nceiling\t-1\n"),  # a snapshot without the agent's hello
            frame(b"H", b"mqtt-licensing-agent/1") + frame(b"S", b"serving\t1\nceiling\t-1\nvalid_until\t9999999999\n"),
            frame(b"H", b"mqtt-licensing-agent/1") + frame(b"Z", b"?"),
        ]
        for garbage in attempts:
            with socket.socket(socket.AF_UNIX) as peer:
                peer.connect(str(broker.socket))
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    peer.sendall(garbage)
                assert closed_by_plugin(peer)
        with RawClient(broker.port) as first, RawClient(broker.port) as second:
            assert first.connect("dev-1") == 0
            assert second.connect("dev-2") == 5  # still the trial's cap of 1
        log = broker.log()
        assert "did not introduce itself as the agent" in log and "snapshot refused" in log


CHILD = """
import ctypes, os, socket, struct, sys
folder = os.open(sys.argv[1], os.O_PATH | os.O_DIRECTORY)
os.setgroups([]); os.setgid(65534); os.setuid(65534)
ctypes.CDLL(None).prctl(4, 1, 0, 0, 0)  # PR_SET_DUMPABLE: /proc/self/fd stays ours
s = socket.socket(socket.AF_UNIX)
s.connect(f"/proc/self/fd/{folder}/agent.sock")
hello = b"H" + struct.pack(">I", 22) + b"mqtt-licensing-agent/1"
s.settimeout(10)
try:
    s.sendall(struct.pack(">I", len(hello)) + hello)
    print("closed" if s.recv(100) == b"" else "answered")
except (BrokenPipeError, ConnectionResetError):
    print("closed")
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="switching to another user needs root")
def test_another_user_is_refused_even_when_the_socket_mode_would_let_it(tmp_path: Path, plugin: Path, vendor) -> None:
    with MosquittoHandle(tmp_path / "b", plugin, vendor=vendor) as broker:
        broker.kill_agent()
        broker.folder.chmod(0o755)
        broker.socket.chmod(0o666)  # as if an operator loosened it: SO_PEERCRED still refuses
        result = subprocess.run(
            [sys.executable, "-c", CHILD, str(broker.folder)], capture_output=True, text=True, timeout=30, check=False
        )
        assert result.stdout.strip() == "closed", result.stderr
        assert "refused a connection on the agent socket from uid 65534" in broker.log()
