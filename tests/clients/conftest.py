"""The HTTP clients against the real server apps, in-process over ``httpx.ASGITransport``.

The apps, services and databases are the real ones; only the socket is left out, because these
tests are about what the clients send and how they read the answers."""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from mqtt_licensing.core.documents import sign_instance_request
from mqtt_licensing.servers._files import load_or_create_token
from mqtt_licensing.servers.activation import ActivationService
from mqtt_licensing.servers.activation import create_app as activation_app
from mqtt_licensing.servers.floating import FloatingService
from mqtt_licensing.servers.floating import create_app as floating_app
from tests.helpers.floating import make_pool_certificate


def transport(app: Any) -> httpx.ASGITransport:
    return httpx.ASGITransport(app=app, raise_app_exceptions=False)


def signed(key: Ed25519PrivateKey, kind: str, **fields: Any) -> bytes:
    """An instance request with a fresh nonce and time, as the agent and the floating server sign them."""
    return sign_instance_request(key, kind=kind, nonce=secrets.token_hex(8), created_at=int(time.time()), **fields)


class ActivationApp:
    def __init__(self, data_dir: Path) -> None:
        self.service = ActivationService.open(data_dir)
        self.token = load_or_create_token(data_dir)
        self.app = activation_app(self.service, self.token)
        self.url = "http://activation.test"

    def transport(self) -> httpx.ASGITransport:
        return transport(self.app)


class FloatingApp:
    def __init__(self, data_dir: Path, vendor: Ed25519PrivateKey, seats: int) -> None:
        self.service = FloatingService.open(data_dir, vendor_public_key=vendor.public_key())
        self.service.install_certificate(make_pool_certificate(vendor, self.service.public_key, seats=seats))
        self.token = load_or_create_token(data_dir)
        self.app = floating_app(self.service, self.token)
        self.url = "http://floating.test"

    def transport(self) -> httpx.ASGITransport:
        return transport(self.app)


@pytest.fixture
def activation(tmp_path: Path) -> Iterator[ActivationApp]:
    app = ActivationApp(tmp_path / "activation")
    yield app
    app.service.close()


@pytest.fixture
def vendor_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture
def floating(tmp_path: Path, vendor_key: Ed25519PrivateKey) -> Iterator[FloatingApp]:
    app = FloatingApp(tmp_path / "floating", vendor_key, seats=1)
    yield app
    app.service.close()
