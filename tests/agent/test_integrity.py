"""Issue 10, the instance's own defences: time only goes forward for licensing, state.json
cannot be edited quietly, and the trial does not restart when the state folder goes.

Each test reproduces the attack as it was tried on main (the figure in docs/reliability.md)
with the injectable wall and monotonic clocks, so hours pass in milliseconds."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from mqtt_licensing.agent import AgentConfig, LicensingAgent
from mqtt_licensing.core.errors import ErrorCode, LicensingError
from mqtt_licensing.core.signing import public_key_to_text

T0 = 1_800_000_000
VENDOR_PUB = public_key_to_text(Ed25519PrivateKey.generate().public_key())


class Clocks:
    """A wall clock anyone may set, and a monotonic clock no one can."""

    def __init__(self) -> None:
        self.wall = float(T0)
        self.mono = 0.0

    def run(self, seconds: float) -> None:
        self.wall += seconds
        self.mono += seconds


async def loaded(state_dir: Path, clocks: Clocks, **config: Any) -> LicensingAgent:
    config = {"trial_seconds": 600, "clock_tolerance": 300, **config}
    agent = LicensingAgent(
        AgentConfig(state_dir=str(state_dir), vendor_public_key=VENDOR_PUB, **config),
        clock=lambda: clocks.wall,
        monotonic=lambda: clocks.mono,
    )
    await agent.load()
    return agent


async def tick(agent: LicensingAgent) -> str:
    """One step of the agent's background loop at the licensing time; the state it leaves."""
    await agent.tick()
    return str(agent.evaluation.state)


async def test_the_290_second_loop_neither_extends_the_trial_nor_goes_unnoticed(tmp_path):
    """Main: a 600 s trial served for 2,400 s, never flagged. Now: flagged at the second step back
    (290 + 290 > 300), and the trial would have ended at 600 s of real time anyway."""
    clocks = Clocks()
    agent = await loaded(tmp_path / "s", clocks)
    highest, served, flagged_at = clocks.wall, 0.0, None
    while clocks.mono < 2400:
        clocks.run(10)
        if clocks.wall >= highest:
            highest = clocks.wall
            clocks.wall -= 290  # back by less than the tolerance, each time it reaches its highest
        state = await tick(agent)
        if state == "trial":
            served = clocks.mono
        if state == "clock_tampered" and flagged_at is None:
            flagged_at = clocks.mono
    assert served < 600
    assert flagged_at == 300, flagged_at  # steps at 10 s and 300 s
    assert agent.status_document()["clock"]["tampered"] is True


async def test_steps_back_add_up_across_restarts(tmp_path):
    """Without a monotonic clock between runs, the steps are kept in state.json (sealed)."""
    clocks = Clocks()
    agent = await loaded(tmp_path / "s", clocks)
    await agent.stop()
    clocks.wall -= 200
    agent = await loaded(tmp_path / "s", clocks)
    assert await tick(agent) == "trial"  # 200 s: within the tolerance
    await agent.stop()
    clocks.wall -= 200
    agent = await loaded(tmp_path / "s", clocks)
    assert await tick(agent) == "clock_tampered"  # 400 s in all


async def test_a_wall_clock_set_back_a_day_does_not_stop_licensing_time(tmp_path):
    clocks = Clocks()
    agent = await loaded(tmp_path / "s", clocks, clock_tolerance=3600)
    clocks.run(300)
    clocks.wall -= 86400
    assert await tick(agent) == "clock_tampered"
    clocks.run(400)
    status = agent.status_document()
    assert status["trial"]["ends_at"] < status["updated_at"]  # evaluated at licensing time, not the wall's


@pytest.mark.parametrize(
    "edit",
    [
        {"trial_started_at": T0 + 10 * 365 * 86400},  # the 10-year edit
        {"clock_tampered": False, "stepped_back": 0},  # the tamper flag gone
        {"last_seen": T0 - 86400},  # the high-water mark lowered
    ],
)
async def test_an_edited_state_json_is_handled_like_a_corrupt_one(tmp_path, edit):
    """Main: each edit took effect (a trial until 2036, the tamper flag gone). Now: state_corrupt."""
    clocks = Clocks()
    agent = await loaded(tmp_path / "s", clocks)
    clocks.run(100)
    clocks.wall -= 400
    assert await tick(agent) == "clock_tampered"
    await agent.stop()
    state_file = tmp_path / "s" / "state.json"
    state_file.write_text(json.dumps(json.loads(state_file.read_text()) | edit))
    agent = await loaded(tmp_path / "s", clocks)
    status = agent.status_document()
    assert status["state"] == "unlicensed", status  # the trial counts as used
    assert status["problems"][0]["code"] == "state_corrupt" and "edited" in status["problems"][0]["message"]
    assert list((tmp_path / "s").glob("state.json.corrupt-*"))


