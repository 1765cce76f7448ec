"""The operator's MQTT client: publish a ``$license/...`` request and wait for its reply.

A small synchronous wrapper around paho-mqtt (MQTT 3.1.1, callback API v2) that
the CLI, tests and scripts use::

    with LicenseClient("127.0.0.1", 1883, username="admin", password="...") as client:
        reply = client.request("activate", {"method": "online", "license_key": key})
        print(reply["status"]["state"])

* The reply topic (``$license/reply/<client_id>``) is subscribed, and the SUBACK
  awaited, before any request is published; every request carries a fresh
  ``correlation_id`` and only the reply echoing it completes the request.
* An error reply raises :class:`LicensingError` with the agent's code; a refused
  CONNECT raises ``not_authorized``; no broker, a lost connection or no reply within
  ``timeout`` raise ``server_unreachable``. Every wait is bounded.
* :meth:`LicenseClient.status_updates` / :meth:`LicenseClient.watch_status` read the
  retained ``$license/status`` document and its changes; :meth:`LicenseClient.events`
  reads ``$license/events``.

paho's network loop runs in its own thread; callbacks only hand messages over
through locks and queues. Automatic reconnection is off: a lost connection fails
whatever is waiting instead of silently resubscribing.
"""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import msgpack
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from ..core.errors import ErrorCode, LicensingError
from ..core.protocol import EVENTS_TOPIC, OPERATIONS, STATUS_TOPIC, client_id_can_receive_replies, default_reply_topic

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 1883
DEFAULT_TIMEOUT = 10.0

#: operation name -> request topic, derived from the one contract in core.protocol
TOPICS: dict[str, str] = {operation: topic for topic, operation in OPERATIONS.items()}

log = logging.getLogger(__name__)

_CONNACK_NOT_AUTHORIZED = ("Bad user name or password", "Not authorized")
_POLL = 0.25  # how often blocking waits wake up (keeps Ctrl-C responsive)
_AFTER_AGENT_TIMEOUT = 5.0  # how long past the agent's HTTP timeout its reply may take to arrive


class _ConnectionLost:
    """Queue sentinel: the connection ended while someone was waiting."""

    def __init__(self, error: LicensingError) -> None:
        self.error = error


def operation_topic(operation: str) -> str:
    """Topic for an operation name; ``offline-request`` and ``offline/request`` are accepted too."""
    name = operation.strip().replace("-", "_").replace("/", "_")
    try:
        return TOPICS[name]
    except KeyError:
        raise LicensingError(
            ErrorCode.UNKNOWN_OPERATION, f"{operation!r} is not a license operation (use one of: {', '.join(TOPICS)})"
        ) from None


def decode_payload(payload: bytes) -> Any:
    """Decode a JSON or msgpack payload; raises ``bad_response`` for anything else."""
    try:
        return json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        pass
    try:
        return msgpack.unpackb(payload, raw=False)
    except Exception:  # msgpack raises many unrelated types on garbage
        raise LicensingError(
            ErrorCode.BAD_RESPONSE, "a message on a $license topic is neither JSON nor msgpack"
        ) from None


def error_from_reply(reply: Any) -> LicensingError:
    """The :class:`LicensingError` an ``{"ok": false, "error": {...}}`` reply stands for."""
    error = reply.get("error") if isinstance(reply, dict) else None
    if not isinstance(error, dict):
        return LicensingError(
            ErrorCode.BAD_RESPONSE, f"the agent answered without ok=true and without an error: {reply!r:.200}"
        )
    message = str(error.get("message", "")) or "(no message)"
    try:
        code = ErrorCode(str(error.get("code")))
    except ValueError:
        return LicensingError(
            ErrorCode.BAD_RESPONSE, f"the agent answered with unknown error code {error.get('code')!r}: {message}"
        )
    return LicensingError(code, message)


def status_document(message: Any) -> dict[str, Any] | None:
    """The status document in a ``$license/status`` message (bare, or wrapped as ``{"status": {...}}``)."""
    if not isinstance(message, dict):
        return None
    inner = message.get("status")
    if "state" not in message and isinstance(inner, dict):
        return inner
    return message


