"""The portal by account: sign in with the purchase address and a mailed code or one-time link (no
key); every license of the address on one page; a key shown again after a confirmation, logged;
an activation freed by the customer; no account enumeration; Stripe's billing portal (against a
local server recording the exact request: localstripe has no billing portal)."""

from __future__ import annotations

import json
import re
import threading
import urllib.parse
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from mqtt_licensing.servers.shop.account_store import AccountTx
from mqtt_licensing.servers.shop.devtools import SmtpSink, body_of
from mqtt_licensing.servers.shop.store import Order
from tests.shop.support import STRIPE_KEY, ShopServer, card_token, order_form, pay, wait_state
from tests.shop.test_portal import Clock, Instance, csrf_of

BUYER = "buyer@example.com"
SUBJECT = "Your sign-in code"


def buy(http: httpx.Client, stripe_url: str, email: str = BUYER) -> tuple[str, str]:
    """A paid, fulfilled purchase of MQTT Server: (license id, order id)."""
    order_id = order_form(http, {"mqtt_server": 1}, email=email)
    assert pay(http, order_id, card_token(stripe_url)).status_code == 200
    wait_state(http, order_id, "fulfilled", timeout=30)
    return str(http.get(f"/shop/orders/{order_id}/state").json()["license_id"]), order_id


def mailed(smtp: SmtpSink, count: int) -> tuple[str, str]:
    """(code, link token) of the ``count``-th sign-in mail."""
    body = body_of(smtp.wait(lambda m: m["Subject"] == SUBJECT, count=count, timeout=20)[count - 1])
    code = re.search(r"^\s+(\d{8})\s*$", body, re.M)
    link = re.search(r"/shop/portal/link\?token=(\S+)", body)
    assert code and link, body
    return code.group(1), link.group(1)


def ask_code(web: httpx.Client, email: str) -> httpx.Response:
    return web.post("/shop/portal/email-code", data={"email": email})


def sign_in(web: httpx.Client, smtp: SmtpSink, email: str, count: int) -> str:
    assert ask_code(web, email).status_code == 303
    code, _link = mailed(smtp, count)
    r = web.post("/shop/portal/email-login", data={"email": email, "code": code})
    assert r.status_code == 303 and r.headers["location"].endswith("/portal/account")
    return csrf_of(web.get("/shop/portal/account").text)


@pytest.mark.timeout(120)
def test_sign_in_by_address_lists_its_licenses_shows_a_key_and_frees(
    shop: ShopServer, http: httpx.Client, smtp: SmtpSink, stripe_url: str
) -> None:
    assert shop.service is not None and shop.shop is not None
    first, first_order = buy(http, stripe_url, "Buyer@Example.com")  # the case of an address does not matter
    second, _ = buy(http, stripe_url)
    others, _ = buy(http, stripe_url, "other@example.com")
    staff, _key = shop.service.issue_license(features=["mqtt_server"])  # sold by staff: contact only
    shop.shop.portal.set_contact(staff["id"], BUYER)
    keys = [body_of(m) for m in smtp.messages if m["Subject"].startswith("Your MQTT license key")]
    first_key = next(re.search(r"^\s+(MQL\S+)\s*$", k, re.M).group(1) for k in keys if first in k)  # type: ignore[union-attr]
    instance = Instance(Clock())
    activation = instance.activate(shop.service, first_key)

    csrf = sign_in(http, smtp, BUYER, 1)
    page = http.get("/shop/portal/account").text
    for lid in (first, second, staff["id"]):
        assert f'data-license="{lid}"' in page
    assert others not in page
    assert f'data-activation="{activation}"' in page and "500.00 USD" in page  # activations and orders

    # The key again: a question first (no key in it), then the key, recorded on the license.
    asked = http.post("/shop/portal/key", data={"csrf": csrf, "license_id": first})
    assert asked.status_code == 200 and first_key not in asked.text and "confirm-key" in asked.text
    shown = http.post("/shop/portal/key", data={"csrf": csrf, "license_id": first, "confirm": "yes"})
    assert shown.status_code == 200 and first_key in shown.text and shown.headers["cache-control"] == "no-store"
    with shop.shop.store.transaction() as tx:
        [event] = AccountTx(tx.conn).events_of(first)
    assert event["kind"] == "key_shown" and event["actor"] == BUYER and event["order_id"] == first_order
    assert f"Key shown to {BUYER}" in http.get("/shop/portal/account").text
    # A license sold before keys were kept: said so, with what to do (no dead end).
    staff_key = http.post("/shop/portal/key", data={"csrf": csrf, "license_id": staff["id"], "confirm": "yes"})
    assert staff_key.status_code == 200 and "ask the vendor to reissue" in staff_key.text
    # Another address's license is not this account's, whatever the form names.
    assert http.post("/shop/portal/key", data={"csrf": csrf, "license_id": others, "confirm": "yes"}).status_code == 404
    assert http.post("/shop/portal/key", data={"csrf": "forged", "license_id": first}).status_code == 401

    # Free the lost broker: the question, then the answer, recorded as freed by the customer.
    question = http.post("/shop/portal/free", data={"csrf": csrf, "license_id": first, "activation_id": activation})
    assert question.status_code == 200 and "confirm-free" in question.text
    data = {"csrf": csrf, "license_id": first, "activation_id": activation, "confirm": "yes"}
    done = http.post("/shop/portal/free", data=data)
    assert done.status_code == 303 and "/portal/account?done=freed" in done.headers["location"]
    [act] = shop.service.list_activations(first, include_freed=True)
    assert not act["active"] and act["freed_reason"] == "freed_by_customer"


