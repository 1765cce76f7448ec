"""A real amqtt broker with the licensing agent, on 127.0.0.1 and an ephemeral port.

    from tests.helpers.broker import start_broker, ADMIN, ADMIN_PASSWORD

    with start_broker(tmp_path / "state", vendor=vendor) as broker:
        broker.port, broker.agent        # the LicensingAgent inside (runs on broker.loop)
        with broker.admin() as c:        # a LicenseClient logged in as the admin
            c.request("activate", {"license_key": key})
        broker.restart()                 # same port, same state folder

Agent options are passed through as AgentConfig fields (check_in_interval=1, ...).
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from mqtt_licensing.adapters.amqtt.runner import BrokerThread
from mqtt_licensing.clients.mqtt import LicenseClient
from mqtt_licensing.core.passwords import hash_password
from mqtt_licensing.servers._run import free_port

ADMIN, ADMIN_PASSWORD = "admin", "admin-secret"
READER, READER_PASSWORD = "dashboard", "reader-secret"
# Cheaper scrypt cost than production hashes: tests connect admins often.
_ADMIN_HASH = hash_password(ADMIN_PASSWORD, n=2**10)
_READER_HASH = hash_password(READER_PASSWORD, n=2**10)
PLUGIN = "mqtt_licensing.adapters.amqtt.LicensingPlugin"


def broker_config(
    port: int,
    state_dir: Path,
    *,
    vendor_url: str | None,
    vendor_public_key: str,
    ws_port: int | None = None,
    **agent: Any,
) -> dict[str, Any]:
    section: dict[str, Any] = {
        "state_dir": str(state_dir),
        "vendor_url": vendor_url,
        "vendor_public_key": vendor_public_key,
        "admins": {ADMIN: _ADMIN_HASH},
        "users": {READER: _READER_HASH},
        "readers": [READER],
        "tick_interval": 0.2,
        "http_timeout": 3.0,
    }
    section.update(agent)
    listeners: dict[str, Any] = {"default": {"type": "tcp", "bind": f"127.0.0.1:{port}"}}
    if ws_port is not None:  # MQTT over WebSocket, for the License page (tests/web)
        listeners["ws"] = {"type": "ws", "bind": f"127.0.0.1:{ws_port}"}
    return {"listeners": listeners, "plugins": {PLUGIN: section}}


class BrokerHandle:
    def __init__(
        self,
        state_dir: Path,
        *,
        vendor: Any = None,
        vendor_url: str | None = None,
        vendor_public_key: str | None = None,
        port: int = 0,
        ws_port: int | None = None,
        **agent: Any,
    ) -> None:
        self.state_dir = Path(state_dir)
        self.port = port or free_port()
        self.ws_port = ws_port
        self.vendor_url = vendor_url if vendor_url is not None else (vendor.url if vendor else None)
        key = vendor_public_key or (vendor.public_key_text if vendor else None)
        assert key, "a broker needs a pinned vendor public key"
        self.vendor_public_key = key
        self.agent_options = agent
        self._thread: BrokerThread | None = None

    @property
    def config(self) -> dict[str, Any]:
        return broker_config(
            self.port,
            self.state_dir,
            vendor_url=self.vendor_url,
            vendor_public_key=self.vendor_public_key,
            ws_port=self.ws_port,
            **self.agent_options,
        )

    def start(self) -> BrokerHandle:
        self._thread = BrokerThread(self.config).start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._thread.stop()
            self._thread = None

    def restart(self) -> None:
        self.stop()
        self.start()

    @property
    def thread(self) -> BrokerThread:
        assert self._thread is not None
        return self._thread

    @property
    def agent(self) -> Any:
        return self.thread.agent

    def call(self, coro: Any, timeout: float = 30) -> Any:
        return self.thread.call(coro, timeout)

    def admin(self, **kwargs: Any) -> LicenseClient:
        return LicenseClient(
            "127.0.0.1",
            self.port,
            username=ADMIN,
            password=ADMIN_PASSWORD,
            timeout=kwargs.pop("timeout", 15.0),
            **kwargs,
        )

    def status(self) -> dict[str, Any]:
        with self.admin() as c:
            return c.request("status")["status"]

    def __enter__(self) -> BrokerHandle:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def start_broker(state_dir: Path | str, **kwargs: Any) -> BrokerHandle:
    return BrokerHandle(Path(state_dir), **kwargs).start()


_V311_RETURN_CODE = {132: 1, 133: 2, 136: 3, 134: 4, 135: 5}


class MqttClient:
    """A plain paho client (MQTT 3.1.1) that records CONNACK, messages and disconnects."""

    def __init__(
        self,
        port: int,
        *,
        client_id: str = "",
        username: str | None = None,
        password: str | None = None,
        clean_session: bool = True,
    ) -> None:
        self.port = port
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311, clean_session=clean_session
        )
        if username is not None:
            self.client.username_pw_set(username, password)
        self.connack: int | None = None
        self.connected = threading.Event()
        self.done = threading.Event()  # CONNACK received (accepted or not)
        self.disconnected = threading.Event()
        self.messages: list[mqtt.MQTTMessage] = []
        self.message_arrived = threading.Condition()
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message

    def _on_connect(self, _c: Any, _u: Any, _f: Any, reason_code: Any, _p: Any) -> None:
        code = int(reason_code.value) if hasattr(reason_code, "value") else int(reason_code)
        # paho 2 reports MQTT 3.1.1 CONNACK return codes as MQTT 5 reason codes; map them back
        self.connack = _V311_RETURN_CODE.get(code, code)
        if self.connack == 0:
            self.connected.set()
        self.done.set()

    def _on_disconnect(self, *_args: Any) -> None:
        self.disconnected.set()

    def _on_message(self, _c: Any, _u: Any, message: mqtt.MQTTMessage) -> None:
        with self.message_arrived:
            self.messages.append(message)
            self.message_arrived.notify_all()

    def connect(self, timeout: float = 10) -> int:
        """Connect and return the CONNACK code (0 accepted, 5 not authorized, ...)."""
        self.client.connect("127.0.0.1", self.port, keepalive=30)
        self.client.loop_start()
        if not self.done.wait(timeout):
            raise TimeoutError("no CONNACK")
        return self.connack if self.connack is not None else -1

    def subscribe(self, topic: str, qos: int = 1, timeout: float = 10) -> int:
        granted = threading.Event()
        result: list[int] = []

        def on_subscribe(_c: Any, _u: Any, _mid: int, codes: list[Any], _p: Any) -> None:
            result.extend(int(c.value) if hasattr(c, "value") else int(c) for c in codes)
            granted.set()

        self.client.on_subscribe = on_subscribe
        self.client.subscribe(topic, qos)
        if not granted.wait(timeout):
            raise TimeoutError(f"no SUBACK for {topic}")
        return result[0]

    def publish(self, topic: str, payload: bytes | str, qos: int = 1, timeout: float = 10) -> None:
        info = self.client.publish(topic, payload, qos=qos)
        info.wait_for_publish(timeout)

    def wait_message(self, topic: str, timeout: float = 10, after: int = 0) -> mqtt.MQTTMessage:
        """The first message on ``topic`` at index >= after."""
        with self.message_arrived:
            ok = self.message_arrived.wait_for(lambda: any(m.topic == topic for m in self.messages[after:]), timeout)
            if not ok:
                raise TimeoutError(f"no message on {topic}")
            return next(m for m in self.messages[after:] if m.topic == topic)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.client.disconnect()
        self.client.loop_stop()

    def __enter__(self) -> MqttClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


@contextlib.contextmanager
def connected_clients(port: int, count: int, **kwargs: Any) -> Iterator[list[MqttClient]]:
    clients = []
    prefix = kwargs.pop("prefix", "c")  # once: popped inside the loop, only the first client had it
    try:
        for i in range(count):
            c = MqttClient(port, client_id=f"{prefix}{i}", **kwargs)
            clients.append(c)
            assert c.connect() == 0, f"client {i} refused"
        yield clients
    finally:
        for c in clients:
            c.close()


def wait_for(predicate: Any, timeout: float = 10.0, interval: float = 0.05, message: str = "") -> None:
    """Poll until predicate() is true; fail the test with ``message`` after ``timeout`` seconds."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError(message or f"condition not met within {timeout}s")


