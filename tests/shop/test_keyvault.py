"""License keys kept for the portal, sealed at rest: the database alone (a dump, a backup) reveals no
key; the secret is its own owner-only file; a sealed key moved onto another license does not open;
the key e-mail still carries the key and license.txt."""

from __future__ import annotations

import logging
import re
import shutil
from pathlib import Path

import httpx
import pytest

from mqtt_licensing.core.errors import ErrorCode, LicensingError
from mqtt_licensing.servers.shop.account_store import AccountTx
from mqtt_licensing.servers.shop.devtools import SmtpSink, body_of
from mqtt_licensing.servers.shop.keyvault import SECRET_FILE, KeyVault, load_or_create_secret
from tests.shop.support import ShopServer, card_token, order_form, pay, wait_state


def purchase(http: httpx.Client, stripe_url: str, smtp: SmtpSink, count: int) -> tuple[str, str]:
    order_id = order_form(http, {"mqtt_server": 1})
    assert pay(http, order_id, card_token(stripe_url)).status_code == 200
    license_id = wait_state(http, order_id, "fulfilled", timeout=30)["license_id"]
    mail = smtp.wait(lambda m: m["Subject"].startswith("Your MQTT license key"), count=count, timeout=20)[-1]
    key = re.search(r"^\s+(MQL\S+)\s*$", body_of(mail), re.M).group(1)  # type: ignore[union-attr]
    assert next(mail.iter_attachments()).get_content().strip() == key  # license.txt, for the License page
    return str(license_id), key


@pytest.mark.timeout(90)
def test_a_stolen_database_reveals_no_key(
    shop: ShopServer, http: httpx.Client, smtp: SmtpSink, stripe_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    assert shop.shop is not None
    first, first_key = purchase(http, stripe_url, smtp, 1)
    second, _ = purchase(http, stripe_url, smtp, 2)
    secret = shop.data_dir / SECRET_FILE
    assert secret.stat().st_mode & 0o777 == 0o600
    # Every byte the database holds (file, WAL, free pages): the key in plain text is in none.
    stolen = b"".join(p.read_bytes() for p in shop.data_dir.iterdir() if p.name.startswith("vendor.db"))
    assert stolen and first_key.encode() not in stolen
    ours = [r.getMessage() for r in caplog.records if r.name.startswith("mqtt_licensing")]  # not the SMTP sink's
    assert ours and not [line for line in ours if first_key in line]
    vault = shop.shop.orders.vault
    assert vault.kept(shop.shop.store, first) == first_key
    with shop.shop.store.transaction() as tx:
        sealed = AccountTx(tx.conn).kept_key(first)
    assert sealed is not None
    # Moved onto the other license's row, it does not open (the license id is sealed with it).
    with pytest.raises(LicensingError) as moved:
        vault.open(second, *sealed)
    assert moved.value.code is ErrorCode.STATE_CORRUPT
    # Another server's secret (the database without this folder's file) opens nothing.
    with pytest.raises(LicensingError):
        KeyVault(load_or_create_secret(shop.data_dir / "elsewhere")).open(first, *sealed)


def test_the_secret_is_made_once_and_a_damaged_one_is_refused(tmp_path: Path) -> None:
    first = load_or_create_secret(tmp_path)
    assert load_or_create_secret(tmp_path) == first and len(first) == 32
    shutil.copy(tmp_path / SECRET_FILE, tmp_path / "backup")
    (tmp_path / SECRET_FILE).write_text("not hex\n")
    with pytest.raises(LicensingError) as damaged:
        load_or_create_secret(tmp_path)
    assert damaged.value.code is ErrorCode.STATE_CORRUPT and "restore it from a backup" in damaged.value.message
    assert "secret" not in repr(KeyVault(first)).lower().replace("enabled", "")
