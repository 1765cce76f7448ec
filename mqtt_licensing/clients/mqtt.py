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

The connection itself (paho, its thread, SUBACK waits, inboxes) is :mod:`.mqtt_connection`;
topic names and payload decoding are :mod:`.wire`.
"""

from __future__ import annotations

import queue
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

from ..core.errors import ErrorCode, LicensingError
from ..core.protocol import EVENTS_TOPIC, STATUS_TOPIC
from .mqtt_connection import DEFAULT_HOST, DEFAULT_PORT, DEFAULT_TIMEOUT, MqttConnection, take
from .tls import ClientTls
from .wire import encode_request, error_from_reply, is_progress_for, operation_topic, status_document

__all__ = ["DEFAULT_HOST", "DEFAULT_PORT", "DEFAULT_TIMEOUT", "ClientTls", "LicenseClient"]

_POLL = 0.25  # how often blocking waits wake up (keeps Ctrl-C responsive)
_AFTER_AGENT_TIMEOUT = 5.0  # how long past the agent's HTTP timeout its reply may take to arrive

ProgressCallback = Callable[[dict[str, Any]], object]


class LicenseClient(MqttConnection):
    """A blocking request/reply client for the ``$license`` topics; use it as a context manager."""

    # -- requests ----------------------------------------------------------------------------

    def request(
        self,
        operation: str,
        fields: dict[str, Any] | None = None,
        *,
        timeout: float | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> dict[str, Any]:
        """Publish one request and return the ``ok: true`` reply; raise :class:`LicensingError` otherwise.

        With ``on_progress``, the agent's ``waiting_for_server`` events for this request (on
        ``$license/events``, which admins and readers may read) are passed to it, and the wait is
        stretched to outlast the agent's own HTTP timeout: a slow server is then reported by the
        agent as a slow server instead of this client giving up first."""
        if on_progress is None:
            return self._request(operation, fields, timeout, None)
        # a client that may not read events just waits without progress
        with self._listening(EVENTS_TOPIC, refusal_ok=True) as events:
            return self._request(operation, fields, timeout, (events, on_progress))

    def _request(
        self,
        operation: str,
        fields: dict[str, Any] | None,
        timeout: float | None,
        progress: tuple[queue.Queue[Any], ProgressCallback] | None,
    ) -> dict[str, Any]:
        topic = operation_topic(operation)
        correlation_id = uuid.uuid4().hex
        payload = encode_request(fields, correlation_id, self.reply_topic)
        wait = self.timeout if timeout is None else float(timeout)
        with self._awaiting_reply(correlation_id) as inbox:
            self._publish(topic, payload)
            reply = self._await_reply(inbox, wait, operation, correlation_id, progress)
        if not isinstance(reply, dict) or reply.get("ok") is not True:
            raise error_from_reply(reply)
        return reply

    def _await_reply(
        self,
        inbox: queue.Queue[Any],
        wait: float,
        operation: str,
        correlation_id: str,
        progress: tuple[queue.Queue[Any], ProgressCallback] | None,
    ) -> Any:
        started = time.monotonic()
        deadline = started + wait
        waited_for: str | None = None
        while True:
            if progress is not None:
                events, on_progress = progress
                while not events.empty():
                    event = take(events, 0)
                    if is_progress_for(event, correlation_id):
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
                return take(inbox, min(remaining, _POLL))
            except queue.Empty:
                continue

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
        callback: ProgressCallback,
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
        with self._listening(topic) as inbox:
            last = time.monotonic()
            while stop_event is None or not stop_event.is_set():
                try:
                    item = take(inbox, _POLL)
                except queue.Empty:
                    if idle_timeout is not None and time.monotonic() - last >= idle_timeout:
                        return
                    continue
                last = time.monotonic()
                yield item
