"""Patch 11 of :mod:`.patches`: counting what amqtt delivers to a metered connection.

amqtt has no delivery event. Every PUBLISH the broker sends a client (broadcasts, retained
messages, queued ones) goes through ``BrokerProtocolHandler.mqtt_publish``, so wrapping that
method on the handlers of metered clients - and on no others - counts exactly what they
were sent. A PUBLISH counts when it is handed to the connection, at every QoS, before amqtt
waits for the acknowledgement: a client that never sends PUBACK (or whose QoS 0 delivery races
the count) has the payload all the same. Connections of other classes keep amqtt's method
untouched and pay nothing.
"""

from __future__ import annotations

import weakref
from typing import Any, Protocol

from amqtt.mqtt.protocol.broker_handler import BrokerProtocolHandler


class DeliveryMeter(Protocol):
    """The open interval the counts go into (:class:`mqtt_licensing.agent.metering.Meter`)."""

    messages: int
    bytes: int


def count_deliveries(handler: BrokerProtocolHandler, meter: DeliveryMeter) -> None:
    # The handler through a weak reference: a closure holding it, stored on it, would be a cycle
    # that only the garbage collector frees (the caller of handler.mqtt_publish holds it anyway).
    send, ref = type(handler).mqtt_publish, weakref.ref(handler)

    async def counted(
        topic: str, data: bytes | bytearray, qos: int | None, retain: bool, ack_timeout: int | None = None
    ) -> Any:
        if topic[:1] != "$":  # the broker's own $license/... messages are not the client's usage
            meter.messages += 1
            meter.bytes += len(data)
        return await send(ref(), topic, data, qos, retain, ack_timeout)

    handler.mqtt_publish = counted
