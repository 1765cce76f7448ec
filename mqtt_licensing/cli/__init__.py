"""The ``mqtt-licensing`` command. Each verb group lives in its own module with a ``register(subparsers)``."""
