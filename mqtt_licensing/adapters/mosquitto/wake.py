"""Waking Mosquitto's loop after the agent wrote to the plugin (plugin/wake.c, mode ``signal``).

Mosquitto 2.0 reads only its own sockets promptly: the plugin's TICK would see a reply up to
100 ms late. In the plugin's hello it names a real-time signal it handles (0: it wakes itself);
the agent sends it to the broker once per burst of writes. The broker's pid is the socket peer's
(``SO_PEERCRED``, as this process's pid namespace sees it), never a number the peer sends.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import struct

log = logging.getLogger(__name__)


class Waker:
    def __init__(self, writer: asyncio.StreamWriter, announced: bytes) -> None:
        self.pid, self.signo = 0, 0
        self._pending = False
        number = int(announced) if announced.isdigit() else 0
        if not signal.SIGRTMIN <= number <= signal.SIGRTMAX:
            return  # only a real-time signal the plugin handles: never one that ends the broker
        sock = writer.get_extra_info("socket")
        if sock is None:
            return
        creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        pid = struct.unpack("3i", creds)[0]
        if pid > 0:
            self.pid, self.signo = pid, number

    def __call__(self) -> None:
        """After a write: one signal at the end of this turn of the loop, for all that was written."""
        if self.signo and not self._pending:
            self._pending = True
            asyncio.get_running_loop().call_soon(self._send)

    def _send(self) -> None:
        self._pending = False
        try:
            os.kill(self.pid, self.signo)
        except OSError as exc:
            log.warning("cannot wake Mosquitto (pid %d): %s; its replies wait for its next tick", self.pid, exc)
            self.signo = 0
