"""Shared pytest setup. Reusable fixtures as plain helpers live in tests/helpers/."""

import logging

logging.getLogger("amqtt").setLevel(logging.WARNING)
