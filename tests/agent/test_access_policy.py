"""The agent in-process (no broker): admin policy, request floods, readers' status, unknown
usernames, config validation (issue 9 items 2, 6, 7; issue 11). Replies and events are read off
a recording transport standing where the broker would."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from mqtt_licensing.agent import AgentConfig, LicensingAgent
from mqtt_licensing.agent.flood import BURST
from mqtt_licensing.core.errors import LicensingError
from mqtt_licensing.core.gate import Refusal
from mqtt_licensing.core.passwords import hash_password
from mqtt_licensing.core.signing import public_key_to_text
from tests.helpers.transport import RecordingTransport

ADMIN, ADMIN_PASSWORD = "admin", "admin-secret"
OTHER_ADMIN = "admin2"
READER, READER_PASSWORD = "dashboard", "reader-secret"
HASH = hash_password(ADMIN_PASSWORD, n=2**10)
VENDOR_KEY = public_key_to_text(Ed25519PrivateKey.generate().public_key())  # no vendor is called here
READER_HASH = hash_password(READER_PASSWORD, n=2**10)


async def start_agent(state_dir: Path, **config: Any) -> tuple[LicensingAgent, RecordingTransport]:
    config.setdefault("vendor_public_key", VENDOR_KEY)
    agent = LicensingAgent(
        AgentConfig(
            state_dir=str(state_dir),
            admins={ADMIN: HASH, OTHER_ADMIN: HASH},
            users={READER: READER_HASH},
            readers=[READER],
            tick_interval=3600,
            **config,
        )
    )
    transport = RecordingTransport()
    await agent.load()
    await agent.start(transport)
    return agent, transport


async def admit(agent: LicensingAgent, conn: str, client_id: str, username: str | None = None, password=None):
    decision = await agent.admit(conn, client_id=client_id, username=username, password=password)
    if decision.allowed:
        agent.connected(conn)
    return decision


async def request(agent: LicensingAgent, conn: str, operation: str) -> None:
    await agent.handle_message(conn, f"$license/{operation}", json.dumps({}).encode())


async def test_at_most_max_admin_connections_and_they_do_not_count(tmp_path):
    agent, _ = await start_agent(tmp_path / "s", max_admin_connections=2, trial_max_connections=1)
    try:
        assert (await admit(agent, "a1", "ops1", ADMIN, ADMIN_PASSWORD)).allowed
        assert (await admit(agent, "a2", "ops2", OTHER_ADMIN, ADMIN_PASSWORD)).allowed
        third = await admit(agent, "a3", "ops3", ADMIN, ADMIN_PASSWORD)
        assert not third.allowed and third.refusal is Refusal.ADMIN_LIMIT
        assert (await admit(agent, "u1", "plant-1")).allowed  # admins left the one licensed slot free
        agent.disconnected("a1")
        assert (await admit(agent, "a3", "ops3", ADMIN, ADMIN_PASSWORD)).allowed
    finally:
        await agent.stop()


async def test_admin_confined_to_license_topics_while_not_serving(tmp_path, caplog):
    agent, _ = await start_agent(tmp_path / "s", trial_seconds=0)
    try:
        assert (await admit(agent, "a1", "ops", ADMIN, ADMIN_PASSWORD)).allowed
        with caplog.at_level(logging.WARNING, logger="mqtt_licensing.agent.access"):
            assert not agent.may_publish("a1", "plant/line1/temp")
            assert not agent.may_subscribe("a1", "plant/#")
            assert not agent.may_publish("a1", "plant/line1/other")
        assert sum("only $license/... topics" in r.getMessage() for r in caplog.records) == 1  # logged once
        assert agent.may_publish("a1", "$license/activate")
        assert agent.may_subscribe("a1", "$license/reply/ops")
    finally:
        await agent.stop()


async def test_admin_not_confined_while_serving(tmp_path):
    agent, _ = await start_agent(tmp_path / "s")  # the trial serves
    try:
        assert (await admit(agent, "a1", "ops", ADMIN, ADMIN_PASSWORD)).allowed
        assert agent.may_publish("a1", "plant/line1/temp") and agent.may_subscribe("a1", "plant/#")
    finally:
        await agent.stop()


async def test_unknown_username_with_a_password_is_refused(tmp_path):
    agent, _ = await start_agent(tmp_path / "s")
    try:
        mistyped = await admit(agent, "c1", "ops", "admn", ADMIN_PASSWORD)
        assert not mistyped.allowed and mistyped.refusal is Refusal.BAD_CREDENTIALS
        assert (await admit(agent, "c2", "plain", "someone")).allowed  # a name without password: anonymous
        assert agent.clients["c2"].role == "user"
    finally:
        await agent.stop()


async def test_non_admin_requests_get_a_small_burst_and_one_coalesced_event(tmp_path):
    agent, transport = await start_agent(tmp_path / "s")
    try:
        assert (await admit(agent, "u1", "flooder")).allowed
        for _ in range(200):
            await request(agent, "u1", "activate")
        await transport.settle()
        replies = transport.replies("flooder")
        assert BURST <= len(replies) <= BURST + 1, len(replies)  # the rest dropped unanswered
        assert all(r["error"]["code"] == "not_authorized" for r in replies)
        refused = transport.events("request_refused")
        assert len(refused) == 1 and refused[0]["count"] == 1, refused
    finally:
        await agent.stop()


async def test_request_refused_events_carry_the_count_of_the_window(tmp_path):
    from mqtt_licensing.agent.flood import Coalescer

    c = Coalescer(window=60)
    assert c.hit("x", 0) == 1
    assert [c.hit("x", t) for t in (1, 2, 3)] == [None, None, None]
    assert c.hit("y", 4) == 1  # per client
    assert c.hit("x", 61) == 4  # this one and the three held back


async def test_readers_may_ask_for_status_and_nothing_else(tmp_path):
    agent, transport = await start_agent(tmp_path / "s")
    try:
        assert (await admit(agent, "r1", "grafana", READER, READER_PASSWORD)).allowed
        await request(agent, "r1", "status")
        await request(agent, "r1", "deactivate")
        status, deactivate = transport.replies("grafana")
        assert status["ok"] is True and status["status"]["state"] == "trial"
        assert deactivate["ok"] is False and deactivate["error"]["code"] == "not_authorized"
        assert (await admit(agent, "u1", "plain")).allowed
        await request(agent, "u1", "status")
        assert transport.replies("plain")[-1]["error"]["code"] == "not_authorized"
    finally:
        await agent.stop()


async def test_admins_take_turns_and_status_never_waits(tmp_path):
    agent, transport = await start_agent(tmp_path / "s")
    try:
        assert (await admit(agent, "a1", "ops1", ADMIN, ADMIN_PASSWORD)).allowed
        assert (await admit(agent, "a2", "ops2", OTHER_ADMIN, ADMIN_PASSWORD)).allowed
        # deactivate with nothing active fails, but only after taking the license lock and saving
        flood = [asyncio.create_task(request(agent, "a1", "deactivate")) for _ in range(12)]
        await asyncio.sleep(0)
        other = asyncio.create_task(request(agent, "a2", "deactivate"))
        status = asyncio.create_task(request(agent, "a2", "status"))
        await asyncio.gather(*flood, other, status)
        replies = [
            (m.topic.rsplit("/", 1)[-1], json.loads(m.payload)["operation"])
            for m in transport.published
            if m.topic.startswith("$license/reply/")
        ]
        assert replies[0] == ("ops2", "status"), replies  # status never waits behind commands
        assert replies.index(("ops2", "deactivate")) <= 3, replies  # not behind all twelve of ops1's
    finally:
        await agent.stop()


async def test_one_admin_cannot_queue_without_bound(tmp_path):
    from mqtt_licensing.agent.requests import MAX_QUEUED

    agent, transport = await start_agent(tmp_path / "s")
    try:
        assert (await admit(agent, "a1", "ops1", ADMIN, ADMIN_PASSWORD)).allowed
        await asyncio.gather(*(request(agent, "a1", "deactivate") for _ in range(MAX_QUEUED + 10)))
        codes = [r["error"]["code"] for r in transport.replies("ops1")]
        assert codes.count("rate_limited") >= 9, codes
    finally:
        await agent.stop()


def test_reader_without_password_is_refused_while_anonymous_is_allowed(tmp_path):
    cfg = AgentConfig(state_dir=str(tmp_path), vendor_public_key=VENDOR_KEY, readers=["grafana"])
    with pytest.raises(LicensingError, match=r"grafana.*users:"):
        cfg.validate()
    cfg.users = {"grafana": READER_HASH}
    cfg.validate()


def test_client_class_by_prefix_only_warns(tmp_path, caplog):
    classes = {"sf": {"features": ["iot_bridge_snowflake"], "client_id_prefixes": ["snowflake-"]}}
    cfg = AgentConfig(state_dir=str(tmp_path), vendor_public_key=VENDOR_KEY, client_classes=classes)
    with caplog.at_level(logging.WARNING):
        cfg.validate()
    assert any("client-id prefix only" in r.getMessage() for r in caplog.records)
    caplog.clear()
    classes["sf"]["usernames"] = ["bridge"]
    with caplog.at_level(logging.WARNING):
        cfg.validate()
    assert not any("prefix only" in r.getMessage() for r in caplog.records)


def test_password_file_mistakes_are_one_line(tmp_path):
    key = VENDOR_KEY
    cfg = AgentConfig(state_dir=str(tmp_path), vendor_public_key=key, password_file=str(tmp_path / "missing"))
    with pytest.raises(LicensingError, match="password_file: cannot read"):
        cfg.validate()
    (tmp_path / "pw").write_text("alice:plaintext\n")
    cfg.password_file = str(tmp_path / "pw")
    with pytest.raises(LicensingError, match=r"line 1.*mosquitto_passwd"):
        cfg.validate()


async def test_wrong_password_refusals_are_announced_once_a_minute_per_username(tmp_path):
    agent, transport = await start_agent(tmp_path / "s")
    try:
        for i in range(3):  # within the free failures: no backoff wait
            assert not (await admit(agent, f"c{i}", f"guess-{i}", ADMIN, f"wrong-{i}")).allowed
        assert not (await admit(agent, "c9", "typo", "mistyped", "pw")).allowed
        await transport.settle()
        refused = [(e["username"], e["count"]) for e in transport.events("connection_refused")]
        assert refused == [(ADMIN, 1), ("mistyped", 1)], refused
    finally:
        await agent.stop()


async def test_a_replaced_connection_counts_again_if_its_replacement_goes_first(tmp_path):
    agent, _ = await start_agent(tmp_path / "s", trial_max_connections=2)
    try:
        assert (await admit(agent, "old", "dev-a")).allowed and (await admit(agent, "b", "dev-b")).allowed
        assert (await admit(agent, "new", "dev-a")).allowed  # a reconnect at the cap takes its own place
        assert agent.status_document()["connections"] == 2
        agent.disconnected("new")  # e.g. refused by another auth plugin: the old socket was never closed
        assert agent.status_document()["connections"] == 2
        assert not (await admit(agent, "c", "dev-c")).allowed
    finally:
        await agent.stop()
