"""The customer portal: sign in with key + mailed code; terms and activations; free a lost
activation (limited per 30 days); offline request -> usage license; offline deactivation.
Every action is checked in the vendor's own records (ActivationService)."""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from mqtt_licensing.core import labels
from mqtt_licensing.core.codes import armor, unarmor
from mqtt_licensing.core.documents import sign_instance_request
from mqtt_licensing.core.keys import key_digest
from mqtt_licensing.servers.shop.devtools import LocalStripe, SmtpSink, body_of
from tests.shop.conftest import start_shop
from tests.shop.support import ShopServer


class Clock:
    def __init__(self) -> None:
        import time

        self.now = int(time.time())

    def __call__(self) -> int:
        return self.now


class Instance:
    """A broker's identity signing its own requests (what the agent does)."""

    def __init__(self, clock: Clock) -> None:
        self.key, self.clock = Ed25519PrivateKey.generate(), clock

    def request(self, kind: str, **fields: Any) -> bytes:
        return sign_instance_request(
            self.key, kind=kind, nonce=secrets.token_hex(8), created_at=self.clock.now, **fields
        )

    def activate(self, service: Any, key: str) -> str:
        blob = self.request(labels.KIND_ACTIVATE, key_digest=key_digest(key))
        return str(service.activate(key, blob).activation_id)

    def usage_request(self, key: str) -> str:
        return armor(labels.USAGE_REQUEST, self.request(labels.KIND_OFFLINE_REQUEST, key_digest=key_digest(key)))

    def deactivation_code(self, activation_id: str) -> str:
        return armor(
            labels.DEACTIVATION_CODE, self.request(labels.KIND_OFFLINE_DEACTIVATION, activation_id=activation_id)
        )


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def portal_shop(tmp_path: Path, localstripe: LocalStripe, smtp: SmtpSink, clock: Clock) -> Iterator[ShopServer]:
    server = start_shop(tmp_path, localstripe, smtp, webhook=False, clock=clock, portal={"frees_per_30_days": 1})
    yield server
    server.stop()


@pytest.fixture
def web(portal_shop: ShopServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=portal_shop.url, timeout=20, trust_env=False) as c:
        yield c


def customer_license(shop: ShopServer, email: str = "buyer@example.com", **terms: Any) -> tuple[str, str]:
    assert shop.service is not None and shop.shop is not None
    terms.setdefault("features", ["mqtt_server"])
    lic, key = shop.service.issue_license(**terms)
    shop.shop.portal.set_contact(lic["id"], email)
    return lic["id"], key


def mailed_code(smtp: SmtpSink, count: int) -> str:
    mail = smtp.wait(lambda m: m["Subject"] == "Your sign-in code", count=count)[-1]
    found = re.search(r"^\s+(\d{8})\s*$", body_of(mail), re.M)
    assert found, body_of(mail)
    return found.group(1)


def sign_in(web: httpx.Client, smtp: SmtpSink, key: str) -> str:
    """Sign in; returns the page's CSRF token."""
    before = len([m for m in smtp.messages if m["Subject"] == "Your sign-in code"])
    page = web.post("/shop/portal/code", data={"license_key": key}, follow_redirects=True)  # POST-redirect-GET
    assert page.status_code == 200 and "b***@example.com" in page.text
    r = web.post("/shop/portal/login", data={"license_key": key, "code": mailed_code(smtp, before + 1)})
    assert r.status_code == 303
    return csrf_of(web.get("/shop/portal/license").text)


