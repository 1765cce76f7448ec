"""Calling a server app in-process, for tests where a real socket adds nothing."""

from __future__ import annotations

import httpx
from starlette.applications import Starlette


def asgi_client(app: Starlette, *, token: str | None = None, base_url: str = "http://server.test") -> httpx.AsyncClient:
    """An httpx client that calls ``app`` in-process. Unexpected errors come back as the app's
    500 answer, as over a socket."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url=base_url, headers=headers, timeout=10)


__all__ = ["asgi_client"]
