"""Helpers of the tests that run a server with ``--workers N``: its worker processes, requests
sent all at once (each on its own connection, so the kernel hands them to different workers), and
a worker killed -9 that the parent must start again while the server keeps answering."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import httpx


def worker_pids(pid: int) -> set[int]:
    """The live child processes of ``pid`` (its workers)."""
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if fields[1] == str(pid) and fields[0] != "Z":
                found.add(int(entry))
    return found


async def post_each(url: str, path: str, bodies: list[dict[str, str]]) -> list[httpx.Response]:
    """Every body at once, each on its own connection (the kernel hands each to one worker)."""

    async def post(body: dict[str, str]) -> httpx.Response:
        async with httpx.AsyncClient(base_url=url, trust_env=False, timeout=60) as client:
            return await client.post(path, json=body)

    return await asyncio.gather(*(post(b) for b in bodies))


def kill_one_and_see_it_restarted(parent: int, url: str, workers: set[int]) -> None:
    """Kill -9 one of ``workers``; the parent starts another while ``url`` answers throughout."""
    victim = min(workers)
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while len(worker_pids(parent) - {victim}) < len(workers):
        assert time.monotonic() < deadline, "the killed worker was not started again"
        assert httpx.get(f"{url}/v1/noop", trust_env=False, timeout=10).status_code == 200
        time.sleep(0.2)
