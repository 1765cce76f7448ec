"""No dead ends: every form error shows on the page it was made on, with what was typed kept
(never a card or a code); a wrong sign-in code can be typed again until its attempts run out;
every action that changes something answers with a redirect (POST-redirect-GET)."""

from __future__ import annotations

import html
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from mqtt_licensing.servers.shop.devtools import LocalStripe, SmtpSink
from mqtt_licensing.servers.shop.portal import CODE_ATTEMPTS
from tests.shop.conftest import start_shop
from tests.shop.support import ShopServer
from tests.shop.test_portal import Clock, Instance, csrf_of, customer_license, mailed_code, sign_in

DEAD_END = "Something went wrong"


@pytest.fixture
def portal_shop(tmp_path: Path, localstripe: LocalStripe, smtp: SmtpSink) -> Iterator[ShopServer]:
    server = start_shop(tmp_path, localstripe, smtp, webhook=False)
    yield server
    server.stop()


@pytest.fixture
def web(portal_shop: ShopServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=portal_shop.url, timeout=20, trust_env=False) as c:
        yield c


def _kept(page: str, value: str) -> bool:
    return f'value="{html.escape(value)}"' in page


def test_store_form_errors_stay_on_their_page_with_the_input_kept(shop: ShopServer, http: httpx.Client) -> None:
    r = http.post("/shop/orders", data={"email": "ann@example.com"})  # nothing chosen
    assert r.status_code == 400 and DEAD_END not in r.text and 'id="order-error"' in r.text
    assert "choose at least one product" in r.text and _kept(r.text, "ann@example.com")
    r = http.post("/shop/orders", data={"email": "ann@", "product": ["mqtt_server", "mqtt_server_support"],
                                        "years_mqtt_server_support": "3"})  # fmt: skip
    assert r.status_code == 400 and DEAD_END not in r.text and "valid e-mail" in r.text
    assert 'id="product-mqtt_server" checked' in r.text and 'id="product-mqtt_server_support" checked' in r.text
    assert 'id="years-mqtt_server_support" min="1" max="10" value="3"' in r.text  # the years chosen, kept
    assert _kept(r.text, "ann@")

    assert shop.service is not None
    _lic, key = shop.service.issue_license(features=["mqtt_server"])
    typo = key[:-1] + ("A" if key[-1] != "A" else "B")
    r = http.post("/shop/upgrade", data={"license_key": typo})
    assert r.status_code == 400 and DEAD_END not in r.text and 'data-code="invalid_key"' in r.text
    assert _kept(r.text, typo) and 'action="/shop/upgrade"' in r.text  # corrected on the same form
    unknown = shop.service.issue_license(features=["mqtt_server"])[1]
    shop.service.set_status(shop.service.license_for_key(unknown)["id"], "revoked")
    r = http.post("/shop/orders", data={"email": "a@example.com", "product": "mqtt_server_support",
                                        "license_key": unknown})  # fmt: skip
    assert r.status_code == 403, r.status_code
    assert DEAD_END not in r.text and "revoked" in r.text and _kept(r.text, unknown)


def test_a_wrong_portal_code_is_retyped_until_its_attempts_run_out(
    portal_shop: ShopServer, web: httpx.Client, smtp: SmtpSink
) -> None:
    _license_id, key = customer_license(portal_shop)
    r = web.post("/shop/portal/code", data={"license_key": "MQL-NOT-A-KEY"})
    assert r.status_code == 400 and DEAD_END not in r.text and _kept(r.text, "MQL-NOT-A-KEY")
    assert 'id="send-code"' in r.text  # the key form again

    r = web.post("/shop/portal/code", data={"license_key": key})
    assert r.status_code == 303  # POST-redirect-GET: Back and Reload send no second e-mail
    page = web.get(r.headers["location"])
    assert "b***@example.com" in page.text and 'id="code"' in page.text
    code = mailed_code(smtp, 1)
    wrong = "00000000" if code != "00000000" else "11111111"
    for _ in range(CODE_ATTEMPTS - 1):  # wrong codes: the code form again, with nothing typed kept
        r = web.post("/shop/portal/login", data={"code": wrong, "sent": "b***@example.com"})
        assert r.status_code == 401 and DEAD_END not in r.text and 'id="code"' in r.text
        assert "type it again" in r.text and wrong not in r.text
    r = web.post("/shop/portal/login", data={"code": code})  # the same mailed code, retyped: in
    assert r.status_code == 303 and r.headers["location"].endswith("/portal/license")
    assert web.get("/shop/portal/license").status_code == 200


