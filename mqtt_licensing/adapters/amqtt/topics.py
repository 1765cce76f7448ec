"""Patches 6, 7 and 8 (the index is :mod:`.patches`): what reaches ``$`` topics, and who pays
for topics the agent never restricts.

6. ``_broadcast_message`` and ``retain_message``: nothing a client causes (a will, in
   amqtt the only path left) is published or retained on a ``$`` topic: only the
   broker itself (the agent) publishes there. test_wills.py
7. ``_publish_retained_messages_for_subscription``: on every CONNECT amqtt sends the
   retained messages of *every* filter anybody subscribed to, with no ACL check.
   test_amqtt_patches.py::test_retained_status_*
8. ``_topic_filtering`` plus ``plugins_manager._topic_plugins``: a fast path for topics
   the agent never restricts (see the method). Performance only: benchmarks/.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING, Any

from amqtt.broker import Broker
from amqtt.contexts import Action
from amqtt.session import Session

from ...core.protocol import is_license_topic

if TYPE_CHECKING:
    from .patches import ConnectionHooks

log = logging.getLogger(__name__)


class ReservedTopics:
    """Wraps four ``Broker`` methods of one broker instance; ``connection_of`` maps a session to
    the connection (protocol handler) that holds it now, as :class:`.patches.BrokerPatches` knows it."""

    def __init__(self, broker: Broker, hooks: ConnectionHooks, connection_of: Callable[[Session], Hashable]) -> None:
        self._broker = broker
        self._hooks = hooks
        self.connection_of = connection_of

    def install(self) -> None:
        b = self._broker
        self._orig_broadcast = b._broadcast_message  # noqa: SLF001
        self._orig_retain = b.retain_message
        self._orig_retained_for_sub = b._publish_retained_messages_for_subscription  # noqa: SLF001
        self._orig_topic_filtering = b._topic_filtering  # noqa: SLF001
        b._broadcast_message = self._broadcast_message  # noqa: SLF001
        b.retain_message = self._retain_message
        b._publish_retained_messages_for_subscription = self._retained_for_subscription  # noqa: SLF001
        b._topic_filtering = self._topic_filtering  # noqa: SLF001

    # -- 6: only the broker publishes on $ topics -----------------------------------------

    async def _broadcast_message(
        self, session: Session | None, topic: str | None, data: Any, force_qos: int | None = None
    ) -> None:
        if session is not None and topic and topic[0] == "$":
            log.warning(
                "dropped a message from client %r to %r: only the broker publishes there", session.client_id, topic
            )
            return
        await self._orig_broadcast(session, topic, data, force_qos)

    async def _retain_message(
        self, source_session: Session | None, topic_name: str | None, data: Any, qos: int | None = None
    ) -> None:
        if source_session is not None and topic_name and topic_name[0] == "$":
            return  # logged by _broadcast_message, which amqtt calls for the same message
        await self._orig_retain(source_session, topic_name, data, qos)

    # -- 7: retained messages only to subscribers allowed to read them --------------------

    async def _retained_for_subscription(self, subscription: tuple[str, int], session: Session) -> None:
        topic_filter = subscription[0]
        subscribers = self._broker.subscriptions.get(topic_filter, [])
        if not any(subscriber is session for subscriber, _qos in subscribers):
            return  # not this client's subscription: amqtt would leak it to every new connection
        if is_license_topic(topic_filter) and not self._hooks.may_get_retained(
            self.connection_of(session), topic_filter
        ):
            return  # e.g. a persistent session now connected by a user who may not read it
        await self._orig_retained_for_sub(subscription, session)

    # -- 8: per-message cost ---------------------------------------------------------------

    async def _topic_filtering(self, session: Session, topic: str, action: Action) -> bool:
        """amqtt asks every topic plugin about every PUBLISH and again about every delivery
        (RECEIVE), each time through ``PluginManager._map_plugin_method``, which wraps each
        call in a new Task plus a gather: measured ~+35% broker CPU per QoS 0 message and
        ~+75% per QoS 1 message over bare amqtt (docs/benchmarks.md). The agent rules only
        on ``$license/...``; for a topic not starting with ``$`` its answer is always True.
        So when the licensing plugin is the only topic plugin, such topics are allowed here
        without the round trip; ``$`` topics, and every topic when other topic plugins are
        configured, still go through amqtt's own path.
        """
        # Read at call time: the plugin manager is still being built while the plugin is.
        topic_plugins = self._broker.plugins_manager._topic_plugins  # noqa: SLF001
        if (
            session is not None
            and topic
            and topic[0] != "$"
            and len(topic_plugins) == 1
            and topic_plugins[0] is self._hooks
            and (action == Action.RECEIVE or not self._hooks.confined(self.connection_of(session)))
        ):
            return True
        result: bool = await self._orig_topic_filtering(session, topic, action)
        return result
