"""Who may connect, and what each connection may subscribe to, publish and receive.

Authentication (hashed admins and users, see :mod:`.credentials`), the CONNECT gate, the count
of admitted connections, which connection holds each client id, the ``$license/*`` topic rights,
the admin policy (admins manage the license, they do not switch it off: a few at a time, and
while the license does not serve they may use ``$license/...`` only), and disconnecting clients
when the license stops serving (``enforce_existing``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from ..core import protocol
from ..core.gate import Decision, Refusal, connection_ceiling, decide, must_disconnect_existing
from ..core.state import Evaluation
from .config import AgentConfig
from .connections import ConnectionTracker
from .credentials import Credentials
from .flood import Coalescer
from .refusals import RefusalLog

log = logging.getLogger(__name__)

_SHOWN = 256  # characters of a refused client id or username kept in its event (a stranger's text)


class Transport(Protocol):
    """What the agent needs from a broker adapter."""

    async def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> None: ...

    async def disconnect(self, conn: Hashable) -> None: ...


class Role(StrEnum):
    ADMIN = "admin"  # may send license requests; never counted, never refused for the license
    READER = "reader"  # may read $license/status and events
    USER = "user"


@dataclass(frozen=True)
class Client:
    """What the agent remembers of an admitted connection."""

    client_id: str
    username: str | None
    role: Role
    needs: frozenset[str]  # the features its class requires (AgentConfig.required_features), read once

    @property
    def may_read_status(self) -> bool:
        return self.role in (Role.ADMIN, Role.READER)


class Access:
    def __init__(
        self,
        config: AgentConfig,
        *,
        now: Callable[[], int],
        evaluation: Callable[[int], Evaluation],
        emit: Callable[..., None],
        users: Mapping[str, str] | None = None,
    ) -> None:
        self.config = config
        self._now = now
        self._evaluation = evaluation  # the current evaluation, refreshed first when its deadline passed
        self._emit = emit
        self.tracker = ConnectionTracker()
        self.refusal_log = RefusalLog(log)  # once per client and reason, flood-suppressed
        self.clients: dict[Hashable, Client] = {}
        # client id -> the connection most recently admitted with it. amqtt lets a second
        # connection (clean session) take a live client id without closing the first; replies
        # to that id belong to the newest connection alone, and the older one is answered no more.
        self.holders: dict[str, Hashable] = {}
        self.credentials = Credentials({**(config.user_hashes() if users is None else users), **config.admins})
        self._confined_logged: set[Hashable] = set()  # admin connections told once why a topic was refused
        # Counted connections whose client id a newer CONNECT took: the adapter is closing them
        # (MQTT take-over), so they no longer hold a seat. A reconnect takes its own place.
        # If the newer connection goes first (refused after all), the older one counts again.
        self._replaced: dict[Hashable, Hashable] = {}  # older connection -> the one replacing it
        self._refusals = Coalescer()  # a refusal flood is announced once a minute per reason and name
        self._overage = Coalescer()  # admissions past the cap: one connection_overage event a minute

    async def admit(
        self,
        conn: Hashable,
        *,
        client_id: str,
        username: str | None,
        password: str | None,
        peer: str | None = None,
    ) -> Decision:
        """Authenticate and gate one CONNECT. Only a username with a password costs a hash check
        (the first time: see :mod:`.credentials`); ``peer`` is the source address, for backoff."""
        if username is None:  # anonymous: no credential to check, no await (see _authenticate)
            role = Role.USER if self.config.allow_anonymous else None
        else:
            role = await self._authenticate(username, password, peer)
        now = self._now()
        if role is None:
            decision = Decision(False, Refusal.BAD_CREDENTIALS, "unknown user or wrong password")
            self._refused(client_id, username, decision, now)
            return decision
        # From here to the reservation there is no await: racing CONNECTs see each other.
        if role is Role.ADMIN and self.tracker.admin_count() >= self.config.max_admin_connections:
            decision = Decision(
                False,
                Refusal.ADMIN_LIMIT,
                f"{self.config.max_admin_connections} admin connections are open (max_admin_connections)",
            )
            self._refused(client_id, username, decision, now)
            return decision
        if role is Role.READER and self.tracker.admin_count(readers=True) >= self.config.max_reader_connections:
            decision = Decision(
                False,
                Refusal.READER_LIMIT,
                f"{self.config.max_reader_connections} reader connections are open (max_reader_connections)",
            )
            self._refused(client_id, username, decision, now)
            return decision
        previous = self.holders.get(client_id)
        replacing = (
            previous is not None
            and previous != conn
            and self.tracker.counts(previous)
            and previous not in self._replaced
        )
        current = self.connection_count(now) - (1 if replacing else 0)
        needs = self.config.required_features(username, client_id)
        # Readers (dashboards) are let in like admins, licensed or not, to see why nothing connects;
        # they never take a licensed seat, so they may use $license/... topics only (confined()).
        decision = decide(
            self._evaluation(now),
            is_admin=role is not Role.USER,
            required_features=needs,
            current_connections=current,
        )
        if not decision.allowed:
            self._refused(client_id, username, decision, now)
            return decision
        self.tracker.reserve(conn, admin=role is not Role.USER, now=now, reader=role is Role.READER)
        if replacing:
            self._replaced[previous] = conn
        self.clients[conn] = Client(client_id, username, role, needs)
        self.holders[client_id] = conn
        if decision.over_cap:
            self._over_cap(client_id, username, current + 1, now)
        return decision

    def register(self, conn: Hashable, *, client_id: str, username: str | None, role: Role) -> None:
        """Count a connection the broker admitted itself, from a snapshot of these rules (a broker
        plugin that cannot wait for the agent on its network thread)."""
        previous = self.holders.get(client_id)
        if (
            previous is not None
            and previous != conn
            and self.tracker.counts(previous)
            and previous not in self._replaced
        ):
            self._replaced[previous] = conn
        # as admit() counts them: admins and readers hold no licensed seat
        self.tracker.reserve(conn, admin=role is not Role.USER, now=self._now(), reader=role is Role.READER)
        self.clients[conn] = Client(client_id, username, role, self.config.required_features(username, client_id))
        self.holders[client_id] = conn

    def refused_elsewhere(self, client_id: str, username: str | None, refusal: Refusal, message: str) -> None:
        """Log and announce a CONNECT the broker refused itself (see :meth:`register`)."""
        self._refused(client_id, username, Decision(False, refusal, message), self._now())

    def _over_cap(self, client_id: str, username: str | None, connections: int, now: int) -> None:
        count = self._overage.hit("", now)
        if count is None:
            return  # counted, announced with the next one after the minute
        evaluation = self._evaluation(now)
        log.warning(
            "client %r admitted past the licensed connection limit (%s of %s, overage allows %s)",
            client_id,
            connections,
            evaluation.max_connections,
            connection_ceiling(evaluation),
        )
        self._emit(
            "connection_overage",
            client_id=client_id,
            username=username,
            connections=connections,
            max_connections=evaluation.max_connections,
            allowed=connection_ceiling(evaluation),
            count=count,
        )

    def holds(self, conn: Hashable) -> bool:
        return self.tracker.holds(conn)

    def connection_count(self, now: int) -> int:
        """Connections counted against the license's limit (admins and replaced ones are not)."""
        count = self.tracker.non_admin_count(now)
        if self._replaced:
            self._replaced = {c: n for c, n in self._replaced.items() if self.tracker.counts(c)}  # expired ones
        return count - len(self._replaced)

    def connected(self, conn: Hashable) -> None:
        self.tracker.confirm(conn)

    def disconnected(self, conn: Hashable) -> None:
        self.tracker.release(conn)
        if not self.tracker.holds(conn):
            self._confined_logged.discard(conn)
            if self._replaced:  # a take-over in progress (rare): forget this connection's part in it
                self._replaced.pop(conn, None)
                for older in [c for c, newer in self._replaced.items() if newer == conn]:
                    del self._replaced[older]
            client = self.clients.pop(conn, None)
            if client is not None and self.holders.get(client.client_id) == conn:
                del self.holders[client.client_id]

    def confined(self, conn: Hashable) -> bool:
        """True for an admin connection while the license does not serve, and for a reader always:
        it may use only ``$license/...``, never carry the plant's traffic without a licensed seat."""
        client = self.clients.get(conn)
        if client is not None and client.role is Role.READER:
            return True  # a dashboard: never the plant's traffic, it holds no licensed seat
        if client is None or client.role is not Role.ADMIN or self._evaluation(self._now()).serving:
            return False
        if conn not in self._confined_logged:
            self._confined_logged.add(conn)
            log.warning(
                "admin %r (client id %r): license not serving, so only $license/... topics are allowed "
                "(other publishes dropped, subscriptions refused)",
                client.username,
                client.client_id,
            )
        return True

    def may_publish(self, conn: Hashable, topic: str) -> bool:
        return topic.startswith(protocol.PREFIX) or not self.confined(conn)

    def may_subscribe(self, conn: Hashable, topic_filter: str) -> bool:
        if not topic_filter.startswith(protocol.PREFIX):
            return not self.confined(conn)
        client = self.clients.get(conn)
        if client is None or (
            topic_filter.startswith(protocol.REPLY_ROOT + "/") and self.holders.get(client.client_id) != conn
        ):
            return False  # not the connection that now holds this client id
        return protocol.subscription_allowed(topic_filter, client.client_id, may_read_status=client.may_read_status)

    def may_receive(self, conn: Hashable, topic: str, client_id: str) -> bool:
        if not topic.startswith(protocol.PREFIX):
            return True
        holder = self.holders.get(client_id)
        if holder is not None and holder != conn and topic.startswith(protocol.REPLY_ROOT + "/"):
            return False  # another live connection holds this client id now: the replies are its own
        client = self.clients.get(conn)
        return protocol.delivery_allowed(
            topic, client_id, may_read_status=client is not None and client.may_read_status
        )

    def requester_gone(self, conn: Hashable, client: Client | None) -> bool:
        """Would a reply now reach someone else than the requester? True when another connection
        has since taken its client id, or its persistent session is now held by another principal."""
        if client is None:
            return False
        holder = self.holders.get(client.client_id)
        current = self.clients.get(conn)
        lost = (holder is not None and holder != conn) or (
            current is not None and (current.username, current.role) != (client.username, client.role)
        )
        if lost:
            log.warning("reply for client id %r dropped: the connection that asked is gone", client.client_id)
        return lost

    async def enforce_existing(self, evaluation: Evaluation, transport: Transport | None) -> None:
        if not must_disconnect_existing(evaluation, self.config.enforce_existing):
            return
        keys = self.tracker.non_admin_keys()
        if not keys or transport is None:
            return
        log.warning(
            "license not serving (%s): disconnecting %d client(s) (enforce_existing)", evaluation.state, len(keys)
        )
        for key in keys:
            client = self.clients.get(key)
            self._emit(
                "client_disconnected",
                client_id=client.client_id if client else None,
                reason=str(Refusal.NOT_LICENSED),
                state=str(evaluation.state),
            )
            await transport.disconnect(key)
            self.tracker.release(key)  # never kick the same socket twice, even if the broker is slow

    async def may_read(self, username: str, password: str, peer: str | None) -> bool:
        """An admin's or a reader's login, checked as a CONNECT's is (cache, backoff): for /metrics."""
        return await self._authenticate(username, password, peer) in (Role.ADMIN, Role.READER)

    async def _authenticate(self, username: str | None, password: str | None, peer: str | None) -> Role | None:
        if username is not None and (password is not None or self.credentials.knows(username)):
            # An unknown name with a password is checked too (against a dummy hash, same cost)
            # and refused: a mistyped admin must not get in as anonymous, nor learn which names exist.
            if not await self.credentials.check(username, password or "", peer):
                return None
            if username in self.config.admins:
                return Role.ADMIN
            return Role.READER if username in self.config.readers else Role.USER
        # Readers always have a password (config validation), so anyone else here is a plain user.
        return Role.USER if self.config.allow_anonymous else None

    def close(self) -> None:
        self.credentials.close()

    def _refused(self, client_id: str, username: str | None, decision: Decision, now: int) -> None:
        self.refusal_log.refused(client_id, username, str(decision.refusal), decision.message)
        # Every kind of refusal is announced once a minute per (reason, username): a fleet refused
        # for the license, or a flood of anonymous CONNECTs, is one event with a count, not 500.
        count = self._refusals.hit(f"{decision.refusal}\0{username or ''}", now)
        if count is None:
            return  # counted, announced with the next one after the minute
        self._emit(
            "connection_refused",
            client_id=client_id[:_SHOWN],
            username=username[:_SHOWN] if username is not None else None,
            reason=str(decision.refusal),
            message=decision.message,
            state=str(self._evaluation(now).state),
            count=count,
        )


__all__ = ["Access", "Client", "Role", "Transport"]
