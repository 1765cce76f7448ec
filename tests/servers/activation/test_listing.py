"""The vendor's list of activations for a fleet: filters by license, label (current or earlier,
any case), silence and status, one stable order a page at a time, a count of all that match;
on a real vendor server (its clock moved by hand) through the admin client, over raw HTTP for
the refusals, and through ``vendor activations`` in-process."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from mqtt_licensing.cli.main import main
from mqtt_licensing.clients.activation import ActivationClient
from mqtt_licensing.clients.admin import VendorAdminClient
from mqtt_licensing.core.listing import STATUSES, ActivationFilter
from mqtt_licensing.core.signing import b64
from mqtt_licensing.servers.activation.schema import activations
from tests.helpers.activation import VendorHandle

from .conftest import Instance, ManualClock

HOSTILE = "\x1b]0;pwned\x07\x1b[2J\x1b[32mACTIVE\x1b[0m<script>alert(1)</script>"


async def _activate(vendor: VendorHandle, key: str, label: str, clock: ManualClock) -> tuple[Instance, str]:
    inst = Instance()
    async with ActivationClient(vendor.url) as client:
        result = await client.activate(key, inst.activate(key, label=label, created_at=clock()))
    return inst, str(result["activation_id"])


async def _check_in(vendor: VendorHandle, inst: Instance, act: str, clock: ManualClock, **kw: Any) -> None:
    async with httpx.AsyncClient(base_url=vendor.url, trust_env=False) as http:
        answer = await http.post(
            "/v1/activations/check-in", json={"request": b64(inst.check_in(act, created_at=clock(), **kw))}
        )
        assert answer.status_code == 200, answer.text


@pytest.fixture
async def fleet(clocked_vendor: VendorHandle, clock: ManualClock) -> dict[str, Any]:
    """Two licenses (A releases after 3.5 h of silence). Two activations of A, an hour later five
    more a minute apart; 3 h later four of those check in (one renamed), the first two are
    released, one is freed by the vendor: hall-b-2 is the one live activation silent for 3 h."""
    vendor, service = clocked_vendor, clocked_vendor.service
    lic_a, key_a = service.issue_license(
        features=["mqtt_server"], max_activations=10, heartbeat_interval=600, release_after=12600
    )
    lic_b, key_b = service.issue_license(features=["mqtt_server"], max_activations=10)
    acts: dict[str, tuple[Instance, str]] = {}
    for name, key in (
        ("Line-8-Broker", key_a),
        ("doomed", key_a),
        ("line-7-broker", key_a),
        ("line-9", key_a),
        ("hall-b-1", key_b),
        ("hall-b-2", key_b),
        ("line-100%_x", key_b),
    ):
        acts[name] = await _activate(vendor, key, name, clock)
        clock.advance(3600 if name == "doomed" else 60)
    clock.advance(3 * 3600 - 5 * 60)  # the first two: silent 4 h and more; the others 3 h
    for name in ("line-7-broker", "line-9", "hall-b-1", "line-100%_x"):
        inst, act = acts[name]
        await _check_in(vendor, inst, act, clock, label="hall-c-9" if name == "line-9" else name)
    service.free_activation(acts["hall-b-1"][1])
    service.release_silent()  # the server's own duty may have done it already: either way, once
    ids = {name: act for name, (_inst, act) in acts.items()}
    return {"vendor": vendor, "ids": ids, "a": lic_a["id"], "b": lic_b["id"]}


def _names(page: dict[str, Any], ids: dict[str, str]) -> list[str]:
    by_id = {act: name for name, act in ids.items()}
    return [by_id[a["id"]] for a in page["activations"]]


async def test_each_filter_over_the_admin_api(fleet: dict[str, Any]) -> None:
    vendor, ids = fleet["vendor"], fleet["ids"]
    async with VendorAdminClient(vendor.url, token=vendor.token) as admin:

        async def names(**kw: Any) -> list[str]:
            return _names(await admin.find_activations(ActivationFilter(**kw)), ids)

        assert await names() == ["line-7-broker", "line-9", "hall-b-2", "line-100%_x"]  # active, oldest first
        # A piece of the label, any case, current or earlier: line-9 is hall-c-9 now.
        assert await names(label="LINE-") == ["line-7-broker", "line-9", "line-100%_x"]
        assert await names(label="hall-c") == ["line-9"]
        # LIKE's wildcards are text: "%" and "_" match only themselves.
        assert await names(label="100%_") == ["line-100%_x"]
        assert await names(label="line%9") == []
        assert await names(license_id=fleet["a"]) == ["line-7-broker", "line-9"]
        # Silent: hall-b-2 never checked in after activating, three hours ago.
        assert await names(silent_for=2 * 3600) == ["hall-b-2"]
        assert await names(silent_for=4 * 3600) == []
        released = await admin.find_activations(ActivationFilter(statuses=("released",)))
        assert _names(released, ids) == ["Line-8-Broker", "doomed"]
        assert {a["freed_reason"] for a in released["activations"]} == {"released_no_heartbeat"}
        assert await names(statuses=("freed",)) == ["hall-b-1"]
        assert await names(statuses=("freed", "released"), label="b") == ["Line-8-Broker", "hall-b-1"]
        assert await names(statuses=("freed", "released"), label="b", silent_for=3600) == ["Line-8-Broker"]
        everything = await admin.find_activations(ActivationFilter(statuses=STATUSES))
        assert everything["total"] == everything["shown"] == 7 and everything["next"] is None
        assert all(a["last_seen_at"] >= a["created_at"] for a in everything["activations"])
        # The older call still answers every activation (all pages).
        assert len(await admin.activations(include_freed=True)) == 7


async def test_pages_follow_one_stable_order_and_count_every_match(fleet: dict[str, Any]) -> None:
    vendor, ids = fleet["vendor"], fleet["ids"]
    wanted = ActivationFilter(statuses=STATUSES, limit=3)
    seen: list[str] = []
    async with VendorAdminClient(vendor.url, token=vendor.token) as admin:
        while True:
            page = await admin.find_activations(wanted)
            assert page["total"] == 7 and page["limit"] == 3 and page["shown"] <= 3
            seen += _names(page, ids)
            if page["next"] is None:
                break
            wanted = replace(wanted, after=page["next"])
    assert seen == list(ids)  # in creation order, none twice, none left out
    assert page["shown"] == 1


REFUSALS = [
    ({"silent_for": "2x"}, 400, "invalid_field", "silent_for"),
    ({"silent_for": "0"}, 400, "invalid_field", "silent_for"),
    ({"status": "gone"}, 400, "invalid_field", "status"),
    ({"limit": "0"}, 400, "invalid_field", "limit"),
    ({"limit": "10001"}, 400, "invalid_field", "limit"),
    ({"limit": "ten"}, 400, "invalid_field", "limit"),
    ({"label": ""}, 400, "invalid_field", "label"),
    ({"label": "x" * 65}, 400, "invalid_field", "label"),
    ({"after": "act_nobody"}, 400, "invalid_field", "after"),
    ({"after": "a b"}, 400, "invalid_field", "after"),
    ({"lable": "line"}, 400, "bad_request", "unknown parameter"),
    ({"status": "active", "include_freed": "true"}, 400, "bad_request", "not both"),
    ({"license_id": "lic_nobody"}, 404, "not_found", "lic_nobody"),
]


@pytest.mark.parametrize(("params", "status", "code", "words"), REFUSALS)
def test_bad_parameters_are_typed_errors(
    vendor: VendorHandle, params: dict[str, str], status: int, code: str, words: str
) -> None:
    with httpx.Client(base_url=vendor.url, trust_env=False) as http:
        answer = http.get("/v1/admin/activations", params=params, headers={"Authorization": f"Bearer {vendor.token}"})
    assert answer.status_code == status, answer.text
    error = answer.json()["error"]
    assert error["code"] == code and words in error["message"] and "\n" not in error["message"]


def _run(capsys: Any, *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


async def test_vendor_activations_filters_pages_and_counts(vendor: VendorHandle, capsys: Any) -> None:
    key = vendor.issue(max_activations=5)
    async with vendor.client() as http:
        for label in ("line-7", "line-8", "yard-1"):
            assert (await http.post("/v1/activations", json=Instance().activation_body(key, label=label))).is_success
    data = str(vendor.data_dir)
    with vendor.service.store.engine.begin() as conn:  # two of them last heard of three hours ago
        conn.execute(
            sa.update(activations)
            .where(activations.c.label != "line-8")
            .values(
                last_check_in_at=activations.c.created_at - 3 * 3600, created_at=activations.c.created_at - 3 * 3600
            )
        )
    code, out, _ = _run(capsys, "vendor", "activations", "--data", data, "--silent-for", "2h", "--limit", "1")
    lines = out.splitlines()
    assert code == 0 and len(lines) == 2, out
    first = vendor.service.find_activations(ActivationFilter(silent_for=7200))["activations"][0]
    assert first["id"] in lines[0] and "seen 3 h ago" in lines[0]
    assert lines[1] == (
        f"2 activations match (active, silent for more than 2h); showing 1; next page: --after {first['id']}"
    )
    out = _run(capsys, "vendor", "activations", "--data", data, "--label", "LINE", "--silent-for", "1h30m")[1]
    assert "label=line-7" in out and "line-8" not in out and "yard-1" not in out
    assert out.splitlines()[-1] == '1 activation matches (active, label contains "LINE", silent for more than 1h30m)'
    page = json.loads(_run(capsys, "vendor", "activations", "--data", data, "--label", "line", "--json")[1])
    assert (page["total"], page["shown"], page["next"]) == (2, 2, None)
    assert [a["label"] for a in page["activations"]] == ["line-7", "line-8"]
    out = _run(capsys, "vendor", "activations", "--data", data, "--status", "released")[1]
    assert out == "no activations match (released)\n"

    # Mistakes are one line each, before the database is opened.
    for flags, words in (
        (["--silent-for", "soon"], "must be a duration"),
        (["--status", "lost"], "must be active, freed, released"),
        (["--limit", "-1"], "must be a number"),
        (["--status", "freed", "--all"], "not allowed with"),
    ):
        with pytest.raises(SystemExit) as exit_info:
            main(["vendor", "activations", "--data", data, *flags])
        assert exit_info.value.code == 2
        assert words in capsys.readouterr().err


async def test_new_outputs_print_hostile_labels_and_filters_as_text(vendor: VendorHandle, capsys: Any) -> None:
    """A label in the database holding terminal escapes and markup (written by anything but this
    server's check), and a filter pasted with escapes in it: the table, its count line and
    ``--json`` carry no raw control character."""
    key = vendor.issue()
    async with vendor.client() as http:
        assert (await http.post("/v1/activations", json=Instance().activation_body(key, label="ok"))).is_success
    with vendor.service.store.engine.begin() as conn:
        conn.execute(sa.update(activations).values(label=HOSTILE))
    data = str(vendor.data_dir)
    for flags in ([], ["--label", "pwned"], ["--label", "\x1b[2J"], ["--json"], ["--label", "\x1b]0;x\x07", "--json"]):
        code, out, err = _run(capsys, "vendor", "activations", "--data", data, *flags)
        assert code == 0 and "\x1b" not in out + err and "\x07" not in out + err, (flags, out)
    out = _run(capsys, "vendor", "activations", "--data", data, "--label", "pwned")[1]
    assert "label=\\x1b]0;pwned\\x07\\x1b[2J" in out and "<script>" in out  # text, as it is
    assert '(active, label contains "pwned")' in out.splitlines()[-1]
    out = _run(capsys, "vendor", "activations", "--data", data, "--label", "\x1b[2J")[1]
    assert out.splitlines()[-1] == '1 activation matches (active, label contains "\\x1b[2J")'


def test_label_histories_read_in_chunks_are_the_same(vendor: VendorHandle, monkeypatch: Any) -> None:
    """A list of every activation asks for their histories in chunks (a 100,000-key IN (...) passes
    PostgreSQL's 65,535 bound parameters): chunks of two give what one query gives."""
    from mqtt_licensing.servers import _labels

    key = vendor.issue(max_activations=5)
    for n in range(5):
        inst = Instance()
        act = vendor.service.activate(key, inst.activate(key, label=f"box-{n}")).activation_id
        vendor.service.check_in(inst.check_in(act, label=f"box-{n}-renamed"))
    whole = vendor.service.find_activations(ActivationFilter(limit=None))
    monkeypatch.setattr(_labels, "_CHUNK", 2)
    assert vendor.service.find_activations(ActivationFilter(limit=None)) == whole
    assert [len(a["label_history"]) for a in whole["activations"]] == [2] * 5


@pytest.mark.timeout(20)
async def test_the_list_neither_waits_for_nor_holds_up_the_servers_writers(vendor: VendorHandle) -> None:
    """SQLite: the list reads in a deferred transaction. With the write lock held by another
    connection (a server mid-commit), a second process's list (its own engine, as ``vendor
    activations`` has) still answers - ``BEGIN IMMEDIATE`` would wait 30 s for the lock, past this
    test's timeout; and while a list's transaction is open a writer commits at once."""
    if vendor.database_url is not None:
        pytest.skip("SQLite's write lock; PostgreSQL readers never take one")
    import sqlite3

    from mqtt_licensing.servers._db import reading
    from mqtt_licensing.servers.activation.service import ActivationService

    key = vendor.issue()
    async with vendor.client() as http:
        assert (await http.post("/v1/activations", json=Instance().activation_body(key, label="l7"))).is_success
    cli = ActivationService.open(vendor.data_dir)  # what `vendor activations` opens
    writer = sqlite3.connect(str(vendor.data_dir / "vendor.db"), timeout=5, isolation_level=None)
    try:
        writer.execute("BEGIN IMMEDIATE")
        writer.execute("UPDATE activations SET last_check_in_at = last_check_in_at")
        page = cli.find_activations(ActivationFilter())
        assert [a["label"] for a in page["activations"]] == ["l7"]
        writer.execute("COMMIT")
        with reading(cli.store.engine) as conn:
            assert conn.execute(sa.select(activations.c.label)).scalar_one() == "l7"
            writer.execute("BEGIN IMMEDIATE")  # "database is locked" after 5 s if the list held the lock
            writer.execute("UPDATE activations SET label = 'l8'")
            writer.execute("COMMIT")
            assert conn.execute(sa.select(activations.c.label)).scalar_one() == "l7"  # its own snapshot
    finally:
        writer.close()
        cli.close()
