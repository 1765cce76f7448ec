"""A crash between payment and fulfilment: the server process is killed (SIGKILL) while a
paid order is half fulfilled; after the restart the retry loop finishes it - one license,
and the key that was issued is the one mailed."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from mqtt_licensing.core.keys import key_digest
from mqtt_licensing.servers._run import free_port
from mqtt_licensing.servers.activation import ActivationService
from mqtt_licensing.servers.shop.devtools import LocalStripe, SmtpSink, body_of
from tests.shop.support import WEBHOOK_SECRET, ShopProcess, card_token, order_form, pay, wait_state


@pytest.mark.timeout(120)
def test_killed_after_payment_is_fulfilled_after_restart(tmp_path: Path, localstripe: LocalStripe) -> None:
    smtp_port = free_port()  # the mail relay is down at first: fulfilment stops half way
    server = ShopProcess(tmp_path, stripe_url=localstripe.url, smtp_port=smtp_port).start()
    localstripe.register_webhook(f"{server.url}/shop/stripe/webhook", WEBHOOK_SECRET)
    try:
        with httpx.Client(base_url=server.url, timeout=20, trust_env=False) as http:
            order_id = order_form(http, {"mqtt_server": 1, "mqtt_server_support": 1})
            assert pay(http, order_id, card_token(localstripe.url)).json()["status"] == "succeeded"
            state = wait_state(http, order_id, "paid")
            while state["license_id"] is None:  # paid (webhook), license issued, e-mail not sent
                time.sleep(0.1)
                state = wait_state(http, order_id, "paid")
            server.kill()

            with SmtpSink(port=smtp_port) as smtp:
                server.start()
                final = wait_state(http, order_id, "fulfilled", timeout=30)
                [mail] = smtp.wait(lambda m: m["Subject"] == "Your MQTT license key")
            token = (server.data_dir / "admin.token").read_text().strip()
            listed = http.get("/v1/admin/licenses", headers={"Authorization": f"Bearer {token}"}).json()["licenses"]
    finally:
        server.stop()
    assert final["license_id"] == state["license_id"]
    assert len(listed) == 1 and listed[0]["id"] == final["license_id"]
    key = next(line.strip() for line in body_of(mail).splitlines() if line.startswith("    MQL"))
    assert key_digest(key)  # well-formed, checksum included
    service = ActivationService.open(server.data_dir)
    try:
        with service.store.transaction() as tx:
            lic = tx.get_license_by_digest(key_digest(key))
        assert lic is not None and lic.id == final["license_id"]
    finally:
        service.close()
    assert len(smtp.messages) == 1