@pytest.mark.timeout(60)
def test_the_mailed_link_signs_in_once(shop: ShopServer, http: httpx.Client, smtp: SmtpSink, stripe_url: str) -> None:
    license_id, _ = buy(http, stripe_url)
    ask_code(http, BUYER)
    code, link = mailed(smtp, 1)
    page = http.get(f"/shop/portal/link?token={link}")  # a mail scanner fetching it uses nothing up
    assert page.status_code == 200 and "link-sign-in" in page.text
    r = http.post("/shop/portal/link", data={"token": link})
    assert r.status_code == 303 and f'data-license="{license_id}"' in http.get("/shop/portal/account").text
    http.cookies.clear()
    again = http.post("/shop/portal/link", data={"token": link})
    assert again.status_code == 401 and "ask for a new one" in again.text
    # The link and the code were one: the code is spent too.
    assert http.post("/shop/portal/email-login", data={"email": BUYER, "code": code}).status_code == 401


@pytest.mark.timeout(60)
def test_no_account_enumeration(shop: ShopServer, http: httpx.Client, smtp: SmtpSink, stripe_url: str) -> None:
    buy(http, stripe_url)
    smtp.messages.clear()
    answers = {}
    for email in (BUYER, "nobody@example.com"):
        http.cookies.clear()
        r = ask_code(http, email)
        page = http.get(r.headers["location"]).text
        answers[email] = (r.status_code, r.headers["location"], page.replace(email, "ADDRESS"))
    assert answers[BUYER] == answers["nobody@example.com"]
    mailed(smtp, 1)
    assert [m["To"] for m in smtp.messages] == [BUYER]  # the unknown address got nothing
    typo = ask_code(http, "buyer@example")  # a typo is said on the page, what was typed kept
    assert typo.status_code == 400 and "valid e-mail" in typo.text and 'value="buyer@example"' in typo.text
    # The hourly limit counts both alike: the 6th request is refused for either.
    for email in (BUYER, "nobody@example.com"):
        statuses = [ask_code(http, email).status_code for _ in range(5)]
        assert statuses == [303] * 4 + [429], (email, statuses)


@pytest.mark.timeout(60)
def test_a_wrong_code_can_be_retyped_until_its_attempts_run_out(
    shop: ShopServer, http: httpx.Client, smtp: SmtpSink, stripe_url: str
) -> None:
    buy(http, stripe_url)
    ask_code(http, BUYER)
    code, _link = mailed(smtp, 1)
    wrong = f"{(int(code) + 1) % 10**8:08d}"
    r = http.post("/shop/portal/email-login", data={"email": BUYER, "code": wrong})
    assert r.status_code == 401 and "type it again" in r.text and f'value="{BUYER}"' in r.text  # the address kept
    assert http.post("/shop/portal/email-login", data={"email": BUYER, "code": code}).status_code == 303  # retyped
    http.cookies.clear()
    ask_code(http, BUYER)
    code, _link = mailed(smtp, 2)
    for n in range(5):
        guess = f"{(int(code) + 1 + n) % 10**8:08d}"
        assert http.post("/shop/portal/email-login", data={"email": BUYER, "code": guess}).status_code == 401
    assert http.post("/shop/portal/email-login", data={"email": BUYER, "code": code}).status_code == 401  # burnt


