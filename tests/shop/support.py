"""The store under test: a real activation server with the shop mounted, on 127.0.0.1,
against a real Stripe-compatible server (localstripe) and a real SMTP server (aiosmtpd).

    server = ShopServer(tmp_path, stripe_url=..., smtp_port=...).start()   # in this process
    proc = ShopProcess(tmp_path, ...).start()                              # `vendor serve` as a child
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import stripe
import yaml

from mqtt_licensing.core.keys import key_digest
from mqtt_licensing.servers._files import load_or_create_token
from mqtt_licensing.servers._run import ServerThread, free_port
from mqtt_licensing.servers.activation import ActivationService, create_app
from mqtt_licensing.servers.shop.app import Shop
from mqtt_licensing.servers.shop.config import load_config
from tests.helpers.cli import run_cli

STRIPE_KEY = "sk_test_shop_secret_0123456789"
WEBHOOK_SECRET = "whsec_test_shop_0123456789abcdef"
SMTP_PASSWORD = "smtp-pass-never-logged"
PRICES = {"mqtt_server": 50000, "mqtt_server_support": 10000, "iot_bridge_snowflake": 5}
YEAR = 365 * 86400


def catalogue() -> dict[str, Any]:
    return {
        "currency": "usd",
        "products": [
            {"id": "mqtt_server", "name": "MQTT Server", "feature": "mqtt_server", "kind": "one_time",
             "price": PRICES["mqtt_server"]},
            {"id": "mqtt_server_support", "name": "MQTT Server Support", "feature": "mqtt_server_support",
             "kind": "per_year", "price": PRICES["mqtt_server_support"]},
            {"id": "iot_bridge_snowflake", "name": "IoT Bridge for Snowflake", "feature": "iot_bridge_snowflake",
             "kind": "metered", "price": PRICES["iot_bridge_snowflake"], "unit": "1,000 messages"},
        ],
    }  # fmt: skip


def write_config(
    folder: Path, *, port: int, stripe_url: str, smtp_port: int, secrets_in_files: bool = True, **extra: Any
) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    stripe_section: dict[str, Any] = {"publishable_key": "pk_test_shop", "api_base": stripe_url}
    if secrets_in_files:
        (folder / "stripe.key").write_text(STRIPE_KEY + "\n")
        (folder / "webhook.secret").write_text(WEBHOOK_SECRET + "\n")
        stripe_section.update(
            secret_key_file=str(folder / "stripe.key"), webhook_secret_file=str(folder / "webhook.secret")
        )
    smtp = {"host": "127.0.0.1", "port": smtp_port, "security": "none", "from": "store@vendor.test"}
    smtp.update(extra.pop("smtp", {}))
    config = {
        "base_url": f"http://127.0.0.1:{port}",
        "stripe": stripe_section,
        "smtp": smtp,
        "catalogue": catalogue(),
        "worker": {"interval": 0.2, "reconcile_after": extra.pop("reconcile_after", 3600), "claim_seconds": 2},
        # localstripe cannot finalize an invoice: tests of invoices put tests/shop/stripe_proxy.py in front of it.
        "invoices": {"receipts": False},
        **extra,
    }
    path = folder / "shop.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def secret_env() -> dict[str, str]:
    return {"MQTT_LICENSING_STRIPE_SECRET_KEY": STRIPE_KEY, "MQTT_LICENSING_STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET}


class ShopServer:
    """The activation server with the store, uvicorn on a thread in this process."""

    def __init__(
        self,
        root: Path,
        *,
        stripe_url: str,
        smtp_port: int,
        clock: Any = None,
        database_url: str | None = None,
        **config: Any,
    ) -> None:
        self.data_dir = root / "vendor"
        self.database_url = database_url
        self.port = free_port()
        self.config_path = write_config(
            root / "shop", port=self.port, stripe_url=stripe_url, smtp_port=smtp_port, **config
        )
        self.clock = clock
        self.service: ActivationService | None = None
        self.shop: Shop | None = None
        self._thread: ServerThread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ShopServer:
        options = {"clock": self.clock} if self.clock else {}
        self.service = ActivationService.open(self.data_dir, database_url=self.database_url, **options)
        self.shop = Shop.open(self.service, load_config(self.config_path), database_url=self.database_url)
        app = create_app(self.service, load_or_create_token(self.data_dir), **self.shop.hooks())
        self._thread = ServerThread(app, port=self.port)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._thread.stop()
            self._thread = None
        if self.shop is not None:
            self.shop.close()
            self.shop = None
        if self.service is not None:
            self.service.close()
            self.service = None

    def license_by_key(self, key: str) -> Any:
        assert self.service is not None
        with self.service.store.transaction() as tx:
            return tx.get_license_by_digest(key_digest(key))


class ShopProcess:
    """``mqtt-licensing vendor serve --shop-config`` as a child process (to be killed for real)."""

    def __init__(self, root: Path, *, stripe_url: str, smtp_port: int, **config: Any) -> None:
        self.data_dir = root / "vendor"
        self.port = free_port()
        self.config_path = write_config(
            root / "shop", port=self.port, stripe_url=stripe_url, smtp_port=smtp_port, secrets_in_files=False, **config
        )
        self.log = root / "server.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30) -> ShopProcess:
        if not self.data_dir.exists():
            run_cli("vendor", "init", self.data_dir, check=True)  # in-process: only `serve` must be a process
        cmd = [sys.executable, "-m", "mqtt_licensing.cli.main", "vendor", "serve", "--data", str(self.data_dir),
               "--port", str(self.port), "--shop-config", str(self.config_path)]  # fmt: skip
        env = {**os.environ, **secret_env()}
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.log.read_text()
            try:
                if httpx.get(f"{self.url}/v1/health", timeout=1, trust_env=False).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise AssertionError("the server did not start: " + self.log.read_text())

    def kill(self) -> None:
        """SIGKILL: no shutdown handler runs, as in a power cut."""
        if self.process is not None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)
            self.process = None

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.process = None


def run_passes(server: ShopServer, n: int = 2) -> None:
    """``n`` passes of the store's fulfilment loop, now, in this thread: whatever a pass would do
    (fulfil, mail, remind) is done when this returns, so a test needs no wait for the loop."""
    assert server.shop is not None
    for _ in range(n):
        server.shop.run_once()


def stripe_client(stripe_url: str) -> stripe.StripeClient:
    return stripe.StripeClient(STRIPE_KEY, base_addresses={"api": stripe_url})


def card_token(stripe_url: str, number: str = "4242424242424242") -> str:
    """What Stripe.js makes of a card in the page (the card never reaches our server)."""
    params = {"card": {"number": number, "exp_month": 12, "exp_year": 2034, "cvc": "123"}}
    return str(stripe_client(stripe_url).v1.tokens.create(params=params).id)  # type: ignore[arg-type]


def order_form(http: httpx.Client, products: dict[str, int], email: str = "buyer@example.com", key: str = "") -> str:
    """POST the store form like the page does; returns the order id."""
    data: dict[str, Any] = {"email": email, "product": list(products)}
    data.update({f"years_{p}": str(n) for p, n in products.items()})
    if key:
        data["license_key"] = key
    r = http.post("/shop/orders", data=data)
    assert r.status_code == 303, r.text
    return str(r.headers["location"]).rsplit("/", 1)[1]


def pay(http: httpx.Client, order_id: str, token: str) -> httpx.Response:
    return http.post(f"/shop/orders/{order_id}/pay", json={"token": token})


def wait_state(http: httpx.Client, order_id: str, state: str, timeout: float = 20) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        body = http.get(f"/shop/orders/{order_id}/state").json()
        if body.get("state") == state:
            return dict(body)
        if time.monotonic() > deadline:
            raise AssertionError(f"order {order_id} is {body}, not {state}")
        time.sleep(0.1)


def signed_event(payload: dict[str, Any], secret: str = WEBHOOK_SECRET, at: int | None = None) -> tuple[bytes, str]:
    """A webhook body and its Stripe-Signature header, made the way Stripe makes them."""
    body = json.dumps(payload).encode()
    ts = int(time.time()) if at is None else at
    mac = hmac.new(secret.encode(), f"{ts}.".encode() + body, hashlib.sha256).hexdigest()
    return body, f"t={ts},v1={mac}"