def test_the_last_wrong_attempt_burns_the_code(portal_shop: ShopServer, web: httpx.Client, smtp: SmtpSink) -> None:
    _license_id, key = customer_license(portal_shop)
    web.post("/shop/portal/code", data={"license_key": key})
    code = mailed_code(smtp, 1)
    wrong = "00000000" if code != "00000000" else "11111111"
    for _ in range(CODE_ATTEMPTS):
        assert web.post("/shop/portal/login", data={"code": wrong}).status_code == 401
    r = web.post("/shop/portal/login", data={"code": code})
    assert r.status_code == 401 and "ask for a new code" in r.text


def test_portal_actions_redirect_and_their_errors_stay_on_the_license_page(
    portal_shop: ShopServer, web: httpx.Client, smtp: SmtpSink
) -> None:
    license_id, key = customer_license(portal_shop, model="offline")
    csrf = sign_in(web, smtp, key)
    r = web.post("/shop/portal/offline-activate", data={"csrf": csrf}, files={"request_file": ("req.txt", b"garbage")})
    assert r.status_code == 400 and DEAD_END not in r.text and 'id="error"' in r.text
    assert f'License <span class="mono">{license_id}</span>' in r.text and "garbage" not in r.text
    r = web.post("/shop/portal/free", data={"activation_id": "act_nope", "csrf": csrf})
    assert r.status_code == 404 and DEAD_END not in r.text and 'id="error"' in r.text

    _online_id, online_key = customer_license(portal_shop)
    web.cookies.clear()
    csrf = sign_in(web, smtp, online_key)
    assert portal_shop.service is not None
    activation_id = Instance(Clock()).activate(portal_shop.service, online_key)
    r = web.post("/shop/portal/free", data={"activation_id": activation_id, "csrf": csrf})
    assert r.status_code == 200 and 'id="confirm-free"' in r.text  # asked first, nothing freed yet
    assert portal_shop.service is not None
    assert activation_id in {a["id"] for a in portal_shop.service.list_activations(_online_id)}
    r = web.post("/shop/portal/free", data={"activation_id": activation_id, "csrf": csrf, "confirm": "yes"})
    assert r.status_code == 303  # POST-redirect-GET
    page = web.get(r.headers["location"]).text
    assert f"Activation {activation_id} was freed" in page and csrf_of(page) == csrf
    assert "freed_by_customer" in page  # recorded as the customer's doing, not the vendor's
    [freed] = portal_shop.service.list_activations(_online_id, include_freed=True)
    assert freed["freed_reason"] == "freed_by_customer"
    r = web.get("/shop/portal")  # the nav's portal link, signed in: the license, not the sign-in form
    assert r.status_code == 303 and r.headers["location"].endswith("/portal/license")
    forged = web.get("/shop/portal/license", params={"done": "freed", "id": "<script>"}).text
    assert "<script>" not in forged and 'id="notice"' not in forged


def test_a_request_code_can_be_uploaded_as_a_file(portal_shop: ShopServer, web: httpx.Client, smtp: SmtpSink) -> None:
    license_id, key = customer_license(portal_shop, model="offline")
    csrf = sign_in(web, smtp, key)
    request_code = Instance(Clock()).usage_request(key)
    r = web.post(
        "/shop/portal/offline-activate",
        data={"csrf": csrf},
        files={"request_file": ("usage-request.txt", request_code.encode())},
    )
    assert r.status_code == 200 and r.headers["content-disposition"].startswith("attachment;")
    assert portal_shop.service is not None
    assert len(portal_shop.service.list_activations(license_id)) == 1
