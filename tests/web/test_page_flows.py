"""The License page's flows in a real browser, against a real broker (MQTT over
WebSocket + the HTTP listener) and real activation and floating servers. Each state
is screenshotted (folder printed at the end of the session; WEB_SCREENSHOTS=dir to
choose it). The page's details (isolation, login errors, the key check, layout, keyboard,
reconnects, alarms): test_page_details.py."""

from __future__ import annotations

import re

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from mqtt_licensing.core.signing import public_key_to_text
from tests.helpers.broker import READER, READER_PASSWORD
from tests.helpers.floating import start_floating
from tests.web.conftest import STORE_URL, event_types, logged_in, start_site, wait_state

expect = pytest.importorskip("playwright.sync_api").expect
pytestmark = pytest.mark.timeout(120)


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