@pytest.mark.parametrize("what", ["folder", "state.json"])
async def test_deleting_the_state_folder_does_not_restart_the_trial(tmp_path, what):
    """Main: a fresh 2-hour trial. Now: the marker outside the folder keeps the first start."""
    clocks = Clocks()
    agent = await loaded(tmp_path / "s", clocks)
    await agent.stop()
    clocks.run(700)
    if what == "folder":
        shutil.rmtree(tmp_path / "s")
    else:
        (tmp_path / "s" / "state.json").unlink()
    agent = await loaded(tmp_path / "s", clocks)
    status = agent.status_document()
    assert status["state"] == "unlicensed", status
    assert status["trial"]["started_at"] == "2027-01-15T08:00:00Z"


async def test_a_trial_marker_that_cannot_be_written_costs_a_fresh_folder_its_trial(tmp_path):
    clocks = Clocks()
    agent = await loaded(tmp_path / "s", clocks, trial_marker="/proc/no-such-dir/trial.json")
    status = agent.status_document()
    assert status["state"] == "unlicensed"
    [problem] = status["problems"]
    assert problem["code"] == "trial_marker_unwritable"
    assert "/proc/no-such-dir/trial.json" in problem["message"] and "trial_marker" in problem["message"]
    assert "\n" not in problem["message"]


def test_clock_tolerance_is_capped_at_an_hour(tmp_path):
    """Main: clock_tolerance 1000000000 was accepted, so the clock could be set back by a day."""
    config = AgentConfig(state_dir=str(tmp_path), vendor_public_key=VENDOR_PUB, clock_tolerance=1_000_000_000)
    with pytest.raises(LicensingError) as refused:
        config.validate()
    assert refused.value.code == ErrorCode.INVALID_FIELD and "clock_tolerance" in refused.value.message
    AgentConfig(state_dir=str(tmp_path), vendor_public_key=VENDOR_PUB, clock_tolerance=3600).validate()


async def test_the_vendor_keeps_the_first_trial_start_of_an_instance(tmp_path, vendor, monkeypatch):
    """state.json and the trial marker both deleted, the identity kept: the vendor's record wins."""
    import asyncio
    import os
    import time

    from mqtt_licensing.core.timefmt import iso
    from tests.helpers.transport import RecordingTransport

    async def run_once(clock_offset: int) -> LicensingAgent:
        agent = LicensingAgent(
            AgentConfig(
                state_dir=str(tmp_path / "s"),
                vendor_url=vendor.url,
                vendor_public_key=vendor.public_key_text,
                tick_interval=0.02,
            ),
            clock=lambda: time.time() + clock_offset,
        )
        await agent.load()
        await agent.start(RecordingTransport())
        return agent

    first = await run_once(0)
    started = first.status_document()["trial"]["started_at"]
    for _ in range(250):  # until the vendor answered (its record is this first start, or earlier)
        if _vendor_trial(vendor, first.fingerprint) is not None:
            break
        await asyncio.sleep(0.02)
    await first.stop()
    recorded = _vendor_trial(vendor, first.fingerprint)
    assert recorded is not None  # the first start as the vendor saw it (a second or so after the local one)
    (tmp_path / "s" / "state.json").unlink()
    os.unlink(os.environ["MQTT_LICENSING_TRIAL_MARKER"])
    again = await run_once(300)  # five minutes later: locally a fresh trial
    try:
        assert again.status_document()["trial"]["started_at"] > started
        for _ in range(250):
            if again.status_document()["trial"]["started_at"] == iso(recorded):
                break
            await asyncio.sleep(0.02)
        assert again.status_document()["trial"]["started_at"] == iso(recorded)
    finally:
        await again.stop()


def _vendor_trial(vendor: Any, fp: str) -> int | None:
    import sqlalchemy as sa

    from mqtt_licensing.servers.activation.schema import trials

    with vendor.service.store.transaction() as tx:
        row = tx.conn.execute(sa.select(trials.c.started_at).where(trials.c.instance_fingerprint == fp)).first()
    return int(row[0]) if row is not None else None


async def test_a_damaged_state_json_costs_only_that_instance_its_trial(tmp_path):
    """Main: the damaged instance wrote trial_started_at 0 into the host's marker, so every
    instance on the host (later installs too) started with its trial used up."""
    clocks = Clocks()
    agent = await loaded(tmp_path / "a", clocks)
    await agent.stop()
    (tmp_path / "a" / "state.json").write_bytes(b'{"version": 3, "trial_')  # damaged
    agent = await loaded(tmp_path / "a", clocks)
    assert agent.status_document()["state"] == "unlicensed"  # its own trial counts as used
    await agent.stop()
    other = await loaded(tmp_path / "b", clocks)  # a fresh instance on the same host
    assert other.status_document()["state"] == "trial", other.status_document()
    for leftover in (tmp_path / "a").glob("state.json*"):
        leftover.unlink()  # the damaged one cannot win a fresh trial by deleting its state either
    again = await loaded(tmp_path / "a", clocks)
    assert again.status_document()["state"] == "unlicensed"
