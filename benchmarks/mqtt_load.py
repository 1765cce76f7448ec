"""MQTT load against one broker port: CONNECT cycles, publish throughput, request
round trips and idle connections. Broker-agnostic: the same code loads bare amqtt,
amqtt with the agent and Mosquitto, so only the broker differs between subject
and baseline.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time

from .mqtt_wire import Connection, connect_cycle

PAYLOAD = b"x" * 64  # a typical small telemetry message


async def connect_rate(
    port: int, *, duration: float, workers: int, prefix: str, login: tuple[str, str] | None = None
) -> tuple[float, int]:
    """(cycles per second, cycles) of CONNECT -> CONNACK -> DISCONNECT with ``workers`` clients in parallel.

    Each worker reuses one client id (as a reconnecting device does), so the broker's
    session table stays the same size whatever the duration. Any refused CONNECT
    fails the benchmark: a rate of refusals is not a rate of connections. ``login``: every
    CONNECT carries this (username, password).
    """
    deadline = time.perf_counter() + duration
    done = 0

    async def worker(n: int) -> None:
        nonlocal done
        client_id = f"{prefix}-{n}"
        while time.perf_counter() < deadline:
            code = await connect_cycle(port, client_id, login=login)
            if code != 0:
                raise RuntimeError(f"CONNECT refused with return code {code} on port {port}")
            done += 1

    start = time.perf_counter()
    await asyncio.gather(*(worker(n) for n in range(workers)))
    return done / (time.perf_counter() - start), done


class PubSub:
    """A publisher and a subscriber on one topic, kept connected across rounds.

    The publisher keeps at most ``window`` messages in flight end to end (published
    but not yet received by the subscriber). That measures what the broker
    delivers, with a bounded queue inside it, instead of how fast a client can fill
    the broker's memory.
    """

    def __init__(self, port: int, qos: int, *, name: str, window: int = 200) -> None:
        self.port, self.qos, self.name, self.window = port, qos, name, window
        self.topic = f"bench/{name}/q{qos}"
        self.sent = self.received = 0
        self._progress = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    async def open(self) -> PubSub:
        self.sub = await Connection.open(self.port, f"{self.name}-sub-q{self.qos}")
        self.pub = await Connection.open(self.port, f"{self.name}-pub-q{self.qos}")
        self.sub.on_message = self._on_message
        self._tasks = [asyncio.create_task(c.run()) for c in (self.sub, self.pub)]
        await self.sub.subscribe(self.topic, self.qos)
        return self

    def _on_message(self, _topic: str, _payload: bytes) -> None:
        self.received += 1
        self._progress.set()

    async def _wait_progress(self, timeout: float) -> None:
        self._progress.clear()
        await asyncio.wait_for(self._progress.wait(), timeout)

    async def throughput(self, duration: float) -> tuple[float, int]:
        """(messages per second received by the subscriber, messages sent in this call)."""
        await self.drain()
        first, sent_before = self.received, self.sent
        start = time.perf_counter()
        deadline = start + duration
        packet_id = 0
        while time.perf_counter() < deadline:
            while self.sent - self.received < self.window:
                packet_id = packet_id % 65535 + 1
                self.pub.publish(self.topic, PAYLOAD, self.qos, packet_id)
                self.sent += 1
            await self.pub.writer.drain()
            await self._wait_progress(10.0)
        rate = (self.received - first) / (time.perf_counter() - start)
        await self.drain()
        return rate, self.sent - sent_before

    async def drain(self, timeout: float = 30.0) -> None:
        """Wait until every message published so far has arrived (none may be lost)."""
        deadline = time.perf_counter() + timeout
        while self.received < self.sent:
            if time.perf_counter() > deadline:
                raise RuntimeError(
                    f"{self.sent - self.received} of {self.sent} messages never arrived "
                    f"(port {self.port}, QoS {self.qos})"
                )
            try:
                await self._wait_progress(deadline - time.perf_counter())
            except TimeoutError:
                pass

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.pub.close()
        await self.sub.close()


class RoundTrip:
    """Sequential request -> reply round trips; ``measure`` returns the median in milliseconds.

    Two flavours over the same broker:

    * ``license_status``: an admin publishes ``$license/status`` and waits for the
      agent's reply on ``$license/reply/<client_id>``;
    * ``echo``: a client publishes to a topic, a second client echoes each message
      back on another topic - the cheapest request/reply an MQTT application has.
    """

    def __init__(
        self, port: int, request_topic: str, reply_topic: str, requester: Connection, helpers: list[Connection]
    ) -> None:
        self.port = port
        self.request_topic, self.reply_topic = request_topic, reply_topic
        self.requester = requester
        self._connections = [requester, *helpers]
        self._tasks = [asyncio.create_task(c.run()) for c in self._connections]
        self._reply: asyncio.Future[bytes] | None = None
        requester.on_message = self._on_reply

    @classmethod
    async def license_status(cls, port: int, *, username: str, password: str) -> RoundTrip:
        client_id = "bench-operator"
        conn = await Connection.open(port, client_id, username=username, password=password)
        trip = cls(port, "$license/status", f"$license/reply/{client_id}", conn, [])
        await conn.subscribe(trip.reply_topic, 0)
        return trip

    @classmethod
    async def echo(cls, port: int) -> RoundTrip:
        requester = await Connection.open(port, "bench-echo-requester")
        echoer = await Connection.open(port, "bench-echo-server")
        trip = cls(port, "bench/echo/request", "bench/echo/reply", requester, [echoer])
        echoer.on_message = lambda _topic, payload: echoer.publish(trip.reply_topic, payload)
        await echoer.subscribe(trip.request_topic, 0)
        await requester.subscribe(trip.reply_topic, 0)
        return trip

    def _on_reply(self, _topic: str, payload: bytes) -> None:
        if self._reply is not None and not self._reply.done():
            self._reply.set_result(payload)

    async def once(self, n: int) -> float:
        body = json.dumps({"correlation_id": n}).encode()
        self._reply = asyncio.get_running_loop().create_future()
        start = time.perf_counter()
        self.requester.publish(self.request_topic, body)
        reply = await asyncio.wait_for(self._reply, 10.0)
        elapsed = time.perf_counter() - start
        if f'"correlation_id": {n}'.encode() not in reply and f'"correlation_id":{n}'.encode() not in reply:
            raise RuntimeError(f"unexpected reply on {self.reply_topic}: {reply[:200]!r}")
        return elapsed

    async def measure(self, duration: float) -> float:
        deadline = time.perf_counter() + duration
        samples: list[float] = []
        n = 0
        while time.perf_counter() < deadline or len(samples) < 5:
            n += 1
            samples.append(await self.once(n))
        return statistics.median(samples) * 1000

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for conn in self._connections:
            await conn.close()


async def open_idle(port: int, count: int, *, prefix: str, parallel: int = 16) -> list[Connection]:
    """``count`` connected clients that then stay silent (keepalive 0)."""
    gate = asyncio.Semaphore(parallel)

    async def one(n: int) -> Connection:
        async with gate:
            return await Connection.open(port, f"{prefix}-{n}", timeout=30.0)

    return list(await asyncio.gather(*(one(n) for n in range(count))))


async def close_all(connections: list[Connection]) -> None:
    await asyncio.gather(*(c.close() for c in connections))
