"""The licensing agent beside a Mosquitto 2.0 broker.

A C plugin (``plugin/``, built by ``mqtt-licensing mosquitto build``) takes every decision on
Mosquitto's network thread from a snapshot the agent pushes; the agent runs in its own process
(``mqtt-licensing mosquitto agent -c agent.yaml``) and reaches the plugin over a Unix socket.
Only this package talks to Mosquitto.
"""
