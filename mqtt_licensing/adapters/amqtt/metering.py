"""Patch 11 of :mod:`.patches`: counting what amqtt delivers to a metered connection.

amqtt has no delivery event. Every PUBLISH the broker sends a client (broadcasts, retained
messages, queued ones) goes through ``BrokerProtocolHandler.mqtt_publish``, so wrapping that
method on the handlers of metered clients - and on no others - counts exactly what they
were sent, after the send (QoS 0) or the acknowledgement (QoS 1/2): a delivery that fails is
not counted. Connections of other classes keep amqtt's method untouched and pay nothing.
"""

from __future__ import annotations

from typing import Any, Protocol

from amqtt.mqtt.protocol.broker_handler import BrokerProtocolHandler


class DeliveryMeter(Protocol):
    """The open interval the counts go into (:class:`mqtt_licensing.agent.metering.Meter`)."""

    messages: int
    bytes: int


def count_deliveries(handler: BrokerProtocolHandler, meter: DeliveryMeter) -> None:
    send = handler.mqtt_publish

    async def counted(
        topic: str, data: bytes | bytearray, qos: int | None, retain: bool, ack_timeout: int | None = None
    ) -> Any:
        message = await send(topic, data, qos, retain, ack_timeout)
        if topic[:1] != "$":  # the broker's own $license/... messages are not the client's usage
            meter.messages += 1
            meter.bytes += len(data)
        return message

    handler.mqtt_publish = counted