def csrf_of(page: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', page).group(1)  # type: ignore[union-attr]


def active_ids(shop: ShopServer, license_id: str) -> set[str]:
    assert shop.service is not None
    return {a["id"] for a in shop.service.list_activations(license_id)}


def test_sign_in_needs_the_mailed_code_once(portal_shop: ShopServer, web: httpx.Client, smtp: SmtpSink) -> None:
    license_id, key = customer_license(portal_shop)
    assert web.get("/shop/portal/license").status_code == 401
    web.post("/shop/portal/code", data={"license_key": key})
    code = mailed_code(smtp, 1)
    wrong = f"{(int(code) + 1) % 10**8:08d}"
    assert web.post("/shop/portal/login", data={"license_key": key, "code": wrong}).status_code == 401
    assert web.post("/shop/portal/login", data={"license_key": key, "code": code}).status_code == 303
    page = web.get("/shop/portal/license")
    assert page.status_code == 200 and license_id in page.text and "mqtt_server" in page.text
    # The code worked once; the session cookie is HttpOnly and SameSite=Strict.
    web.cookies.clear()
    assert web.post("/shop/portal/login", data={"license_key": key, "code": code}).status_code == 401
    web.post("/shop/portal/code", data={"license_key": key})
    r = web.post("/shop/portal/login", data={"license_key": key, "code": mailed_code(smtp, 2)})
    cookie = r.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie


def test_wrong_guesses_burn_the_code(portal_shop: ShopServer, web: httpx.Client, smtp: SmtpSink) -> None:
    _license_id, key = customer_license(portal_shop)
    web.post("/shop/portal/code", data={"license_key": key})
    code = mailed_code(smtp, 1)
    for guess in range(5):
        guess_code = f"{(int(code) + 1 + guess) % 10**8:08d}"
        assert web.post("/shop/portal/login", data={"license_key": key, "code": guess_code}).status_code == 401
    assert web.post("/shop/portal/login", data={"license_key": key, "code": code}).status_code == 401


def test_a_license_without_purchase_address_cannot_sign_in(portal_shop: ShopServer, web: httpx.Client) -> None:
    assert portal_shop.service is not None
    _lic, key = portal_shop.service.issue_license(features=["mqtt_server"])
    r = web.post("/shop/portal/code", data={"license_key": key})
    assert r.status_code == 404 and "vendor contact" in r.text


def test_free_a_lost_activation_at_most_n_per_30_days(
    portal_shop: ShopServer, web: httpx.Client, smtp: SmtpSink, clock: Clock
) -> None:
    service = portal_shop.service
    assert service is not None
    license_id, key = customer_license(portal_shop, max_activations=2)
    lost, other = Instance(clock).activate(service, key), Instance(clock).activate(service, key)
    csrf = sign_in(web, smtp, key)
    page = web.get("/shop/portal/license").text
    assert lost in page and "2 of 2 in use" in page

    # Without the form's CSRF token, or for another license's activation: nothing happens.
    assert web.post("/shop/portal/free", data={"activation_id": lost}).status_code == 401
    stranger_id, stranger_key = customer_license(portal_shop, email="b2@example.com")
    theirs = Instance(clock).activate(service, stranger_key)
    r = web.post("/shop/portal/free", data={"activation_id": theirs, "csrf": csrf, "confirm": "yes"})
    assert r.status_code == 404
    assert active_ids(portal_shop, license_id) == {lost, other} and active_ids(portal_shop, stranger_id) == {theirs}

    r = web.post(
        "/shop/portal/free", data={"activation_id": lost, "csrf": csrf, "confirm": "yes"}, follow_redirects=True
    )
    assert r.status_code == 200 and f"Activation {lost} was freed" in r.text
    assert active_ids(portal_shop, license_id) == {other}
    assert Instance(clock).activate(service, key)  # the freed activation is usable again

    r = web.post("/shop/portal/free", data={"activation_id": other, "csrf": csrf, "confirm": "yes"})
    assert r.status_code == 429 and "per 30 days" in r.text
    assert other in active_ids(portal_shop, license_id)
    clock.now += 31 * 86400
    csrf = sign_in(web, smtp, key)  # the old session has expired meanwhile
    r = web.post(
        "/shop/portal/free", data={"activation_id": other, "csrf": csrf, "confirm": "yes"}, follow_redirects=True
    )
    assert r.status_code == 200 and other not in active_ids(portal_shop, license_id)


def test_offline_request_code_becomes_a_usage_license_download(
    portal_shop: ShopServer, web: httpx.Client, smtp: SmtpSink, clock: Clock
) -> None:
    license_id, key = customer_license(portal_shop, model="offline")
    _other_id, other_key = customer_license(portal_shop, model="offline", email="b2@example.com")
    csrf = sign_in(web, smtp, key)
    broker = Instance(clock)

    r = web.post("/shop/portal/offline-activate", data={"request_code": broker.usage_request(other_key), "csrf": csrf})
    assert r.status_code == 400 and "not for license" in r.text
    r = web.post("/shop/portal/offline-activate", data={"request_code": "garbage", "csrf": csrf})
    assert r.status_code == 400
    assert active_ids(portal_shop, license_id) == set()

    r = web.post("/shop/portal/offline-activate", data={"request_code": broker.usage_request(key), "csrf": csrf})
    assert r.status_code == 200 and r.headers["content-disposition"].startswith("attachment;")
    unarmor(r.text, labels.USAGE_LICENSE)  # a well-formed usage license
    [activation_id] = active_ids(portal_shop, license_id)

    code = broker.deactivation_code(activation_id)
    r = web.post("/shop/portal/offline-deactivate", data={"code": code, "csrf": csrf}, follow_redirects=True)
    assert r.status_code == 200 and f"Activation {activation_id} freed" in r.text
    assert active_ids(portal_shop, license_id) == set()


def test_vendor_contact_lets_a_staff_issued_license_into_the_portal(
    portal_shop: ShopServer, web: httpx.Client, smtp: SmtpSink, capsys: pytest.CaptureFixture[str]
) -> None:
    from mqtt_licensing.cli.main import main

    assert portal_shop.service is not None
    lic, key = portal_shop.service.issue_license(features=["mqtt_server"], model="offline")
    data = str(portal_shop.data_dir)
    assert main(["vendor", "contact", "--data", data, lic["id"], "not-an-address"]) == 1
    assert "valid e-mail" in capsys.readouterr().err
    assert main(["vendor", "contact", "--data", data, lic["id"], "buyer@example.com"]) == 0
    assert sign_in(web, smtp, key)


def _race_logins(url: str, bodies: list[dict[str, str]]) -> list[int]:
    import threading
    from concurrent.futures import ThreadPoolExecutor

    barrier = threading.Barrier(len(bodies))

    def one(body: dict[str, str]) -> int:
        with httpx.Client(base_url=url, timeout=30, trust_env=False) as client:
            barrier.wait()
            return client.post("/shop/portal/login", data=body).status_code

    with ThreadPoolExecutor(max_workers=len(bodies)) as pool:
        return list(pool.map(one, bodies))


def test_portal_codes_hold_under_concurrency_on_postgresql(
    tmp_path: Path, localstripe: LocalStripe, smtp: SmtpSink, clock: Clock, pg_cluster: Any
) -> None:
    """Main, on PostgreSQL: 16-32 concurrent wrong codes were absorbed instead of 5 (the attempt
    count was read, then written), and one code opened up to 7 sessions. Now the license row is
    locked first, so sign-ins of one license count and use codes one at a time."""
    url = pg_cluster.new_database()
    server = start_shop(tmp_path, localstripe, smtp, webhook=False, clock=clock, database_url=url)
    try:
        _license_id, key = customer_license(server)
        with httpx.Client(base_url=server.url, timeout=20, trust_env=False) as web:
            web.post("/shop/portal/code", data={"license_key": key})
            code = mailed_code(smtp, 1)
            wrong = [{"license_key": key, "code": f"{(int(code) + n) % 10**8:08d}"} for n in range(1, 31)]
            assert _race_logins(server.url, wrong) == [401] * 30
            assert web.post("/shop/portal/login", data={"license_key": key, "code": code}).status_code == 401  # burnt
            web.post("/shop/portal/code", data={"license_key": key})
            fresh = mailed_code(smtp, 2)
        statuses = _race_logins(server.url, [{"license_key": key, "code": fresh}] * 8)
        assert sorted(statuses) == [303] + [401] * 7, statuses  # one code, one session
    finally:
        server.stop()
