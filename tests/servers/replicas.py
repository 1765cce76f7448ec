"""Server replicas as real processes: ``mqtt-licensing vendor|floating serve`` on one database."""

from __future__ import annotations

import os
import signal
import ssl
import subprocess
import sys
import time
from pathlib import Path

import httpx

from mqtt_licensing.servers._run import free_port

ROOT = Path(__file__).resolve().parents[2]


def _verify(verify: str | bool) -> ssl.SSLContext | bool:
    return ssl.create_default_context(cafile=verify) if isinstance(verify, str) else verify


class Replica:
    def __init__(
        self, server: str, data: Path, database_url: str | None, *extra: str, verify: str | bool = True
    ) -> None:
        """``verify``: the CA file to check an HTTPS replica (``--tls-cert`` in ``extra``) against."""
        self.port = free_port()
        self.url = f"{'https' if '--tls-cert' in extra else 'http'}://127.0.0.1:{self.port}"
        argv = [sys.executable, "-m", "mqtt_licensing.cli.main", server, "serve", "--data", str(data)]
        if server == "vendor" and not (data / "vendor.key").exists():  # `vendor serve` needs a vendor data folder
            init = [sys.executable, "-m", "mqtt_licensing.cli.main", "vendor", "init", str(data)]
            init += ["--database-url", database_url] if database_url else []
            subprocess.run(init, capture_output=True, timeout=60, check=True)
        argv += ["--database-url", database_url] if database_url else []
        argv += ["--port", str(self.port), *extra]
        self.proc = subprocess.Popen(
            argv,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        deadline = time.monotonic() + 30
        while True:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                raise AssertionError(f"{server} serve exited: {err}")
            try:
                if (
                    httpx.get(f"{self.url}/v1/health", timeout=1, trust_env=False, verify=_verify(verify)).status_code
                    == 200
                ):
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                self.kill()
                raise AssertionError(f"{server} serve did not come up")
            time.sleep(0.1)

    def kill(self) -> None:
        """kill -9: no shutdown, requests in flight cut off."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()
        if self.proc.stderr:
            self.proc.stderr.close()


def start_replicas(server: str, n: int, data: Path, database_url: str, *extra: str) -> list[Replica]:
    replicas: list[Replica] = []
    try:
        for _ in range(n):
            replicas.append(Replica(server, data, database_url, *extra))
    except BaseException:
        for r in replicas:
            r.stop()
        raise
    return replicas


__all__ = ["Replica", "start_replicas"]
