"""Alarms (issue 13): the pure rules, then an agent in-process with an injected clock against the
real vendor server: raised once at the threshold, cleared when the cause goes, no duplicate after
a restart, shown in status; and the agent's /metrics scraped through activate -> grace -> recovery."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from mqtt_licensing.agent import AgentConfig, LicensingAgent
from mqtt_licensing.agent.alarms import DAY, AlarmBoard, AlarmInputs, AlarmSettings, evaluate_alarms
from mqtt_licensing.agent.metrics import metrics_app
from mqtt_licensing.core.errors import LicensingError
from mqtt_licensing.core.signing import public_key_to_text
from mqtt_licensing.core.state import Evaluation, Facts, LicenseState
from mqtt_licensing.core.timefmt import iso
from tests.helpers.activation import start_vendor
from tests.helpers.transport import RecordingTransport

from .test_sources import ADMIN, ADMIN_HASH, ADMIN_ID, ADMIN_PASSWORD

T0 = 1_900_000_000
SETTINGS = AlarmSettings()


def active(**kw: Any) -> Evaluation:
    return Evaluation(LicenseState.ACTIVE, "licensed", model="online", **{"features": ("mqtt_server",), **kw})


def codes(inputs: AlarmInputs, now: int, before: frozenset[str] = frozenset()) -> dict[str, str]:
    return {c: a.level for c, a in evaluate_alarms(inputs, now, SETTINGS, before).items()}


def test_expiry_raised_at_30_7_and_1_days_with_a_new_level_each():
    inputs = AlarmInputs(active(expires_at=T0 + 40 * DAY), Facts(trial_started_at=0), 0)
    assert codes(inputs, T0) == {}
    assert codes(inputs, T0 + 10 * DAY) == {"license_expiring": "30d"}
    assert codes(inputs, T0 + 33 * DAY) == {"license_expiring": "7d"}
    alarms = evaluate_alarms(inputs, T0 + 39 * DAY + 1, SETTINGS)
    assert alarms["license_expiring"].level == "1d" and alarms["license_expiring"].severity == "critical"


def test_quota_raised_at_80_percent_and_cleared_only_at_75():
    facts = Facts(trial_started_at=0)

    def quota(n: int, before: frozenset[str]) -> frozenset[str]:
        return frozenset(codes(AlarmInputs(active(max_connections=100), facts, n), T0, before))

    assert quota(79, frozenset()) == frozenset()
    raised = quota(80, frozenset())
    assert raised == {"connection_quota_high"}
    assert quota(77, raised) == {"connection_quota_high"}  # between the thresholds: stays
    assert quota(77, frozenset()) == frozenset()  # ... and is not raised from below
    assert quota(75, raised) == frozenset()
    assert quota(100, raised) == {"connection_quota_high", "connection_quota_reached"}


def test_quota_reached_names_the_overage_when_the_license_grants_one():
    facts = Facts(trial_started_at=0)
    plain = evaluate_alarms(AlarmInputs(active(max_connections=4), facts, 4), T0, SETTINGS)
    assert plain["connection_quota_reached"].message.endswith("in use: new clients are refused")
    over = evaluate_alarms(AlarmInputs(active(max_connections=4, overage=0.5), facts, 5), T0, SETTINGS)
    assert over["connection_quota_reached"].message.endswith(
        "the license's overage admits up to 6, then new clients are refused"
    )


def test_offline_pending_clock_and_no_seat():
    pending = Evaluation(LicenseState.PENDING_OFFLINE, "waiting")
    facts = Facts(trial_started_at=0, pending_offline_at=T0)
    assert codes(AlarmInputs(pending, facts, 0), T0 + DAY - 1) == {}
    assert set(codes(AlarmInputs(pending, facts, 0), T0 + DAY)) == {"offline_request_pending"}
    tampered = Facts(trial_started_at=0, clock_tampered=True)
    assert set(codes(AlarmInputs(Evaluation(LicenseState.CLOCK_TAMPERED, "x"), tampered, 0), T0)) == {"clock_tampered"}
    unlicensed = Evaluation(LicenseState.UNLICENSED, "no lease", model="floating")
    assert set(codes(AlarmInputs(unlicensed, Facts(trial_started_at=0), 0, "no_seats"), T0)) == {"no_seat"}
    assert codes(AlarmInputs(unlicensed, Facts(trial_started_at=0), 0, "server_unreachable"), T0) == {}


def test_board_announces_changes_only_and_survives_json():
    board = AlarmBoard()
    inputs = AlarmInputs(active(expires_at=T0 + 20 * DAY), Facts(trial_started_at=0), 0)
    assert board.update(evaluate_alarms(inputs, T0, SETTINGS), T0)
    assert [e["type"] for e in board.take_events()] == ["alarm_raised"]
    assert not board.update(evaluate_alarms(inputs, T0 + 60, SETTINGS), T0 + 60)
    again = AlarmBoard.from_json(json.loads(json.dumps(board.to_json())))
    assert not again.update(evaluate_alarms(inputs, T0 + 120, SETTINGS), T0 + 120)
    assert again.status()[0]["since"] == board.status()[0]["since"]
    assert again.update({}, T0 + 180)
    assert [e["type"] for e in again.take_events()] == ["alarm_cleared"]


# -- the agent in-process, with the real vendor server on the same injected clock ------------


class Clock:
    def __init__(self) -> None:
        self.now = int(time.time())

    def __call__(self) -> int:
        return self.now


async def open_agent(state_dir, vendor, clock: Clock, **config: Any) -> tuple[LicensingAgent, RecordingTransport]:
    agent = LicensingAgent(
        AgentConfig(
            state_dir=str(state_dir),
            admins={ADMIN: ADMIN_HASH},
            vendor_url=vendor.url,
            vendor_public_key=vendor.public_key_text,
            trial_seconds=0,
            tick_interval=3600,
            retry_interval=60,
            **config,
        ),
        clock=clock,
    )
    transport = RecordingTransport()
    await agent.load()
    await agent.start(transport, background=False)  # the test ticks: time is the Clock's
    assert (await agent.admit("admin", client_id=ADMIN_ID, username=ADMIN, password=ADMIN_PASSWORD)).allowed
    agent.connected("admin")
    return agent, transport


async def request(agent: LicensingAgent, transport: RecordingTransport, operation: str, **fields: Any) -> Any:
    await agent.handle_message("admin", f"$license/{operation}", json.dumps(fields).encode())
    return transport.replies(ADMIN_ID)[-1]


async def tick(agent: LicensingAgent, transport: RecordingTransport) -> None:
    """One step of the agent's background work at the Clock's time; its events published."""
    await agent.tick()
    await transport.settle()


def raised(transport: RecordingTransport, code: str, kind: str = "alarm_raised") -> list[dict[str, Any]]:
    return [e for e in transport.events(kind) if e["code"] == code]


async def scrape(agent: LicensingAgent) -> dict[str, float]:
    app = metrics_app(agent.metrics, agent.status_document)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://agent") as client:
        response = await client.get("/metrics")
        health = await client.get("/healthz")
    assert response.status_code == 200 and health.json()["ok"] is True
    values: dict[str, float] = {}
    for line in response.text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            values[name] = float(value)
    return values


@pytest.mark.timeout(120)
async def test_alarms_and_metrics_through_activate_grace_recovery_and_restart(tmp_path):
    clock = Clock()
    t0 = clock.now
    with start_vendor(tmp_path / "vendor", clock=clock) as vendor:
        key = vendor.issue(
            features=["mqtt_server", "mqtt_server_support"],
            expires_at=t0 + 40 * DAY,
            support_until=t0 + 35 * DAY,
            max_connections=5,
        )
        agent, transport = await open_agent(tmp_path / "s", vendor, clock)
        try:
            reply = await request(agent, transport, "activate", license_key=key)
            assert reply["status"]["state"] == "active" and reply["status"]["alarms"] == []
            m = await scrape(agent)
            assert m['mqtt_license_state{state="active"}'] == 1 and m["mqtt_license_serving"] == 1
            assert m["mqtt_license_expiry_timestamp_seconds"] == t0 + 40 * DAY
            assert m["mqtt_license_max_connections"] == 5
            assert m['mqtt_license_requests_total{operation="activate",outcome="ok"}'] == 1

            clock.now = t0 + 6 * DAY  # support ends in 29 days; the daily check-in runs and succeeds
            await tick(agent, transport)
            assert raised(transport, "support_expiring")
            assert agent.status_document()["check_in"]["last_ok_at"] == iso(t0 + 6 * DAY)  # a check-in

            vendor.stop()
            clock.now = t0 + 8 * DAY  # the next check-in fails: grace
            await tick(agent, transport)
            assert raised(transport, "check_in_failing")
            status = agent.status_document()
            assert status["state"] == "grace"
            failing = next(a for a in status["alarms"] if a["code"] == "check_in_failing")
            assert failing["deadline"] == status["deadline"] and failing["severity"] == "warning"
            m = await scrape(agent)
            assert m['mqtt_license_state{state="grace"}'] == 1 and m['mqtt_license_state{state="active"}'] == 0
            assert m['mqtt_license_alarm_active{code="check_in_failing"}'] == 1
            assert m['mqtt_license_sync_failures_total{code="server_unreachable",kind="check_in"}'] >= 1
            deadline = int(m["mqtt_license_deadline_timestamp_seconds"])

            clock.now = deadline - DAY // 2  # half a day of grace left
            await tick(agent, transport)
            assert raised(transport, "grace_ending")
            assert raised(transport, "license_expiring")  # 40 - 13.5 days left: the 30-day threshold
            assert len(raised(transport, "check_in_failing")) == 1  # raised once, not per tick
        finally:
            await agent.stop()

        # A restart raises nothing again: the alarms were saved before they were announced.
        agent, transport = await open_agent(tmp_path / "s", vendor, clock)
        try:
            await tick(agent, transport)
            assert transport.events("alarm_raised") == []
            shown = {a["code"] for a in agent.status_document()["alarms"]}
            assert {"check_in_failing", "grace_ending", "license_expiring", "support_expiring"} <= shown

            vendor.start()
            clock.now += 120  # the retry finds the vendor again: grace is over
            await tick(agent, transport)
            assert raised(transport, "grace_ending", "alarm_cleared")
            assert raised(transport, "check_in_failing", "alarm_cleared")
            assert agent.evaluation.state == "active"
            m = await scrape(agent)
            assert m['mqtt_license_state{state="active"}'] == 1
            assert m['mqtt_license_alarm_active{code="check_in_failing"}'] == 0
            assert m['mqtt_license_alarm_active{code="license_expiring"}'] == 1
            assert transport.events("alarm_raised") == []  # still the same expiry level

            # Connections: 4 of 5 is 80 %, 5 is the quota; a sixth is refused and counted.
            for n in range(5):
                assert (await agent.admit(f"c{n}", client_id=f"c{n}", username=None, password=None)).allowed
                agent.connected(f"c{n}")
            await tick(agent, transport)
            assert raised(transport, "connection_quota_reached")
            assert raised(transport, "connection_quota_high")
            assert not (await agent.admit("c6", client_id="c6", username=None, password=None)).allowed
            for n in (4, 3):
                agent.disconnected(f"c{n}")
            await tick(agent, transport)
            assert raised(transport, "connection_quota_high", "alarm_cleared")
            assert raised(transport, "connection_quota_reached", "alarm_cleared")
            m = await scrape(agent)
            assert m['mqtt_license_connections_refused_total{reason="connection_limit"}'] == 1
            assert m["mqtt_license_connections"] == 3
        finally:
            await agent.stop()


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"alarm_quota_clear": 0.9}, "alarm_quota_clear"),
        ({"alarm_quota_high": 1.5}, "alarm_quota_clear"),
        ({"alarm_expiry_days": [30, 0]}, "alarm_expiry_days"),
    ],
)
def test_bad_alarm_settings_are_one_line_naming_the_key(tmp_path, fields, named):

    config = AgentConfig(
        state_dir=str(tmp_path), vendor_public_key=public_key_to_text(Ed25519PrivateKey.generate()), **fields
    )
    with pytest.raises(LicensingError) as err:
        config.validate()
    assert err.value.code == "invalid_field" and named in err.value.message and "\n" not in err.value.message


def test_an_active_license_that_serves_no_client_raises_no_serving_feature():
    support_only = active(features=("mqtt_server_support",))
    alarms = evaluate_alarms(AlarmInputs(support_only, Facts(trial_started_at=0), 0), T0, SETTINGS)
    assert alarms["no_serving_feature"].severity == "critical"
    assert "mqtt_server" in alarms["no_serving_feature"].message
    assert "no_serving_feature" not in codes(AlarmInputs(active(), Facts(trial_started_at=0), 0), T0)
    trial = Evaluation(LicenseState.TRIAL, "evaluation", model="trial")
    assert "no_serving_feature" not in codes(AlarmInputs(trial, Facts(trial_started_at=0), 0), T0)