class LicenseClient:
    """A blocking request/reply client for the ``$license`` topics; use it as a context manager."""

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
        self._password = password

        self._lock = threading.Lock()
        self._acks = threading.Condition(self._lock)
        self._connack: Any = None  # ReasonCode once CONNACK arrived
        self._connected = False
        self._lost: LicensingError | None = None
        self._subacks: dict[int, list[Any]] = {}
        self._pending: dict[str, queue.Queue[Any]] = {}
        self._streams: dict[str, list[queue.Queue[Any]]] = {}
        self._request_lock = threading.Lock()  # one request in flight per client keeps uncorrelated errors routable

        self._mqtt = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            clean_session=True,
            protocol=mqtt.MQTTv311,
            reconnect_on_failure=False,
        )
        if username is not None:
            self._mqtt.username_pw_set(username, password)
        self._mqtt.connect_timeout = self.timeout
        self._mqtt.on_connect = self._on_connect
        self._mqtt.on_disconnect = self._on_disconnect
        self._mqtt.on_subscribe = self._on_subscribe
        self._mqtt.on_message = self._on_message
        self._started = False

    # -- lifecycle ---------------------------------------------------------------------------

    def __enter__(self) -> LicenseClient:
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

    # -- requests ----------------------------------------------------------------------------

    def request(
        self,
        operation: str,
        fields: dict[str, Any] | None = None,
        *,
        timeout: float | None = None,
        on_progress: Callable[[dict[str, Any]], object] | None = None,
    ) -> dict[str, Any]:
        """Publish one request and return the ``ok: true`` reply; raise :class:`LicensingError` otherwise.

        With ``on_progress``, the agent's ``waiting_for_server`` events for this request (on
        ``$license/events``, which admins and readers may read) are passed to it, and the wait is
        stretched to outlast the agent's own HTTP timeout: a slow server is then reported by the
        agent as a slow server instead of this client giving up first."""
        if on_progress is None:
            return self._request(operation, fields, timeout, None)
        inbox: queue.Queue[Any] = queue.Queue()
        with self._lock:
            self._check_connected()
            first = EVENTS_TOPIC not in self._streams
            self._streams.setdefault(EVENTS_TOPIC, []).append(inbox)
        try:
            if first:
                try:
                    self._subscribe(EVENTS_TOPIC, time.monotonic() + self.timeout)
                except LicensingError as exc:
                    if exc.code is not ErrorCode.NOT_AUTHORIZED:
                        raise  # a client that may not read events just waits without progress
            return self._request(operation, fields, timeout, (inbox, on_progress))
        finally:
            with self._lock:
                listeners = self._streams.get(EVENTS_TOPIC, [])
                if inbox in listeners:
                    listeners.remove(inbox)
                if EVENTS_TOPIC in self._streams and not listeners:
                    del self._streams[EVENTS_TOPIC]

    def _request(
        self,
        operation: str,
        fields: dict[str, Any] | None,
        timeout: float | None,
        progress: tuple[queue.Queue[Any], Callable[[dict[str, Any]], object]] | None,
    ) -> dict[str, Any]:
        topic = operation_topic(operation)
        body: dict[str, Any] = dict(fields or {})
        correlation_id = uuid.uuid4().hex
        body["correlation_id"] = correlation_id
        body["reply_to"] = self.reply_topic
        payload = json.dumps(body, separators=(",", ":")).encode()
        wait = self.timeout if timeout is None else float(timeout)
        inbox: queue.Queue[Any] = queue.Queue()
        with self._request_lock:
            with self._lock:
                self._check_connected()
                self._pending[correlation_id] = inbox
            try:
                info = self._mqtt.publish(topic, payload, qos=1)
                if info.rc != mqtt.MQTT_ERR_SUCCESS:
                    raise LicensingError(
                        ErrorCode.SERVER_UNREACHABLE, f"could not publish to {topic}: {mqtt.error_string(info.rc)}"
                    )
                reply = self._await_reply(inbox, wait, operation, correlation_id, progress)
            finally:
                with self._lock:
                    self._pending.pop(correlation_id, None)
        if not isinstance(reply, dict) or reply.get("ok") is not True:
            raise error_from_reply(reply)
        return reply

    def status(self, *, timeout: float | None = None) -> dict[str, Any]:
        """The current status document, asked for with a ``$license/status`` request."""
        reply = self.request("status", timeout=timeout)
        doc = reply.get("status")
        return doc if isinstance(doc, dict) else {}

    def recent_events(self, since: float | None = None, *, timeout: float | None = None) -> list[dict[str, Any]]:
        """The events the agent kept from the last ``since`` seconds (``$license/events/recent``)."""
        fields = {} if since is None else {"since": since}
        events = self.request("events_recent", fields, timeout=timeout).get("events")
        return [e for e in events if isinstance(e, dict)] if isinstance(events, list) else []

    # -- streams -----------------------------------------------------------------------------

    def status_updates(
        self, stop_event: threading.Event | None = None, *, idle_timeout: float | None = None
    ) -> Iterator[dict[str, Any]]:
        """Yield the retained status document, then each new one, until ``stop_event`` is set.

        Stops quietly after ``idle_timeout`` seconds without a message (if given);
        raises ``server_unreachable`` if the connection is lost.
        """
        for message in self._stream(STATUS_TOPIC, stop_event, idle_timeout):
            doc = status_document(message)
            if doc is not None:
                yield doc

    def watch_status(
        self,
        callback: Callable[[dict[str, Any]], object],
        stop_event: threading.Event,
        *,
        idle_timeout: float | None = None,
    ) -> None:
        """Call ``callback(doc)`` for the retained status and every change, until ``stop_event`` is set."""
        for doc in self.status_updates(stop_event, idle_timeout=idle_timeout):
            callback(doc)

    def events(
        self, stop_event: threading.Event | None = None, *, idle_timeout: float | None = None
    ) -> Iterator[dict[str, Any]]:
        """Yield each ``$license/events`` message (a dict) from now on, until ``stop_event`` is set."""
        for message in self._stream(EVENTS_TOPIC, stop_event, idle_timeout):
            if isinstance(message, dict):
                yield message

    def _stream(self, topic: str, stop_event: threading.Event | None, idle_timeout: float | None) -> Iterator[Any]:
        inbox: queue.Queue[Any] = queue.Queue()
        with self._lock:
            self._check_connected()
            first = topic not in self._streams
            self._streams.setdefault(topic, []).append(inbox)
        try:
            if first:
                self._subscribe(topic, time.monotonic() + self.timeout)
            last = time.monotonic()
            while stop_event is None or not stop_event.is_set():
                try:
                    item = inbox.get(timeout=_POLL)
                except queue.Empty:
                    if idle_timeout is not None and time.monotonic() - last >= idle_timeout:
                        return
                    continue
                if isinstance(item, _ConnectionLost):
                    raise item.error
                last = time.monotonic()
                yield item
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

    # -- internals ---------------------------------------------------------------------------

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

    def _await_reply(
        self,
        inbox: queue.Queue[Any],
        wait: float,
        operation: str,
        correlation_id: str,
        progress: tuple[queue.Queue[Any], Callable[[dict[str, Any]], object]] | None,
    ) -> Any:
        started = time.monotonic()
        deadline = started + wait
        waited_for: str | None = None
        while True:
            if progress is not None:
                events, on_progress = progress
                while not events.empty():
                    event = events.get_nowait()
                    if isinstance(event, _ConnectionLost):
                        raise event.error
                    if (
                        isinstance(event, dict)
                        and event.get("type") == "waiting_for_server"
                        and event.get("correlation_id") == correlation_id
                    ):
                        on_progress(event)
                        waited_for = str(event.get("server"))
                        agent_wait = event.get("timeout")
                        if isinstance(agent_wait, int | float) and 0 < agent_wait < 3600:
                            # the agent answers at the latest when its own HTTP timeout ends
                            deadline = max(deadline, time.monotonic() + agent_wait + _AFTER_AGENT_TIMEOUT)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                if waited_for:
                    why = f"the agent was still waiting for {waited_for}"
                else:
                    why = f"is the licensing agent running in the broker at {self.where}?"
                waited = round(deadline - started, 1)
                raise LicensingError(
                    ErrorCode.SERVER_UNREACHABLE,
                    f"timed out after {waited:g} s waiting for a reply to {operation!r} on {self.reply_topic} ({why})",
                )
            try:
                item = inbox.get(timeout=min(remaining, _POLL))
            except queue.Empty:
                continue
            if isinstance(item, _ConnectionLost):
                raise item.error
            return item

    def _fail_waiters(self, error: LicensingError) -> None:
        with self._acks:
            if self._lost is None:
                self._lost = error
            self._connected = False
            inboxes = list(self._pending.values()) + [q for qs in self._streams.values() for q in qs]
            self._acks.notify_all()
        for inbox in inboxes:
            inbox.put(_ConnectionLost(error))

    # paho callbacks (network thread) ---------------------------------------------------------

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
