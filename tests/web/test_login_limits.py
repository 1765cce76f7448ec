"""The License page's login over the admin cap says why: a session limit, not a wrong password."""

from __future__ import annotations

import pytest

from tests.helpers.broker import ADMIN, ADMIN_PASSWORD, MqttClient
from tests.web.conftest import log_in, start_site

pytest.importorskip("playwright.sync_api")
pytestmark = pytest.mark.timeout(120)


def test_a_login_over_the_admin_cap_names_the_limit(page, tmp_path, vendor):
    site = start_site(tmp_path, vendor, max_admin_connections=1)
    try:
        with MqttClient(site.broker.port, client_id="other-tab", username=ADMIN, password=ADMIN_PASSWORD) as tab:
            assert tab.connect() == 0
            log_in(page, site)
            page.wait_for_selector("#login-error:not([hidden])")
            message = page.text_content("#login-error")
        assert "too many admin or reader sessions" in message and "wrong username" not in message, message
        page.console_errors.clear()  # the refused WebSocket login is logged by the browser
    finally:
        site.broker.stop()