class StripeRecorder:
    """Answers ``POST /v1/billing_portal/sessions`` like Stripe, recording each request exactly."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0))).decode()
                recorder.requests.append(
                    {
                        "path": self.path,
                        "params": dict(urllib.parse.parse_qsl(body)),
                        "authorization": self.headers.get("Authorization"),
                    }
                )
                raw = json.dumps(
                    {"id": "bps_1", "object": "billing_portal.session", "url": "https://billing.example/p/session_1"}
                ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def log_message(self, *_args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def recorder() -> Iterator[StripeRecorder]:
    server = StripeRecorder()
    yield server
    server.close()


@pytest.mark.timeout(60)
def test_billing_portal_link(tmp_path: Path, recorder: StripeRecorder, smtp: SmtpSink) -> None:
    server = ShopServer(tmp_path, stripe_url=recorder.url, smtp_port=smtp.port).start()
    try:
        assert server.service is not None and server.shop is not None
        lic, _key = server.service.issue_license(features=["mqtt_server", "iot_bridge_snowflake"])
        order = Order(
            id="ord_billing", kind="purchase", state="fulfilled", email=BUYER, license_id=lic["id"], lines=[],
            amount=50000, currency="usd", stripe_customer="cus_Billing1", stripe_payment_intent=None,
            stripe_subscription="sub_1", support_until=None, pending_key=None, claimed_until=None, attempts=0,
            last_error=None, created_at=server.service.clock(), paid_at=None, fulfilled_at=None,
        )  # fmt: skip
        with server.shop.store.transaction() as tx:
            tx.insert_order(order)
        with httpx.Client(base_url=server.url, timeout=20, trust_env=False) as web:
            csrf = sign_in(web, smtp, BUYER, 1)
            r = web.post("/shop/portal/billing", data={"csrf": csrf, "license_id": lic["id"]})
        assert r.status_code == 303 and r.headers["location"] == "https://billing.example/p/session_1"
        [request] = recorder.requests
        assert request["path"] == "/v1/billing_portal/sessions"
        assert request["params"] == {"customer": "cus_Billing1", "return_url": f"{server.url}/shop/portal/account"}
        assert request["authorization"] == f"Bearer {STRIPE_KEY}"
    finally:
        server.stop()


def _race(url: str, bodies: list[dict[str, str]]) -> list[int]:
    barrier = threading.Barrier(len(bodies))

    def one(body: dict[str, str]) -> int:
        with httpx.Client(base_url=url, timeout=30, trust_env=False) as client:
            barrier.wait()
            return client.post("/shop/portal/email-login", data=body).status_code

    with ThreadPoolExecutor(max_workers=len(bodies)) as pool:
        return list(pool.map(one, bodies))


@pytest.mark.timeout(120)
def test_address_codes_hold_under_concurrency_on_postgresql(
    tmp_path: Path, recorder: StripeRecorder, smtp: SmtpSink, pg_cluster: Any
) -> None:
    """The migration on PostgreSQL, and the address's code rows locked per sign-in: 30 concurrent
    wrong codes count 30 (5 burn the code), one right code opens one session."""
    server = ShopServer(tmp_path, stripe_url=recorder.url, smtp_port=smtp.port, database_url=pg_cluster.new_database())
    server.start()
    try:
        assert server.service is not None and server.shop is not None
        lic, _key = server.service.issue_license(features=["mqtt_server"])
        server.shop.portal.set_contact(lic["id"], BUYER)
        with httpx.Client(base_url=server.url, timeout=20, trust_env=False) as web:
            ask_code(web, BUYER)
            code, _link = mailed(smtp, 1)
            wrong = [{"email": BUYER, "code": f"{(int(code) + n) % 10**8:08d}"} for n in range(1, 31)]
            assert _race(server.url, wrong) == [401] * 30
            assert web.post("/shop/portal/email-login", data={"email": BUYER, "code": code}).status_code == 401
            ask_code(web, BUYER)
            fresh, _link = mailed(smtp, 2)
        statuses = _race(server.url, [{"email": BUYER, "code": fresh}] * 8)
        assert sorted(statuses) == [303] + [401] * 7, statuses
    finally:
        server.stop()
