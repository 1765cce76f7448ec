"""`status --watch` and `events` as long-running followers: changes only, broker restarts, closed pipes."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from mqtt_licensing.core.errors import LicensingError
from tests.helpers.broker import ADMIN, ADMIN_PASSWORD

CLI = [sys.executable, "-m", "mqtt_licensing.cli.main"]
ENV = {**os.environ, "MQTT_LICENSING_USERNAME": ADMIN, "MQTT_LICENSING_PASSWORD": ADMIN_PASSWORD}


class Lines:
    """A child's stdout or stderr read on a thread, so a test can wait for a line without blocking forever."""

    def __init__(self, stream) -> None:
        self.lines: list[str] = []
        self._cond = threading.Condition()
        threading.Thread(target=self._pump, args=(stream,), daemon=True).start()

    def _pump(self, stream) -> None:
        for line in stream:
            with self._cond:
                self.lines.append(line.rstrip("\n"))
                self._cond.notify_all()

    def wait_for(self, predicate, timeout: float = 20.0, after: int = 0) -> str:
        """The first line from index ``after`` on that satisfies ``predicate``."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for line in self.lines[after:]:
                    if predicate(line):
                        return line
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no such line within {timeout} s; got: {self.lines}")
                self._cond.wait(left)


def events_flowing(licensing, out: Lines, timeout: float = 30.0) -> None:
    """Provoke an event (a refused ``reactivate`` is a ``command_failed``) until the ``events``
    follower prints one: from then on its subscription is in place and misses nothing."""
    deadline = time.monotonic() + timeout
    while True:
        seen = len(out.lines)
        with licensing.broker.admin() as operator, contextlib.suppress(LicensingError):
            operator.request("reactivate")
        try:
            out.wait_for(lambda line: "command_failed" in line, timeout=1.0, after=seen)
            return
        except AssertionError:
            if time.monotonic() > deadline:
                raise


@pytest.fixture
def follower(licensing) -> Iterator[Any]:
    procs: list[subprocess.Popen[str]] = []

    def start(*argv: str) -> tuple[subprocess.Popen[str], Lines, Lines]:
        proc = subprocess.Popen(
            [*CLI, *argv, "--port", str(licensing.port)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env=ENV,
        )  # fmt: skip
        procs.append(proc)
        return proc, Lines(proc.stdout), Lines(proc.stderr)

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)


@pytest.mark.timeout(90)
def test_watch_prints_the_whole_status_once_then_only_changed_lines(licensing, follower):
    _, out, _ = follower("status", "--watch")
    out.wait_for(lambda line: line.startswith("State:") and "trial" in line)
    instance = out.wait_for(lambda line: line.startswith("Instance:"))
    with licensing.broker.admin() as operator:
        operator.request("activate", {"method": "online", "license_key": licensing.vendor.issue()})
    out.wait_for(lambda line: "changed ---" in line)
    out.wait_for(lambda line: line.startswith("State:") and "active" in line)
    assert out.lines.count(instance) == 1  # the unchanged instance line is not printed again


@pytest.mark.timeout(120)
def test_events_and_watch_reconnect_after_a_broker_restart(licensing, follower):
    _, events_out, events_err = follower("events", "--json")
    _, watch_out, watch_err = follower("status", "--watch", "--json")
    watch_out.wait_for(lambda line: '"state":"trial"' in line)
    events_flowing(licensing, events_out)  # connected before the restart, so it has something to resume
    licensing.broker.restart()
    events_err.wait_for(lambda line: line == "reconnected", timeout=60)
    watch_err.wait_for(lambda line: line == "reconnected", timeout=60)
    events_flowing(licensing, events_out)  # "reconnected" is printed before the subscription
    with licensing.broker.admin() as operator:
        operator.request("activate", {"method": "online", "license_key": licensing.vendor.issue()})
    events_out.wait_for(lambda line: '"type":"activated"' in line)
    watch_out.wait_for(lambda line: '"state":"active"' in line)


@pytest.mark.timeout(60)
def test_a_closed_pipe_ends_quietly(licensing):
    """`mqtt-licensing status --watch | head -1`: no BrokenPipeError traceback when head leaves."""
    shell = f"{' '.join(CLI)} status --watch --port {licensing.port} | head -1"
    proc = subprocess.Popen(["bash", "-c", shell], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    out = Lines(proc.stdout)
    out.wait_for(lambda line: line.startswith("---"))
    with licensing.broker.admin() as operator:  # a change makes the watcher write into the closed pipe
        operator.request("activate", {"method": "online", "license_key": licensing.vendor.issue()})
    proc.wait(timeout=30)
    assert proc.stderr is not None
    err = proc.stderr.read()
    assert "Traceback" not in err and "BrokenPipe" not in err, err
