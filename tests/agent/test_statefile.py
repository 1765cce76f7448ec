"""state.json versions: today's format (3) groups persisted state per license source and is sealed
with a MAC; files in format 1 (14 flat fields) and 2 (unsealed), fixtures written by the agent
before each change, are upgraded in code; a file from a newer version is refused, left untouched,
never taken for corruption."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from mqtt_licensing.agent import AgentConfig, LicensingAgent
from mqtt_licensing.agent.statefile import (
    STATE_VERSION,
    StateStore,
    StateTampered,
    StoredState,
    upgrade_v1_to_v2,
    upgrade_v2_to_v3,
)
from mqtt_licensing.core.errors import ErrorCode, LicensingError
from mqtt_licensing.core.models import LicenseModel
from mqtt_licensing.core.passwords import hash_password
from tests.helpers.transport import RecordingTransport

FIXTURES = Path(__file__).parent / "fixtures"


def v1(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / name / "state.json").read_text())


def agent_on_fixture(tmp_path: Path, name: str, **config: Any) -> tuple[LicensingAgent, Path]:
    """An agent on a copy of a fixture folder, its clock set to when the fixture was written."""
    state_dir = tmp_path / name
    shutil.copytree(FIXTURES / name, state_dir)
    written_at = v1(name)["last_seen"]  # the same in the v1 and v2 fixtures
    cfg = AgentConfig(
        state_dir=str(state_dir),
        vendor_public_key=(state_dir / "vendor.pub").read_text().strip(),
        http_timeout=0.5,
        **config,
    )
    return LicensingAgent(cfg, clock=lambda: written_at + 10), state_dir


@pytest.mark.parametrize(
    ("name", "model"),
    [("v1_online", LicenseModel.ONLINE), ("v1_offline", LicenseModel.OFFLINE), ("v1_floating", LicenseModel.FLOATING)],
)
def test_upgrade_v1_to_v2_groups_the_fields_of_one_source(name, model):
    old = v1(name)
    assert old.pop("version") == 1
    new = upgrade_v1_to_v2(old)
    assert set(new) == {"trial_started_at", "last_seen", "clock_tampered", "source"}
    assert (new["trial_started_at"], new["last_seen"], new["clock_tampered"]) == (
        old["trial_started_at"],
        old["last_seen"],
        old["clock_tampered"],
    )
    source = new["source"]
    assert source["model"] == model
    if model is LicenseModel.ONLINE:
        assert source["certificate"] == old["certificate"] and source["server_url"] == old["server_url"]
        assert source["last_checkin_ok_at"] == old["last_checkin_ok_at"]
    elif model is LicenseModel.OFFLINE:
        assert source["certificate"] == old["certificate"]
        assert source["pending"] == old["pending_offline"] and source["superseded_nonces"] == old["superseded_nonces"]
    else:
        assert source["lease"] == old["lease"] and source["features"] == old["floating_features"]
        assert source["server_url"] == old["server_url"]


def test_upgrade_of_a_v1_trial_and_of_a_bare_deactivation_code():
    trial = {"trial_started_at": 5, "last_seen": 9, "clock_tampered": True, "floating_features": []}
    assert upgrade_v1_to_v2(trial) == {"trial_started_at": 5, "last_seen": 9, "clock_tampered": True, "source": None}
    left = upgrade_v1_to_v2({"trial_started_at": 5, "deactivation_code": "CODE", "superseded_nonces": ["n"]})
    assert left["source"] == {
        "model": "offline",
        "certificate": None,
        "pending": None,
        "superseded_nonces": ["n"],
        "deactivation_code": "CODE",
    }


@pytest.mark.parametrize("name", ["v1_online", "v2_online"])
async def test_an_older_online_file_loads_active_and_is_rewritten_sealed_as_v3(tmp_path, name):
    agent, state_dir = agent_on_fixture(tmp_path, name)
    old = v1("v1_online")
    await agent.load()
    status = agent.status_document()
    assert agent.evaluation.state == "active" and status["model"] == "online", status
    assert status["problems"] == [] and status["check_in"]["server"] == old["server_url"]
    on_disk = json.loads((state_dir / "state.json").read_text())
    assert on_disk["version"] == STATE_VERSION == 4
    assert on_disk["source"]["certificate"] == old["certificate"]
    assert on_disk["stepped_back"] == 0 and len(on_disk["mac"]) == 64
    assert not list(state_dir.glob("state.json.corrupt-*"))
    # the check-in times under the names both network models write, read from the old names
    assert on_disk["source"]["last_ok_at"] == old["last_checkin_ok_at"] is not None
    assert "failing_since" in on_disk["source"] and "last_checkin_ok_at" not in on_disk["source"]
    assert status["check_in"]["last_ok_at"] is not None


def test_upgrade_v2_to_v3_keeps_every_field():
    v2 = json.loads((FIXTURES / "v2_offline" / "state.json").read_text())
    assert v2.pop("version") == 2
    assert upgrade_v2_to_v3(v2) == {**v2, "stepped_back": 0}


@pytest.mark.parametrize("name", ["v2_offline", "v2_floating"])
async def test_a_v2_file_keeps_its_license(tmp_path, name):
    agent, state_dir = agent_on_fixture(tmp_path, name)
    await agent.load()
    status = agent.status_document()
    assert agent.evaluation.state == "active" and status["problems"] == [], status
    assert json.loads((state_dir / "state.json").read_text())["version"] == 4


async def test_a_sealed_file_rewritten_as_v2_is_caught_by_the_trial_marker(tmp_path):
    """The MAC cannot be skipped by writing the old unsealed format back (issue 10)."""
    agent, state_dir = agent_on_fixture(tmp_path, "v2_online")
    await agent.load()  # sealed now, and the marker knows this instance
    await agent.stop()
    shutil.copy(FIXTURES / "v2_online" / "state.json", state_dir / "state.json")
    again = LicensingAgent(agent.config, clock=agent.clock)
    await again.load()
    status = again.status_document()
    assert status["state"] == "unlicensed" and status["problems"][0]["code"] == "state_corrupt", status
    assert status["trial"]["started_at"] == "1970-01-01T00:00:00Z"  # counted as used
    assert list(state_dir.glob("state.json.corrupt-*"))


async def test_a_v1_offline_file_keeps_its_license_and_its_pending_request(tmp_path):
    agent, _ = agent_on_fixture(tmp_path, "v1_offline")
    old = v1("v1_offline")
    await agent.load()
    status = agent.status_document()
    assert agent.evaluation.state == "active" and status["model"] == "offline", status
    assert status["offline"]["request_code"] == old["pending_offline"]["request_code"]
    assert status["problems"] == []


async def test_a_v1_floating_file_keeps_its_lease(tmp_path):
    agent, _ = agent_on_fixture(tmp_path, "v1_floating")
    await agent.load()
    status = agent.status_document()
    assert agent.evaluation.state == "active" and status["model"] == "floating", status
    assert status["floating"]["lease_id"] and status["floating"]["features"] == ["mqtt_server"]


@pytest.mark.parametrize("version", [5, 99])
async def test_a_newer_state_file_is_refused_and_left_untouched(tmp_path, version):
    agent, state_dir = agent_on_fixture(tmp_path, "v1_online")
    await agent.load()  # now a v4 file holding an online license
    state_file = state_dir / "state.json"
    newer = json.loads(state_file.read_text()) | {"version": version, "something_new": {"x": 1}}
    state_file.write_text(json.dumps(newer))
    before = state_file.read_bytes()

    again = LicensingAgent(agent.config, clock=agent.clock)
    with pytest.raises(LicensingError) as refused:
        await again.load()
    assert refused.value.code == ErrorCode.STATE_TOO_NEW
    assert f"format version {version}" in refused.value.message and "\n" not in refused.value.message
    assert state_file.read_bytes() == before  # neither moved aside nor rewritten
    assert not list(state_dir.glob("state.json.corrupt-*"))


async def test_an_agent_whose_state_was_refused_serves_nobody_and_writes_nothing(tmp_path):
    """amqtt runs on when a start-up hook raises; the agent must stay safe on its own."""
    agent, state_dir = agent_on_fixture(tmp_path, "v1_online", admins={"admin": hash_password("pw", n=2**10)})
    state_file = state_dir / "state.json"
    state_file.write_text(json.dumps(v1("v1_online") | {"version": 5}))
    before = state_file.read_bytes()
    with pytest.raises(LicensingError):
        await agent.load()
    transport = RecordingTransport()
    with pytest.raises(LicensingError) as refused:
        await agent.start(transport)
    assert refused.value.code == ErrorCode.STATE_TOO_NEW
    assert not (await agent.admit("u", client_id="u", username=None, password=None)).allowed
    assert (await agent.admit("a", client_id="ops", username="admin", password="pw")).allowed
    await agent.handle_message("a", "$license/activate", json.dumps({"license_key": "x"}).encode())
    assert transport.replies("ops")[-1]["error"]["code"] == "state_too_new"
    status = agent.status_document()
    assert status["state"] == "unlicensed" and status["problems"][0]["code"] == "state_too_new"
    await agent.save()
    await agent.stop()
    assert state_file.read_bytes() == before


@pytest.mark.parametrize("version", [None, 0, "2", True, 2.5])
def test_an_unknown_older_or_malformed_version_counts_as_corrupt(tmp_path, version):
    store = StateStore(tmp_path)
    tmp_path.joinpath("state.json").write_text(json.dumps({"version": version, "trial_started_at": 1}))
    state, problems = store.load(now=1000, key=b"k" * 32)
    assert state.trial_started_at == 0  # the trial counts as used
    assert [p.code for p in problems] == [ErrorCode.STATE_CORRUPT]
    assert list(tmp_path.glob("state.json.corrupt-*"))


def test_a_v3_file_round_trips_and_any_edit_breaks_its_mac():
    key = b"k" * 32
    state = StoredState(
        trial_started_at=1, last_seen=2, clock_tampered=True, source={"model": "online", "a": 1}, stepped_back=7
    )
    assert StoredState.from_json(state.to_json(key), key) == state
    for field, value in [("trial_started_at", 10**10), ("clock_tampered", False), ("source", None)]:
        edited = json.loads(state.to_json(key)) | {field: value}
        with pytest.raises(StateTampered):
            StoredState.from_json(json.dumps(edited).encode(), key)
    with pytest.raises(StateTampered):  # another instance's key: a copied folder
        StoredState.from_json(state.to_json(key), b"x" * 32)
