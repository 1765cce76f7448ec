"""The broker's HTTP listener: the License page (static files) and ``/healthz``.

The page is a browser client of the ``$license`` topic contract over MQTT over
WebSocket; nothing about the license travels over HTTP. ``app`` builds the
Starlette app, ``listener`` runs it inside the broker's event loop. No amqtt here:
the adapter's plugin starts and stops the listener.
"""

from .app import PageConfig, create_app
from .listener import HttpListener, parse_bind, start_http

__all__ = ["HttpListener", "PageConfig", "create_app", "parse_bind", "start_http"]
