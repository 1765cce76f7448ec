"""Instance labels on the activation server: signed into every request, stored per activation with
a capped history, shown by the admin API, and refused (``invalid_field``) when not 1..64 printable
characters - before anything is written."""

from __future__ import annotations

import json
from typing import Any

import pytest
import sqlalchemy as sa

from mqtt_licensing.cli.main import main
from mqtt_licensing.core.instance_label import HISTORY
from mqtt_licensing.core.signing import b64
from mqtt_licensing.servers.activation.schema import activations

from .conftest import Instance


async def _license(admin_http: Any, max_activations: int = 2) -> tuple[str, str]:
    created = (
        await admin_http.post(
            "/v1/admin/licenses", json={"features": ["mqtt_server"], "max_activations": max_activations}
        )
    ).json()
    return created["license"]["id"], created["key"]


async def _listed(admin_http: Any, license_id: str) -> dict[str, Any]:
    acts = (await admin_http.get("/v1/admin/activations", params={"license_id": license_id})).json()["activations"]
    assert len(acts) == 1
    return dict(acts[0])


async def test_label_travels_with_activate_and_check_in_and_history_is_kept(admin_http: Any) -> None:
    license_id, key = await _license(admin_http)
    inst = Instance()
    act = (await admin_http.post("/v1/activations", json=inst.activation_body(key, label="line-7-broker"))).json()
    shown = await _listed(admin_http, license_id)
    assert shown["label"] == "line-7-broker"
    assert [h["label"] for h in shown["label_history"]] == ["line-7-broker"]

    for label in ("line-7-broker", "line-8-broker", None):  # same, renamed, an agent that sends none
        fields = {"label": label} if label else {}
        answer = await admin_http.post(
            "/v1/activations/check-in", json={"request": b64(inst.check_in(act["activation_id"], **fields))}
        )
        assert answer.status_code == 200, answer.text
    shown = await _listed(admin_http, license_id)
    assert shown["label"] == "line-8-broker"
    assert [h["label"] for h in shown["label_history"]] == ["line-7-broker", "line-8-broker"]
    # The license's own page lists its activations with their labels too.
    detail = (await admin_http.get(f"/v1/admin/licenses/{license_id}")).json()["license"]
    assert detail["activations"][0]["label"] == "line-8-broker"


async def test_history_is_capped_per_activation(admin_http: Any) -> None:
    license_id, key = await _license(admin_http)
    inst = Instance()
    act = (await admin_http.post("/v1/activations", json=inst.activation_body(key, label="name-0"))).json()
    for n in range(1, HISTORY + 5):
        request = inst.check_in(act["activation_id"], label=f"name-{n}")
        assert (await admin_http.post("/v1/activations/check-in", json={"request": b64(request)})).status_code == 200
    history = [h["label"] for h in (await _listed(admin_http, license_id))["label_history"]]
    assert history == [f"name-{n}" for n in range(5, HISTORY + 5)]


BAD_LABELS = [
    "x" * 65,
    "\x1b[31mred\x1b[0m",
    "two\nlines",
    "bidi\u202eevil",
    "",
    " padded ",
]


@pytest.mark.parametrize("label", BAD_LABELS, ids=["long", "ansi", "newline", "bidi", "empty", "padded"])
async def test_bad_labels_are_refused_before_anything_is_written(admin_http: Any, label: str) -> None:
    license_id, key = await _license(admin_http)
    inst = Instance()
    refused = await admin_http.post("/v1/activations", json=inst.activation_body(key, label=label))
    assert refused.status_code == 400
    error = refused.json()["error"]
    assert error["code"] == "invalid_field" and "instance label" in error["message"]
    assert "\x1b" not in error["message"] and "\n" not in error["message"]  # the message is one safe line
    listed = (await admin_http.get("/v1/admin/activations", params={"license_id": license_id})).json()
    assert listed["activations"] == []

    act = (await admin_http.post("/v1/activations", json=inst.activation_body(key, label="ok"))).json()
    request = inst.check_in(act["activation_id"], label=label)
    refused = await admin_http.post("/v1/activations/check-in", json={"request": b64(request)})
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "invalid_field"
    assert (await _listed(admin_http, license_id))["label"] == "ok"


async def test_exactly_64_printable_characters_pass(admin_http: Any) -> None:
    license_id, key = await _license(admin_http)
    label = "<script>alert(1)</script>" + "ä" * 39
    assert len(label) == 64
    response = await admin_http.post("/v1/activations", json=Instance().activation_body(key, label=label))
    assert response.status_code == 201, response.text
    assert (await _listed(admin_http, license_id))["label"] == label  # stored as sent: escaping is the viewer's


async def test_vendor_activations_shows_labels_and_prints_escapes_as_text(vendor: Any, capsys: Any) -> None:
    """The CLI's own defence: a label in the database that holds a terminal escape (written by
    anything but this server's check) prints as ``\\x1b``, never as a colour."""
    key = vendor.issue(max_activations=2)
    inst = Instance()
    async with vendor.client() as http:
        act = (await http.post("/v1/activations", json=inst.activation_body(key, label="line-7-broker"))).json()
        request = inst.check_in(act["activation_id"], label="line-8-broker")
        assert (await http.post("/v1/activations/check-in", json={"request": b64(request)})).status_code == 200
    data = str(vendor.data_dir)
    code, out, _ = _run(capsys, "vendor", "activations", "--data", data)
    assert code == 0 and "label=line-8-broker (was line-7-broker)" in out and inst.fingerprint in out
    listed = json.loads(_run(capsys, "vendor", "activations", "--data", data, "--json")[1])["activations"]
    assert listed[0]["label"] == "line-8-broker" and len(listed[0]["label_history"]) == 2

    with vendor.service.ctx.store.engine.begin() as conn:
        conn.execute(sa.update(activations).values(label="\x1b[31mEVIL\x1b[0m\x1b]0;owned\x07"))
    out = _run(capsys, "vendor", "activations", "--data", data)[1]
    assert "\x1b" not in out and "\x07" not in out
    assert "label=\\x1b[31mEVIL\\x1b[0m\\x1b]0;owned\\x07" in out


def _run(capsys: Any, *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


async def test_an_offline_request_code_carries_the_label(vendor: Any) -> None:
    key = vendor.issue(model="offline")
    inst = Instance()
    result = vendor.service.offline_activate(inst.offline_request_code(key, label="air-gapped-7"))
    (act,) = vendor.service.list_activations(vendor.license_id(key))
    assert act["id"] == result.activation_id and act["label"] == "air-gapped-7"
