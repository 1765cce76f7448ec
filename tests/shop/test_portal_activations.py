"""The portal's activations as a customer with many brokers reads them: each broker's name, the
names it had before (the newest few, escaped: the broker chose them), and when we last heard from
it in words ("3 hours ago", "Not heard from for 5 days"), on the account page and on the question
before a free. Real shop server, real vendor service; the clock moved by hand."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from mqtt_licensing.core import labels
from mqtt_licensing.core.keys import key_digest
from mqtt_licensing.servers.shop.devtools import LocalStripe, SmtpSink
from tests.shop.conftest import start_shop
from tests.shop.support import ShopServer
from tests.shop.test_accounts import mailed
from tests.shop.test_portal import Clock, Instance, csrf_of, customer_license

HOSTILE = "<script>alert(1)</script>"
EMAIL = "fleet@example.com"

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def fleet_shop(tmp_path: Path, localstripe: LocalStripe, smtp: SmtpSink, clock: Clock) -> Iterator[ShopServer]:
    server = start_shop(tmp_path, localstripe, smtp, webhook=False, clock=clock)
    yield server
    server.stop()


def _activate(shop: ShopServer, key: str, inst: Instance, label: str) -> str:
    assert shop.service is not None
    blob = inst.request(labels.KIND_ACTIVATE, key_digest=key_digest(key), label=label)
    return str(shop.service.activate(key, blob).activation_id)


def _check_in(shop: ShopServer, inst: Instance, activation_id: str, label: str) -> None:
    assert shop.service is not None
    shop.service.check_in(inst.request(labels.KIND_CHECK_IN, activation_id=activation_id, label=label))


def _row(page: str, activation_id: str) -> str:
    found = re.search(rf'<tr data-activation="{activation_id}">(.*?)</tr>', page, re.S)
    assert found, page
    return found.group(1)


def test_the_account_page_shows_earlier_names_escaped_and_when_each_broker_was_last_seen(
    fleet_shop: ShopServer, smtp: SmtpSink, clock: Clock
) -> None:
    license_id, key = customer_license(fleet_shop, email=EMAIL, max_activations=3)
    renamed, quiet, offline = Instance(clock), Instance(clock), Instance(clock)
    renamed_id = _activate(fleet_shop, key, renamed, "line-1")
    quiet_id = _activate(fleet_shop, key, quiet, "yard-7")
    for name in ("line-2", HOSTILE, "line-4", "line-5", "hall-b-6"):  # renamed five times
        _check_in(fleet_shop, renamed, renamed_id, name)
    offline_lic, offline_key = customer_license(fleet_shop, email=EMAIL, model="offline")
    assert fleet_shop.service is not None
    code = offline.usage_request(offline_key)
    offline_id = fleet_shop.service.offline_activate(code).activation_id

    clock.now += 3 * 3600 + 120
    _check_in(fleet_shop, renamed, renamed_id, "hall-b-6")  # heard from now; quiet is not

    with httpx.Client(base_url=fleet_shop.url, timeout=20, trust_env=False) as web:

        def account_page(signed_in_before: int) -> str:  # a session lasts an hour: signed in again
            assert web.post("/shop/portal/email-code", data={"email": EMAIL}).status_code == 303
            web.post("/shop/portal/email-login", data={"email": EMAIL, "code": mailed(smtp, signed_in_before + 1)[0]})
            return web.get("/shop/portal/account").text

        page = account_page(0)
        assert f'data-license="{license_id}"' in page and f'data-license="{offline_lic}"' in page

        row = _row(page, renamed_id)
        assert '<span class="instance-label">hall-b-6</span>' in row
        # The newest three earlier names, newest first, then how many more; the markup is text.
        assert f"was line-5, line-4, {html.escape(HOSTILE)} and 2 more" in row
        assert HOSTILE not in page
        assert '<td class="last-seen"' in row and ">Just now<" in row
        assert ">3 hours ago<" in _row(page, quiet_id) and "earlier-labels" not in _row(page, quiet_id)
        assert ">Offline broker: its usage license was made 3 hours ago<" in _row(page, offline_id)

        clock.now += 5 * 86400
        page = account_page(1)
        assert ">Not heard from for 5 days<" in _row(page, quiet_id)
        # The question before a free says when we last heard from that broker, and its names.
        csrf = csrf_of(page)
        question = web.post(
            "/shop/portal/free", data={"csrf": csrf, "license_id": license_id, "activation_id": renamed_id}
        ).text
        assert "confirm-free" in question and "Last heard from: <strong" in question
        assert "was line-5, line-4, " + html.escape(HOSTILE) in question and HOSTILE not in question
