"""The paho side of :class:`~mqtt_licensing.clients.mqtt.LicenseClient`: one connection, its inboxes.

paho's network loop runs in its own thread; its callbacks only hand messages over
through locks and queues. Every wait here is bounded by the client's timeout.
Automatic reconnection is off: a lost connection fails whatever is waiting (see
:func:`take`) instead of silently resubscribing behind a caller's back.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any, Self

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from ..core.errors import ErrorCode, LicensingError
from ..core.protocol import client_id_can_receive_replies, default_reply_topic
from .tls import ClientTls
from .wire import decode_payload

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 1883
DEFAULT_TIMEOUT = 10.0

log = logging.getLogger(__name__)

_CONNACK_NOT_AUTHORIZED = ("Bad user name or password", "Not authorized")


class _ConnectionLost:
    """Queue sentinel: the connection ended while someone was waiting."""

    def __init__(self, error: LicensingError) -> None:
        self.error = error


def take(inbox: queue.Queue[Any], timeout: float) -> Any:
    """The next message in an inbox; ``queue.Empty`` after ``timeout`` (0: don't wait), the
    connection's error if it was lost meanwhile."""
    item = inbox.get(timeout=timeout)
    if isinstance(item, _ConnectionLost):
        raise item.error
    return item


class MqttConnection:
    """An MQTT 3.1.1 connection with a private reply topic and per-topic inboxes."""

    def __init__(
        self,
        host: str = DEFAULT_HOST,
        port: int = DEFAULT_PORT,
        *,
        username: str | None = None,
        password: str | None = None,
        client_id: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        keepalive: int = 60,
        tls: ClientTls | None = None,
    ) -> None:
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        self.host = host
        self.port = int(port)
        self.timeout = float(timeout)
        self.client_id = client_id or f"mql-op-{uuid.uuid4().hex[:16]}"
        if not client_id_can_receive_replies(self.client_id):
            raise LicensingError(
                ErrorCode.INVALID_FIELD,
                f"client id {self.client_id!r} cannot receive replies (no '/', '+', '#' allowed)",
            )
        self.reply_topic = default_reply_topic(self.client_id)
        self._keepalive = keepalive
        self._username = username

        self._lock = threading.Lock()
        self._acks = threading.Condition(self._lock)
        self._connack: Any = None  # ReasonCode once CONNACK arrived
        self._connected = False
        self._lost: LicensingError | None = None
        self._subacks: dict[int, list[Any]] = {}
        self._pending: dict[str, queue.Queue[Any]] = {}  # correlation id -> its reply's inbox
        self._streams: dict[str, list[queue.Queue[Any]]] = {}  # topic -> its listeners' inboxes
        self._request_lock = threading.Lock()  # one request in flight keeps uncorrelated errors routable

        self._mqtt = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            clean_session=True,
            protocol=mqtt.MQTTv311,
            reconnect_on_failure=False,
        )
        if username is not None:
            self._mqtt.username_pw_set(username, password)
        if tls is not None:
            self._mqtt.tls_set_context(tls.context())
            self._mqtt.tls_insecure_set(tls.insecure)
        self._mqtt.connect_timeout = self.timeout
        self._mqtt.on_connect = self._on_connect
        self._mqtt.on_disconnect = self._on_disconnect
        self._mqtt.on_subscribe = self._on_subscribe
        self._mqtt.on_message = self._on_message
        self._started = False

    def __enter__(self) -> Self:
        self.connect()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def where(self) -> str:
        return f"{self.host}:{self.port}"

    def connect(self) -> None:
        """Connect, wait for CONNACK and subscribe to this client's reply topic."""
        try:
            self._mqtt.connect(self.host, self.port, keepalive=self._keepalive)
        except ConnectionRefusedError:
            raise LicensingError(
                ErrorCode.SERVER_UNREACHABLE, f"no MQTT broker at {self.where} (connection refused)"
            ) from None
        except (OSError, ValueError) as exc:
            raise LicensingError(
                ErrorCode.SERVER_UNREACHABLE, f"cannot connect to the MQTT broker at {self.where}: {exc}"
            ) from None
        self._mqtt.loop_start()
        self._started = True
        deadline = time.monotonic() + self.timeout
        with self._acks:
            done = self._acks.wait_for(
                lambda: self._connack is not None or self._lost is not None,
                timeout=max(0.0, deadline - time.monotonic()),
            )
            connack, lost = self._connack, self._lost
        if not done:
            self.close()
            raise LicensingError(
                ErrorCode.SERVER_UNREACHABLE,
                f"timed out after {self.timeout:g} s waiting for the broker at {self.where} "
                "to accept the connection (CONNACK)",
            )
        if connack is None or connack.is_failure:
            self.close()
            if connack is None:
                raise LicensingError(
                    ErrorCode.SERVER_UNREACHABLE,
                    f"the broker at {self.where} closed the connection before accepting it"
                    f" ({lost.message if lost else 'no CONNACK'})",
                )
            reason = connack.getName()
            if reason in _CONNACK_NOT_AUTHORIZED:
                who = f"user {self._username!r}" if self._username is not None else "an anonymous client"
                raise LicensingError(
                    ErrorCode.NOT_AUTHORIZED,
                    f"the broker at {self.where} refused the connection for {who}: {reason} "
                    "(check --username/--password; only admin users may manage the license)",
                )
            if reason == "Server unavailable":  # CONNACK 3: the login was right, a session limit is not
                raise LicensingError(
                    ErrorCode.RATE_LIMITED,
                    f"the broker at {self.where} refused the connection: too many admin or reader sessions are "
                    "open (max_admin_connections, max_reader_connections); close one (a License page tab?) "
                    "and try again",
                )
            raise LicensingError(
                ErrorCode.SERVER_UNREACHABLE, f"the broker at {self.where} refused the connection: {reason}"
            )
        self._subscribe(self.reply_topic, deadline)

    def close(self) -> None:
        """Disconnect cleanly and stop the network thread (idempotent)."""
        if not self._started:
            return
        self._started = False
        with contextlib.suppress(Exception):  # already gone; nothing left to tell the broker
            self._mqtt.disconnect()
        self._mqtt.loop_stop()
        self._fail_waiters(LicensingError(ErrorCode.SERVER_UNREACHABLE, "the client was closed"))

    # -- inboxes -----------------------------------------------------------------------------

    @contextlib.contextmanager
    def _awaiting_reply(self, correlation_id: str) -> Iterator[queue.Queue[Any]]:
        """The inbox the reply echoing ``correlation_id`` lands in, while the block runs.

        Callers take turns: :meth:`_route_reply` hands a reply without a correlation id to
        the one request in flight."""
        inbox: queue.Queue[Any] = queue.Queue()
        with self._request_lock:
            with self._lock:
                self._check_connected()
                self._pending[correlation_id] = inbox
            try:
                yield inbox
            finally:
                with self._lock:
                    self._pending.pop(correlation_id, None)

    @contextlib.contextmanager
    def _listening(self, topic: str, *, refusal_ok: bool = False) -> Iterator[queue.Queue[Any]]:
        """An inbox for every message on ``topic`` while the block runs.

        Listeners share one subscription: the first subscribes (awaiting the SUBACK), the last
        unsubscribes. With ``refusal_ok`` a refused subscription leaves the inbox empty instead
        of raising ``not_authorized``."""
        inbox: queue.Queue[Any] = queue.Queue()
        with self._lock:
            self._check_connected()
            first = topic not in self._streams
            self._streams.setdefault(topic, []).append(inbox)
        try:
            if first:
                try:
                    self._subscribe(topic, time.monotonic() + self.timeout)
                except LicensingError as exc:
                    if not (refusal_ok and exc.code is ErrorCode.NOT_AUTHORIZED):
                        raise
            yield inbox
        finally:
            with self._lock:
                listeners = self._streams.get(topic, [])
                if inbox in listeners:
                    listeners.remove(inbox)
                last_listener = topic in self._streams and not listeners
                if last_listener:
                    del self._streams[topic]
            if last_listener and self._connected:
                self._mqtt.unsubscribe(topic)

    def _publish(self, topic: str, payload: bytes) -> None:
        info = self._mqtt.publish(topic, payload, qos=1)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            raise LicensingError(
                ErrorCode.SERVER_UNREACHABLE, f"could not publish to {topic}: {mqtt.error_string(info.rc)}"
            )

    def _check_connected(self) -> None:
        """Call with ``self._lock`` held."""
        if self._lost is not None:
            raise self._lost
        if not self._connected:
            raise LicensingError(ErrorCode.SERVER_UNREACHABLE, f"not connected to the broker at {self.where}")

    def _subscribe(self, topic: str, deadline: float) -> None:
        result, mid = self._mqtt.subscribe(topic, qos=1)
        if result != mqtt.MQTT_ERR_SUCCESS or mid is None:
            raise LicensingError(
                ErrorCode.SERVER_UNREACHABLE, f"could not subscribe to {topic}: {mqtt.error_string(result)}"
            )
        with self._acks:
            done = self._acks.wait_for(
                lambda: mid in self._subacks or self._lost is not None, timeout=max(0.0, deadline - time.monotonic())
            )
            codes = self._subacks.pop(mid, None)
            lost = self._lost
        if codes is None:
            if lost is not None:
                raise lost
            assert not done
            raise LicensingError(
                ErrorCode.SERVER_UNREACHABLE,
                f"timed out after {self.timeout:g} s waiting for the broker at {self.where} "
                f"to confirm the subscription to {topic}",
            )
        if any(code.is_failure for code in codes):
            raise LicensingError(
                ErrorCode.NOT_AUTHORIZED,
                f"the broker at {self.where} refused the subscription to {topic} for client {self.client_id!r}",
            )

    def _fail_waiters(self, error: LicensingError) -> None:
        with self._acks:
            if self._lost is None:
                self._lost = error
            self._connected = False
            inboxes = list(self._pending.values()) + [q for qs in self._streams.values() for q in qs]
            self._acks.notify_all()
        for inbox in inboxes:
            inbox.put(_ConnectionLost(error))

    # -- paho callbacks (network thread) -----------------------------------------------------

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        with self._acks:
            self._connack = reason_code
            self._connected = not reason_code.is_failure
            self._acks.notify_all()

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        self._fail_waiters(
            LicensingError(
                ErrorCode.SERVER_UNREACHABLE, f"the connection to the broker at {self.where} was lost ({reason_code})"
            )
        )

    def _on_subscribe(
        self, client: mqtt.Client, userdata: Any, mid: int, reason_codes: list[Any], properties: Any
    ) -> None:
        with self._acks:
            self._subacks[mid] = list(reason_codes)
            self._acks.notify_all()

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        topic = message.topic
        try:
            decoded = decode_payload(bytes(message.payload))
        except LicensingError as exc:
            if topic != self.reply_topic:
                log.warning("ignored a message on %s: %s", topic, exc.message)
                return
            decoded = {"ok": False, "error": exc.to_dict()}  # fails the waiting request with bad_response
        if topic == self.reply_topic:
            self._route_reply(decoded)
            return
        with self._lock:
            inboxes = list(self._streams.get(topic, ()))
        for inbox in inboxes:
            inbox.put(decoded)

    def _route_reply(self, reply: Any) -> None:
        correlation_id = reply.get("correlation_id") if isinstance(reply, dict) else None
        with self._lock:
            if correlation_id is not None:
                inbox = self._pending.get(str(correlation_id))
            elif len(self._pending) == 1:
                # an error the agent could not correlate (e.g. payload_too_large): the one request in flight
                inbox = next(iter(self._pending.values()))
            else:
                inbox = None
        if inbox is not None:
            inbox.put(reply)
