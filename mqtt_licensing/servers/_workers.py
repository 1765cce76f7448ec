"""Several worker processes serving one port (``vendor serve --workers N``).

Why: a request is Python (HTTP, JSON, SQLAlchemy, certificate building) and Python runs one
thread at a time in a process, so one server process uses one core however many threads it has.
N processes use N cores.

How: the parent binds the listening socket, then forks the workers before it opens anything
else (no database connection, no thread crosses the fork); each worker opens its own service,
builds its app with ``make_app(index)`` and serves the shared socket with uvicorn, the kernel
handing each new connection to one of them. The parent only supervises: a worker that exits
while the server is not stopping is started again (after a second, so one failing at start
does not spin), and SIGTERM or SIGINT stops them all.

What the workers share is the database, never memory: every exactly-once rule (activations
counted under the license row's lock, nonces, seats, usage) is the database's, as it is for
replicas behind a load balancer. On SQLite each worker has its own group commit
(:mod:`._batch`) and SQLite's write lock is taken in turn between them (:mod:`._db`'s writer
lock). ``make_app(0)`` alone runs the background duties (release of silent activations, the
webhook outbox, the store's worker): one process does them, as one did before.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import socket
import time
from collections.abc import Callable
from types import FrameType
from typing import Any

import uvicorn
from starlette.applications import Starlette

from ._run import tls_options

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1  # linux/prctl.h
RESTART_DELAY = 1.0  # seconds before a worker that exited is started again


def bind(host: str, port: int) -> socket.socket:
    """The listening socket every worker accepts on (as uvicorn binds its own)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def _stop_with_parent() -> None:
    """Linux: this worker gets SIGTERM when the parent dies (even by kill -9), so no worker goes on
    serving unsupervised, holding the port."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() == 1:  # the parent died before prctl: nobody would be told
        os.kill(os.getpid(), signal.SIGTERM)


def _worker(make_app: Callable[[int], Starlette], index: int, sock: socket.socket, options: dict[str, Any]) -> int:
    """The body of worker ``index`` (in the forked child); its exit status."""
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, signal.SIG_DFL)  # uvicorn installs its own graceful handlers
    _stop_with_parent()
    try:
        app = make_app(index)
        uvicorn.Server(uvicorn.Config(app, **options)).run(sockets=[sock])
    except BaseException:
        log.exception("worker %d failed", index)
        return 1
    return 0


def serve_workers(
    make_app: Callable[[int], Starlette],
    host: str,
    port: int,
    workers: int,
    *,
    tls_cert: str | None = None,
    tls_key: str | None = None,
) -> None:
    """Serve ``host:port`` with ``workers`` processes until SIGTERM/SIGINT (see module docstring).
    ``make_app(index)`` runs in the worker; index 0 is the one that runs background duties."""
    options: dict[str, Any] = {
        "log_level": "warning",
        "access_log": False,
        "proxy_headers": False,  # X-Forwarded-For is honoured only from --trusted-proxies
        "lifespan": "on",
        **tls_options(tls_cert, tls_key),
    }
    sock = bind(host, port)
    children: dict[int, int] = {}  # pid -> worker index
    stopping = False

    def spawn(index: int) -> None:
        pid = os.fork()
        if pid == 0:  # the worker: never returns into the parent's code
            status = 1
            try:
                status = _worker(make_app, index, sock, options)
            finally:
                logging.shutdown()
                os._exit(status)
        children[pid] = index

    def stop(_signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        for pid in list(children):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    for index in range(workers):
        spawn(index)
    previous = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        while children:
            try:
                pid, status = os.wait()
            except ChildProcessError:
                break
            index = children.pop(pid, -1)
            if index < 0 or stopping:
                continue
            code = os.waitstatus_to_exitcode(status)
            log.warning("worker %d (pid %d) exited with status %d: starting it again", index, pid, code)
            time.sleep(RESTART_DELAY)
            if not stopping:
                spawn(index)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        sock.close()


__all__ = ["RESTART_DELAY", "bind", "serve_workers"]
