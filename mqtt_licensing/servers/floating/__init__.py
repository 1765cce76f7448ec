"""The self-hosted floating license server: store (SQL) -> pool + service (domain) -> app (HTTP).

``provision`` talks to the vendor's activation server to obtain the pool's
vendor-signed certificate online; the CLI verbs live in :mod:`mqtt_licensing.cli.floating`.
"""

from .app import create_app
from .service import FloatingService

__all__ = ["FloatingService", "create_app"]
