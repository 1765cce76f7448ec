"""Kept so broker configs written for 0.1 (``mqtt_licensing.adapters.amqtt_plugin.LicensingPlugin``) still load."""

from .amqtt import LicensingPlugin

__all__ = ["LicensingPlugin"]