# -- raw MQTT 3.1.1 on a plain socket: for what paho will not do (wills dropped without DISCONNECT,
# -- silence past the keepalive, oversized packets, sockets that never CONNECT) -------------------


def _remaining_length(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _string(data: str | bytes) -> bytes:
    raw = data.encode() if isinstance(data, str) else data
    return len(raw).to_bytes(2, "big") + raw


def connect_packet(
    client_id: str,
    *,
    username: str | None = None,
    password: str | None = None,
    keepalive: int = 0,
    clean_session: bool = True,
    will: tuple[str, bytes, bool] | None = None,
) -> bytes:
    """``will`` is (topic, payload, retain), sent with QoS 0."""
    flags = (
        (0x02 if clean_session else 0) | (0x80 if username is not None else 0) | (0x40 if password is not None else 0)
    )
    payload = _string(client_id)
    if will is not None:
        flags |= 0x04 | (0x20 if will[2] else 0)
        payload += _string(will[0]) + _string(will[1])
    if username is not None:
        payload += _string(username)
    if password is not None:
        payload += _string(password)
    body = _string("MQTT") + bytes([4, flags]) + keepalive.to_bytes(2, "big") + payload
    return b"\x10" + _remaining_length(len(body)) + body


def publish_packet(topic: str, payload: bytes, *, retain: bool = False) -> bytes:
    body = _string(topic) + payload
    return bytes([0x30 | (1 if retain else 0)]) + _remaining_length(len(body)) + body


class RawClient:
    """One MQTT connection on a blocking socket."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)

    def connect(self, client_id: str, **kwargs: Any) -> int:
        """Send CONNECT; return the CONNACK return code (0 accepted, 5 not authorized)."""
        self.sock.sendall(connect_packet(client_id, **kwargs))
        connack = self._read_exactly(4)
        assert connack[:2] == b"\x20\x02", connack
        return connack[3]

    def send(self, data: bytes) -> None:
        with contextlib.suppress(OSError):
            self.sock.sendall(data)

    def closed_by_broker(self, timeout: float = 10.0) -> bool:
        """Wait up to ``timeout`` for the broker to close this socket (anything it sends is skipped)."""
        import time

        deadline = time.monotonic() + timeout
        try:
            while (left := deadline - time.monotonic()) > 0:
                self.sock.settimeout(left)
                if not self.sock.recv(65536):
                    return True
        except (ConnectionResetError, BrokenPipeError):
            return True
        except TimeoutError:
            return False
        return False

    def _read_exactly(self, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                raise ConnectionError("closed by the broker")
            data += chunk
        return data

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> RawClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
