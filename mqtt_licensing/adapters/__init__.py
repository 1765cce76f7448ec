"""Broker adapters. Each turns one broker's hooks into calls on the broker-agnostic
:class:`~mqtt_licensing.agent.LicensingAgent`. Today: amqtt (embedded). An external
broker (Mosquitto, EMQX) reached as a paho-mqtt client would be a second module here.
"""
