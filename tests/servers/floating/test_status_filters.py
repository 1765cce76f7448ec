"""``floating status --label TEXT --silent-for DURATION`` and ``GET /v1/admin/status?label=&silent_for=``:
the leases of the brokers named like TEXT (now or before, any case) or not renewed for a while,
with the seat counts of the whole pool; bad values are typed errors; hostile labels and filters
print as text. On a real floating server whose clock the test moves."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from mqtt_licensing.cli.main import main
from mqtt_licensing.clients.floating import FloatingClient, lease_request
from mqtt_licensing.core.listing import LeaseFilter
from mqtt_licensing.servers.floating.schema import leases

from .conftest import FakeClock

pytestmark = pytest.mark.timeout(60)

ACQ, RENEW = "lease_acquire", "lease_renew"


def _labels(status: dict[str, Any]) -> list[str]:
    return [str(le["label"]) for le in status["leases"]]


async def test_filters_pick_leases_and_keep_the_pool_counts(floating: Any, clock: FakeClock, capsys: Any) -> None:
    fls = floating(seats=5, ttl=600, clock=clock)
    brokers = {name: Ed25519PrivateKey.generate() for name in ("line-7", "Line-8", "yard-1", "yard-2")}
    async with FloatingClient(fls.url, token=fls.token) as client:
        for name, key in brokers.items():
            await client.acquire(lease_request(key, ACQ, label=name, now=clock()))
            clock.advance(1)  # leases are listed by when they were issued
        clock.advance(300)  # two brokers renew (one renamed), two miss their renewals
        await client.renew(lease_request(brokers["line-7"], RENEW, now=clock()))
        await client.renew(lease_request(brokers["yard-2"], RENEW, label="hall-2", now=clock()))
        assert _labels(await client.admin_status(label="LINE")) == ["line-7", "Line-8"]
        assert _labels(await client.admin_status(label="yard")) == ["yard-1", "hall-2"]  # by its earlier name
        assert _labels(await client.admin_status(silent_for=240)) == ["Line-8", "yard-1"]
        both = await client.admin_status(label="8", silent_for=240)
        assert _labels(both) == ["Line-8"] and both["seats"]["used"] == 4  # the pool's count, not the page's
        assert both["filter"] == 'label contains "8", not renewed for more than 4m'
        assert len((await client.admin_status())["leases"]) == 4

    # The CLI reads the real clock: the renewals moved 1,000 s back (Line-8 and yard-1 silent
    # ~1,000 s, the other two ~700 s).
    with fls.service.store.engine.begin() as conn:
        conn.execute(sa.update(leases).values(renewed_at=leases.c.renewed_at - 1000))
    capsys.readouterr()
    assert main(["floating", "status", "--data", str(fls.data_dir), "--silent-for", "14m"]) == 0
    out = capsys.readouterr().out
    assert "label Line-8" in out and "label yard-1" in out and "line-7" not in out
    assert "seats            4 used, 1 free, 5 total" in out
    assert out.splitlines()[-1] == "leases           2 of 4 match (not renewed for more than 14m)"
    assert main(["floating", "status", "--data", str(fls.data_dir), "--label", "hall", "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert _labels(status) == ["hall-2"] and status["seats"]["used"] == 4


@pytest.mark.parametrize(
    ("params", "code"),
    [({"silent_for": "soon"}, "invalid_field"), ({"label": ""}, "invalid_field"), ({"lable": "x"}, "bad_request")],
)
def test_bad_filters_are_typed_errors(floating: Any, params: dict[str, str], code: str) -> None:
    fls = floating(seats=1)
    with httpx.Client(base_url=fls.url, trust_env=False) as http:
        answer = http.get("/v1/admin/status", params=params, headers={"Authorization": f"Bearer {fls.token}"})
    assert answer.status_code == 400 and answer.json()["error"]["code"] == code, answer.text


async def test_hostile_labels_and_filters_print_as_text(floating: Any, capsys: Any) -> None:
    fls = floating(seats=2)
    async with FloatingClient(fls.url) as client:
        await client.acquire(lease_request(Ed25519PrivateKey.generate(), ACQ, label="fine"))
    with fls.service.store.engine.begin() as conn:
        conn.execute(sa.update(leases).values(label="\x1b]0;pwned\x07\x1b[2J<script>alert(1)</script>"))
    for flags in (["--label", "pwned"], ["--label", "\x1b[2J"], ["--label", "\x1b[2J", "--json"]):
        capsys.readouterr()
        assert main(["floating", "status", "--data", str(fls.data_dir), *flags]) == 0
        out = capsys.readouterr().out
        assert "\x1b" not in out and "\x07" not in out, (flags, out)
    capsys.readouterr()
    main(["floating", "status", "--data", str(fls.data_dir), "--label", "\x1b[2J"])
    out = capsys.readouterr().out
    assert "label \\x1b]0;pwned\\x07\\x1b[2J<script>" in out
    assert out.splitlines()[-1] == 'leases           1 of 1 match (label contains "\\x1b[2J")'


@pytest.mark.timeout(20)
async def test_status_never_waits_for_the_write_lock(floating: Any) -> None:
    """SQLite: a status (its own engine, as ``floating status`` has) reads in a deferred
    transaction, so it answers while a renewal's transaction holds the write lock (``BEGIN
    IMMEDIATE`` would wait 30 s for it, past this test's timeout)."""
    import sqlite3

    from mqtt_licensing.servers.floating.service import FloatingService

    fls = floating(seats=2)
    if fls.service.store.engine.dialect.name != "sqlite":
        pytest.skip("SQLite's write lock; PostgreSQL readers never take one")
    async with FloatingClient(fls.url) as client:
        await client.acquire(lease_request(Ed25519PrivateKey.generate(), ACQ, label="line-7"))
    cli = FloatingService.open(fls.data_dir)
    writer = sqlite3.connect(str(fls.data_dir / "floating.db"), timeout=5, isolation_level=None)
    try:
        writer.execute("BEGIN IMMEDIATE")
        writer.execute("UPDATE leases SET renewed_at = renewed_at")
        assert _labels(cli.status(LeaseFilter(label="line"))) == ["line-7"]
        writer.execute("COMMIT")
    finally:
        writer.close()
        cli.close()
