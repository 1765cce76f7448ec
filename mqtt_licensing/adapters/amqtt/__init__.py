"""The amqtt adapter: the only package that imports amqtt.

``plugin`` hosts the agent as an amqtt plugin, ``runner`` starts a broker with it,
and ``patches`` holds every use of amqtt internals with the reason for each.
"""

from .plugin import LicensingPlugin

__all__ = ["LicensingPlugin"]
