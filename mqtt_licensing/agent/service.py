"""Old import path of the agent, kept while the amqtt adapter still imports it from here."""

from .access import Transport
from .agent import LicensingAgent

__all__ = ["LicensingAgent", "Transport"]
