"""Backoff locks out the guesser, not the account: while one address floods wrong passwords for
`admin`, the real admin from another address logs in at the first try."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from tests.helpers.broker import ADMIN, ADMIN_PASSWORD, connect_packet, start_broker

pytestmark = pytest.mark.timeout(60)


def connack_from(source: str, port: int, client_id: str, password: str) -> int:
    """One CONNECT as ``admin`` from ``source`` (another loopback address is another client)."""
    with socket.create_connection(("127.0.0.1", port), timeout=20, source_address=(source, 0)) as sock:
        sock.sendall(connect_packet(client_id, username=ADMIN, password=password))
        data = b""
        while len(data) < 4:
            chunk = sock.recv(4 - len(data))
            if not chunk:
                raise ConnectionError("closed without CONNACK")
            data += chunk
        return data[3]


def test_a_password_flood_from_one_address_does_not_lock_out_the_admin(tmp_path, vendor):
    with start_broker(tmp_path / "s", vendor=vendor) as broker:
        attacker = "127.0.0.2"
        # Eight wrong passwords in a row: the username (before) and the guesser back off 4 s.
        assert [connack_from(attacker, broker.port, f"guess-{i}", f"wrong-{i}") for i in range(8)] == [5] * 8
        stop, refused = threading.Event(), []

        def flood() -> None:
            while not stop.is_set():
                refused.append(connack_from(attacker, broker.port, "guess", "still-wrong"))

        threads = [threading.Thread(target=flood, daemon=True) for _ in range(4)]
        for thread in threads:
            thread.start()
        try:
            started = time.monotonic()
            assert connack_from("127.0.0.1", broker.port, "ops", ADMIN_PASSWORD) == 0  # the first try
            admitted_after = time.monotonic() - started
        finally:
            stop.set()
            for thread in threads:
                thread.join(timeout=20)
        assert set(refused) <= {5}
    print(f"admin admitted after {admitted_after:.2f} s during the flood; {len(refused)} flood CONNECTs refused")
