"""MQTT-native licensing: a licensing agent inside the broker, a vendor
activation server and a self-hosted floating license server.

Layers (dependencies point inward):

* ``core``     - pure license logic: keys, signed documents, codes, the state
                 machine and the CONNECT gate. No I/O, no clocks, no sockets.
* ``agent``    - the licensing agent service: persistence, background check-in,
                 command handling. Talks to brokers through a small transport port.
* ``adapters`` - broker adapters (amqtt plugin); the only place that knows amqtt.
* ``clients``  - HTTP clients for the activation and floating servers.
* ``servers``  - the vendor activation server and the floating license server.
* ``cli``      - the ``mqtt-licensing`` command.
"""

__version__ = "0.1.0"
