"""The agent in-process, no broker: requests go through ``handle_message``, answers and events are
read off a recording transport. The vendor and floating servers are the real ones (uvicorn)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from mqtt_licensing.agent import AgentConfig, LicenseSource, LicensingAgent
from mqtt_licensing.agent.sources import SOURCES
from mqtt_licensing.core.models import LicenseModel
from mqtt_licensing.core.passwords import hash_password
from mqtt_licensing.core.signing import public_key_to_text
from tests.helpers.floating import start_floating
from tests.helpers.transport import Published, RecordingTransport

ADMIN, ADMIN_PASSWORD, ADMIN_ID = "admin", "admin-secret", "ops"
ADMIN_HASH = hash_password(ADMIN_PASSWORD, n=2**10)  # cheaper than production: tests only


class Session:
    """One agent with one admitted admin connection."""

    def __init__(self, agent: LicensingAgent, transport: RecordingTransport) -> None:
        self.agent, self.transport = agent, transport

    async def request(self, operation: str, fields: dict[str, Any] | None = None) -> dict[str, Any]:
        topic = {"offline_request": "$license/offline/request"}.get(operation, f"$license/{operation}")
        await self.agent.handle_message("conn-1", topic, json.dumps(fields or {}).encode())
        return self.transport.replies(ADMIN_ID)[-1]

    async def close(self) -> None:
        await self.agent.stop()


async def open_session(state_dir: Path, **config: Any) -> Session:
    config.setdefault("trial_seconds", 0)
    agent = LicensingAgent(
        AgentConfig(state_dir=str(state_dir), admins={ADMIN: ADMIN_HASH}, tick_interval=3600, **config)
    )
    transport = RecordingTransport()
    await agent.load()
    await agent.start(transport)
    decision = await agent.admit("conn-1", client_id=ADMIN_ID, username=ADMIN, password=ADMIN_PASSWORD)
    assert decision.allowed
    agent.connected("conn-1")
    return Session(agent, transport)


def test_every_license_model_has_one_registered_source():
    assert set(SOURCES) == set(LicenseModel)
    for model, cls in SOURCES.items():
        assert cls.model is model


async def test_online_round_trip_through_state_json(tmp_path, vendor):
    key = vendor.issue(max_connections=4)
    s = await open_session(tmp_path / "s", vendor_url=vendor.url, vendor_public_key=vendor.public_key_text)
    try:
        reply = await s.request("activate", {"license_key": key})
        assert reply["ok"] is True and reply["status"]["state"] == "active", reply
        source: LicenseSource | None = s.agent.source
        assert source is not None and source.model is LicenseModel.ONLINE
        activation_id = reply["status"]["activation_id"]
    finally:
        await s.close()
    on_disk = json.loads((tmp_path / "s" / "state.json").read_text())
    assert on_disk["version"] == 4 and on_disk["source"]["model"] == "online"
    again = await open_session(tmp_path / "s", vendor_url=vendor.url, vendor_public_key=vendor.public_key_text)
    try:
        status = (await again.request("status"))["status"]
        assert status["state"] == "active" and status["activation_id"] == activation_id
        assert status["max_connections"] == 4
        reply = await again.request("deactivate")
        assert reply["ok"] is True and again.agent.source is None
        assert reply["status"]["state"] == "unlicensed"
    finally:
        await again.close()
    assert json.loads((tmp_path / "s" / "state.json").read_text())["source"] is None


async def test_offline_round_trip_and_what_each_source_refuses(tmp_path, vendor):
    key = vendor.issue(model="offline")
    s = await open_session(tmp_path / "s", vendor_url=vendor.url, vendor_public_key=vendor.public_key_text)
    try:
        assert (await s.request("reactivate"))["error"]["code"] == "not_activated"
        assert (await s.request("activate", {"method": "metered"}))["error"]["code"] == "unsupported_method"
        code = (await s.request("offline_request", {"license_key": key}))["request_code"]
        assert s.agent.evaluation.state == "pending_offline"
        usage = vendor.service.offline_activate(code).usage_license
        reply = await s.request("activate", {"method": "offline", "usage_license": usage})
        assert reply["status"]["state"] == "active" and reply["status"]["model"] == "offline"
        assert (await s.request("reactivate"))["error"]["code"] == "offline_license_cannot_reactivate"
        # the same usage license again: the request it answers is used up
        again = await s.request("activate", {"method": "offline", "usage_license": usage})
        assert again["error"]["code"] == "request_superseded"
    finally:
        await s.close()
    s = await open_session(tmp_path / "s", vendor_url=vendor.url, vendor_public_key=vendor.public_key_text)
    try:
        assert s.agent.evaluation.state == "active"
        reply = await s.request("deactivate")
        assert reply["deactivation_code"].startswith("-----BEGIN MQTT LICENSING DEACTIVATION CODE")
        assert reply["status"]["offline"]["deactivation_code"] == reply["deactivation_code"]
        assert reply["status"]["license_id"] is None
    finally:
        await s.close()
    s = await open_session(tmp_path / "s", vendor_url=vendor.url, vendor_public_key=vendor.public_key_text)
    try:  # the code to carry to the vendor survives a restart
        status = (await s.request("status"))["status"]
        assert status["offline"]["deactivation_code"] == reply["deactivation_code"]
    finally:
        await s.close()


async def test_floating_round_trip_hands_the_seat_back_at_stop(tmp_path):
    vendor_key = Ed25519PrivateKey.generate()
    with start_floating(tmp_path / "fls", vendor_key=vendor_key, seats=1) as fls:
        pinned = public_key_to_text(vendor_key)
        s = await open_session(tmp_path / "s", vendor_public_key=pinned)
        try:
            reply = await s.request("activate", {"method": "floating", "server_url": fls.url})
            assert reply["status"]["state"] == "active" and reply["status"]["floating"]["server"] == fls.url
        finally:
            await s.close()  # returns the seat
        on_disk = json.loads((tmp_path / "s" / "state.json").read_text())
        assert on_disk["source"]["model"] == "floating" and on_disk["source"]["lease"] is None
        assert on_disk["source"]["server_url"] == fls.url  # kept: the next start leases again
        other = await open_session(tmp_path / "other", vendor_public_key=pinned)
        try:  # the only seat is free again
            reply = await other.request("activate", {"method": "floating", "server_url": fls.url})
            assert reply["ok"] is True, reply
            assert (await other.request("deactivate"))["seat_released"] is True
            assert other.agent.source is None
        finally:
            await other.close()


@pytest.mark.parametrize("model", ["online", "offline"])
async def test_the_activated_event_leaves_only_after_the_change_is_saved(tmp_path, vendor, model):
    """Whoever sees an event and then kills the broker must find the change on disk."""
    key = vendor.issue(model=model)
    s = await open_session(tmp_path / "s", vendor_url=vendor.url, vendor_public_key=vendor.public_key_text)
    state_file = tmp_path / "s" / "state.json"
    seen_on_disk: list[Any] = []

    def look(message: Published) -> None:
        if message.topic == "$license/events" and message.json()["type"] == "activated":
            seen_on_disk.append(json.loads(state_file.read_text())["source"])

    s.transport.on_publish = look
    try:
        if model == "online":
            await s.request("activate", {"license_key": key})
        else:
            code = (await s.request("offline_request", {"license_key": key}))["request_code"]
            usage = vendor.service.offline_activate(code).usage_license
            await s.request("activate", {"method": "offline", "usage_license": usage})
        await s.transport.settle()
    finally:
        await s.close()
    assert len(seen_on_disk) == 1
    assert seen_on_disk[0]["model"] == model and seen_on_disk[0]["certificate"]


async def test_a_second_license_is_refused_while_one_is_held(tmp_path, vendor):
    s = await open_session(tmp_path / "s", vendor_url=vendor.url, vendor_public_key=vendor.public_key_text)
    try:
        await s.request("activate", {"license_key": vendor.issue()})
        other = await s.request("offline_request", {"license_key": vendor.issue(model="offline")})
        assert other["error"]["code"] == "already_activated"
        assert s.agent.source is not None and s.agent.source.model is LicenseModel.ONLINE
        await s.transport.settle()
        refused = s.transport.events("command_failed")
        assert refused and refused[-1]["error"]["code"] == "already_activated"
    finally:
        await s.close()


def _site_certificate(vendor_key: Ed25519PrivateKey, fingerprint: str, now: int) -> str:
    from mqtt_licensing.core.documents import ActivationCertificate
    from mqtt_licensing.core.signing import b64

    cert = ActivationCertificate(
        license_id="lic-site",
        key_mask="SITE-****",
        activation_id="act-site",
        model="site",
        features=("mqtt_server",),
        instance_fingerprint=fingerprint,
        issued_at=now,
        valid_until=None,
        max_connections=7,
    )
    return b64(cert.sign(vendor_key))


async def test_a_new_model_is_one_module_and_one_line_in_sources(tmp_path, monkeypatch):
    """A fourth, test-only model: activate, status, tick, restart and deactivate through the real
    agent, which never learns what the model is."""
    import time

    from tests.agent.site_source import SiteSource

    monkeypatch.setitem(SOURCES, "site", SiteSource)  # the one line
    vendor_key = Ed25519PrivateKey.generate()
    pinned = public_key_to_text(vendor_key.public_key())
    s = await open_session(tmp_path / "s", vendor_public_key=pinned)
    try:
        blob = _site_certificate(vendor_key, s.agent.fingerprint, int(time.time()))
        reply = await s.request("activate", {"method": "site", "site_certificate": blob})
        assert reply["ok"] is True, reply
        assert reply["status"]["state"] == "active" and reply["status"]["model"] == "site"
        assert reply["status"]["site"] == {"license_id": "lic-site"}
        assert reply["status"]["max_connections"] == 7
        await s.transport.settle()
        assert [e["method"] for e in s.transport.events("activated")] == ["site"]
        await s.agent.tick()  # the background step: due work, usage duty, save
        assert s.agent.status_document()["state"] == "active"
        unknown = await s.request("activate", {"method": "nonesuch"})
        assert unknown["error"]["code"] == "unsupported_method"
        assert "site" in unknown["error"]["message"]
    finally:
        await s.close()
    on_disk = json.loads((tmp_path / "s" / "state.json").read_text())
    assert on_disk["source"]["model"] == "site"
    again = await open_session(tmp_path / "s", vendor_public_key=pinned)
    try:
        assert (await again.request("status"))["status"]["state"] == "active"
        reply = await again.request("deactivate")
        assert reply["ok"] is True and reply["released"] is True, reply
        assert reply["status"]["state"] == "unlicensed" and again.agent.source is None
        await again.transport.settle()
        assert [e["method"] for e in again.transport.events("deactivated")] == ["site"]
    finally:
        await again.close()
