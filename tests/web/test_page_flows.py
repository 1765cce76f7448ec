"""The License page's flows in a real browser, against a real broker (MQTT over
WebSocket + the HTTP listener) and real activation and floating servers. Each state
is screenshotted (folder printed at the end of the session; WEB_SCREENSHOTS=dir to
choose it)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from mqtt_licensing.core.signing import public_key_to_text
from tests.helpers.broker import READER, READER_PASSWORD, MqttClient, connected_clients
from tests.helpers.floating import start_floating
from tests.web.conftest import STORE_URL, log_in, start_site

expect = pytest.importorskip("playwright.sync_api").expect
pytestmark = pytest.mark.timeout(120)


def logged_in(page, site, **kwargs):
    log_in(page, site, **kwargs)
    page.wait_for_selector("#app-view:not([hidden])")
    page.wait_for_selector("#state-badge[data-state]")


def wait_state(page, state):
    page.wait_for_selector(f"#state-badge[data-state={state}]")


def drop_file(page, target, name, text):
    """What a drag and drop of a file from the desktop delivers to the page."""
    transfer = page.evaluate_handle(
        """([name, text]) => {
            const dt = new DataTransfer();
            dt.items.add(new File([text], name, { type: "text/plain" }));
            return dt;
        }""",
        [name, text],
    )
    page.dispatch_event(target, "dragover", {"dataTransfer": transfer})
    page.dispatch_event(target, "drop", {"dataTransfer": transfer})


def event_types(page):
    return page.eval_on_selector_all("#events li", "items => items.map(i => i.dataset.type)")


def test_online_activation_by_dropped_file_reactivate_and_deactivate(page, site, screenshots, tmp_path):
    vendor = site.vendor
    key = vendor.issue(features=["mqtt_server"], max_connections=10)
    license_id = vendor.license_id(key)
    logged_in(page, site)
    wait_state(page, "unlicensed")
    screenshots.take(page, "wizard")
    # Unlicensed: the wizard offers to buy, in the store beside the upgrade page (store_url).
    page.wait_for_selector("#buy-box:not([hidden])")
    assert page.get_attribute("#buy", "href") == STORE_URL.rsplit("/", 1)[0] + "/"

    # After payment: the license.txt attached to the key e-mail, dropped into the same wizard.
    drop_file(page, "#online-drop", "license.txt", f"{key}\n")
    page.wait_for_selector("#online-key-check.good")  # the page reads the file asynchronously
    assert page.input_value("#online-key") == key
    screenshots.take(page, "key-dropped")
    page.click("#online-activate")
    wait_state(page, "active")
    page.wait_for_selector("#actions:not([hidden])")
    assert page.is_hidden("#wizard")
    assert page.text_content("#d-license-id") == license_id
    assert page.eval_on_selector_all(".chip", "cs => cs.map(c => c.dataset.feature)") == ["mqtt_server"]
    assert page.text_content("#d-connections").startswith("0 of 10")
    masked = page.text_content("#d-key")
    assert masked.startswith(key[:10]) and "*****" in masked
    # The key is nowhere on the page now (the field it was dropped into is cleared) and
    # nothing was stored by the browser.
    assert key not in page.content() and page.input_value("#online-key") == ""
    assert page.evaluate("localStorage.length + sessionStorage.length") == 0 and page.context.cookies() == []
    upgrade = page.get_attribute("#upgrade", "href")
    assert upgrade == f"{STORE_URL}?license={license_id}"
    page.wait_for_selector("#events li[data-type=activated]")
    screenshots.take(page, "active")

    # The vendor adds a feature; Reactivate pulls it without a restart.
    vendor.service.update_license(license_id, {"add_features": ["iot_bridge_snowflake"]})
    page.click("#reactivate")
    page.wait_for_selector(".chip[data-feature=iot_bridge_snowflake]")
    assert "added IoT Bridge for Snowflake" in page.text_content("#actions-ok")
    screenshots.take(page, "reactivated")

    # Deactivate asks first; Cancel keeps the license.
    page.click("#deactivate")
    page.wait_for_selector("#confirm-dialog[open]")
    assert license_id in page.text_content("#confirm-text")
    screenshots.take(page, "confirm-deactivate", full_page=False)
    page.click("#confirm-cancel")
    page.wait_for_selector("#confirm-dialog:not([open])", state="attached")
    assert page.get_attribute("#state-badge", "data-state") == "active"
    page.click("#deactivate")
    page.click("#confirm-ok")
    wait_state(page, "unlicensed")
    page.wait_for_selector("#wizard:not([hidden])")
    assert page.is_hidden("#actions")
    # The vendor freed the activation: the key can be used elsewhere.
    assert vendor.service.list_activations(license_id) == []
    screenshots.take(page, "deactivated")
    assert page.console_errors == []


def test_trial_offers_buy_a_license(page, tmp_path, vendor, screenshots):
    trial = start_site(tmp_path, vendor, name="trial", trial_seconds=3600)
    try:
        logged_in(page, trial)
        wait_state(page, "trial")
        page.wait_for_selector("#buy-box:not([hidden])")
        assert page.get_attribute("#buy", "href") == "https://vendor.example/shop/"
        assert page.get_attribute("#buy", "target") == "_blank"
        screenshots.take(page, "trial-buy")
    finally:
        trial.broker.stop()


def test_offline_round_trip_with_download_and_upload(page, site, screenshots, tmp_path):
    vendor = site.vendor
    key = vendor.issue(features=["mqtt_server", "mqtt_server_support"], model="offline")
    logged_in(page, site)
    page.check("input[name=method][value=offline]")
    page.fill("#offline-key", key)
    page.click("#offline-generate")
    wait_state(page, "pending_offline")
    page.wait_for_selector("#offline-pending:not([hidden])")
    assert "Request made" in page.text_content("#offline-pending-at")
    screenshots.take(page, "offline-pending")

    with page.expect_download() as info:
        page.click("#offline-download")
    download = info.value
    assert download.suggested_filename == "request.txt"
    request_file = tmp_path / "request.txt"
    download.save_as(request_file)
    assert request_file.read_text() == page.input_value("#offline-request-code")

    # The vendor side, by files, as a person would carry them.
    answer = vendor.service.offline_activate(request_file.read_text())
    usage_file = tmp_path / "usage-license.txt"
    usage_file.write_text(answer.usage_license)
    page.set_input_files("#offline-file", str(usage_file))
    expect(page.locator("#offline-license")).to_have_value(re.compile("USAGE LICENSE"))
    page.click("#offline-apply")
    wait_state(page, "active")
    assert page.text_content("#d-model") == "offline"
    assert page.is_hidden("#reactivate")  # an offline license cannot be reactivated
    assert page.text_content("#wizard-title") == "Update the offline license"
    screenshots.take(page, "offline-active")

    page.click("#deactivate")
    page.click("#confirm-ok")
    wait_state(page, "unlicensed")
    page.wait_for_selector("#deactivation-code-box:not([hidden])")
    with page.expect_download() as info:
        page.click("#download-deactivation")
    code_file = tmp_path / "deactivation.txt"
    info.value.save_as(code_file)
    screenshots.take(page, "offline-deactivated")
    freed = vendor.service.offline_deactivate(code_file.read_text())
    assert freed.freed is True and freed.activation_id == answer.activation_id
    assert page.console_errors == []


def test_a_pending_offline_request_can_be_cancelled(page, site, screenshots):
    key = site.vendor.issue(features=["mqtt_server"], model="offline")
    logged_in(page, site)
    page.check("input[name=method][value=offline]")
    page.fill("#offline-key", key)
    page.click("#offline-generate")
    wait_state(page, "pending_offline")
    page.click("#offline-cancel")
    page.wait_for_selector("#confirm-dialog[open]")
    assert page.text_content("#confirm-title") == "Cancel the offline request?"
    screenshots.take(page, "cancel-offline", full_page=False)
    page.click("#confirm-ok")
    wait_state(page, "unlicensed")
    page.wait_for_selector("#offline-pending", state="hidden")
    page.wait_for_selector("#events li[data-type=offline_request_cancelled]")


def test_floating_lease(page, vendor, tmp_path, screenshots):
    pool_vendor = Ed25519PrivateKey.generate()
    with start_floating(tmp_path / "fls", vendor_key=pool_vendor, seats=3) as fls:
        site = start_site(tmp_path, vendor, vendor_public_key=public_key_to_text(pool_vendor))
        try:
            logged_in(page, site)
            page.check("input[name=method][value=floating]")
            page.fill("#floating-url", fls.url)
            page.check("#feature-mqtt_server_support")
            screenshots.take(page, "floating-form")
            page.click("#floating-lease")
            wait_state(page, "active")
            assert page.text_content("#d-model") == "floating"
            lease = page.text_content("#d-lease")
            assert fls.url in lease and "3 seats" in lease and "lease expires in" in lease
            features = page.eval_on_selector_all(".chip", "cs => cs.map(c => c.dataset.feature)")
            assert features == ["mqtt_server", "mqtt_server_support"]
            assert fls.service.status()["seats"]["used"] == 1
            screenshots.take(page, "floating-active")
            page.click("#deactivate")
            page.click("#confirm-ok")
            wait_state(page, "unlicensed")
            assert fls.service.status()["seats"]["used"] == 0  # the seat went back
        finally:
            site.broker.stop()


def test_reader_sees_status_and_events_but_no_buttons(page, site, screenshots):
    key = site.vendor.issue(features=["mqtt_server"])
    with site.broker.admin() as admin:
        admin.request("activate", {"license_key": key})
    logged_in(page, site, username=READER, password=READER_PASSWORD)
    wait_state(page, "active")
    assert page.text_content("#who") == f"{READER} (reader)"
    assert page.is_hidden("#actions") and page.is_hidden("#wizard")
    visible_buttons = page.eval_on_selector_all(
        "button, a.button", "bs => bs.filter(b => b.offsetParent !== null).map(b => b.id)"
    )
    assert visible_buttons == ["logout"]
    # What happened before the reader logged in comes from $license/events/recent ...
    page.wait_for_selector("#events li[data-type=activated]")
    # ... and events arrive live; the page's role probe left none behind.
    with site.broker.admin() as admin:
        admin.request("reactivate")
    page.wait_for_selector("#events li[data-type=command] >> text=reactivate")
    assert "request_refused" not in event_types(page)
    assert event_types(page).count("activated") == 1  # the recent list and live events do not repeat
    screenshots.take(page, "reader")


def test_a_refusal_from_the_vendor_shows_its_message_and_code(page, site, screenshots):
    from mqtt_licensing.core.keys import format_key

    unknown = format_key(bytes(range(15)))  # well formed, checksummed, never issued
    logged_in(page, site)
    page.fill("#online-key", unknown)
    page.click("#online-activate")
    page.wait_for_selector("#online-error:not([hidden])")
    assert "(key_not_found)" in page.text_content("#online-error")
    assert page.get_attribute("#state-badge", "data-state") == "unlicensed"
    assert page.is_enabled("#online-activate")  # the operator can correct and retry
    screenshots.take(page, "vendor-refusal")


def test_nothing_is_fetched_from_anywhere_but_the_broker(page, site):
    """Plants are air-gapped: the page, its script and the MQTT client all come from the broker."""
    requested = []
    page.on("request", lambda r: requested.append(r.url))
    page.on("websocket", lambda ws: requested.append(ws.url))
    logged_in(page, site)
    assert any(url.startswith("ws://") for url in requested)
    allowed = (site.url, f"ws://127.0.0.1:{site.broker.ws_port}/", f"blob:{site.url}")  # blob: MQTT.js timer worker
    assert [url for url in requested if not url.startswith(allowed)] == []


def test_wrong_password_shows_an_error(page, site, screenshots):
    log_in(page, site, password="not-the-password")
    page.wait_for_selector("#login-error:not([hidden])")
    assert "wrong username or password" in page.text_content("#login-error")
    assert page.is_hidden("#app-view")
    assert page.input_value("#password") == ""  # nothing to resubmit by accident
    screenshots.take(page, "wrong-password")


def test_a_key_with_one_wrong_character_is_caught_before_sending(page, site, screenshots):
    key = site.vendor.issue(features=["mqtt_server"])
    typo = key[:-1] + ("0" if key[-1] != "0" else "1")
    logged_in(page, site)
    page.fill("#online-key", typo)
    page.wait_for_selector("#online-key-check.bad")
    assert "checksum does not match" in page.text_content("#online-key-check")
    assert page.is_disabled("#online-activate")
    page.press("#online-key", "Enter")  # submitting anyway sends nothing
    screenshots.take(page, "typo")
    # Fix the typo and activate: had the typo gone out, its command_failed event would
    # have arrived before this activation's events.
    page.fill("#online-key", key)
    page.wait_for_selector("#online-key-check.good")
    page.click("#online-activate")
    wait_state(page, "active")
    page.wait_for_selector("#events li[data-type=command]")
    assert "command_failed" not in event_types(page)


def test_phone_width_renders(page, site, screenshots):
    key = site.vendor.issue(features=["mqtt_server", "mqtt_server_support"], max_connections=5)
    with site.broker.admin() as admin:
        admin.request("activate", {"license_key": key})
    page.set_viewport_size({"width": 390, "height": 844})
    logged_in(page, site)
    wait_state(page, "active")
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    box = page.locator("#status-card").bounding_box()
    assert box is not None and box["width"] <= 390
    screenshots.take(page, "phone")


def test_keyboard_only(page, site, screenshots):
    key = site.vendor.issue(features=["mqtt_server"])
    page.goto(site.url)
    page.wait_for_selector("body[data-ready=true]")
    assert page.evaluate("document.activeElement.id") == "username"
    page.keyboard.type("admin")
    page.keyboard.press("Tab")
    page.keyboard.type("admin-secret")
    page.keyboard.press("Enter")
    wait_state(page, "unlicensed")

    def tab_to(element_id, limit=40):
        for _ in range(limit):
            page.keyboard.press("Tab")
            if page.evaluate("document.activeElement.id") == element_id:
                return
        raise AssertionError(f"#{element_id} is not reachable by Tab")

    tab_to("online-key")
    page.keyboard.type(key)
    page.keyboard.press("Enter")
    wait_state(page, "active")
    tab_to("deactivate")
    page.keyboard.press("Enter")
    page.wait_for_selector("#confirm-dialog[open]")
    assert page.evaluate("document.activeElement.id") == "confirm-cancel"  # the safe choice
    screenshots.take(page, "keyboard-confirm", full_page=False)
    page.keyboard.press("Escape")
    page.wait_for_selector("#confirm-dialog:not([open])", state="attached")
    assert page.get_attribute("#state-badge", "data-state") == "active"


def test_the_page_reconnects_after_a_broker_restart(page, site):
    key = site.vendor.issue(features=["mqtt_server"])
    logged_in(page, site)
    site.broker.restart()  # same MQTT, WebSocket and HTTP ports, same state folder
    page.wait_for_selector("#conn-state.up")
    with site.broker.admin() as admin:
        admin.request("activate", {"license_key": key})
    wait_state(page, "active")  # the retained status arrives over the new connection


def test_alarms_show_on_the_status_and_in_the_events(page, site, screenshots):
    key = site.vendor.issue(features=["mqtt_server"], max_connections=5)
    logged_in(page, site)
    page.fill("#online-key", key)
    page.click("#online-activate")
    wait_state(page, "active")
    with connected_clients(site.broker.port, 4, prefix="plc-"):  # 80 % of the licensed connections
        page.wait_for_selector("#alarms .alarm[data-code=connection_quota_high]")
        page.wait_for_selector("#events li[data-type=alarm_raised]")
        page.click("#refresh")
        expect(page.locator("#d-connections")).to_contain_text("4 of 5")
        assert "high" in page.get_attribute("#d-connections .fill", "class")
        screenshots.take(page, "alarm")
    page.wait_for_selector("#events li[data-type=alarm_cleared]")
    page.wait_for_selector("#alarms", state="hidden")


def test_event_text_from_clients_is_shown_as_text(page, site):
    """Client ids in events come from anyone who can open a socket: never markup."""
    logged_in(page, site)
    hostile = '<img src=x id=injected onerror="window.pwned=1">'
    with MqttClient(site.broker.port, client_id=hostile, username="admin", password="wrong") as c:
        assert c.connect() == 5
    page.wait_for_selector("#events li[data-type=connection_refused]")
    assert hostile in page.text_content("#events")
    assert page.query_selector("#injected") is None and page.evaluate("window.pwned") is None


def test_screenshot_for_readme(page, site, screenshots):
    """The README's picture: an active online license with clients and a few events."""
    key = site.vendor.issue(
        features=["mqtt_server", "mqtt_server_support"], max_connections=25, support_until=1893456000
    )
    logged_in(page, site)
    page.fill("#online-key", key)
    page.click("#online-activate")
    wait_state(page, "active")
    with connected_clients(site.broker.port, 7, prefix="plc-"):
        page.click("#refresh")
        expect(page.locator("#d-connections")).to_contain_text("7 of 25")
        page.wait_for_selector("#refresh:not([disabled])")
        page.focus("body")
        path = screenshots.take(page, "readme", full_page=False)
    assert Path(path).stat().st_size > 10_000
