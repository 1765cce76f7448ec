"""Metering through Mosquitto exactly once across a kill -9 of the agent: the plugin keeps each
usage batch until the agent has it on disk, sends it again to the next agent, and the agent counts
a batch number once. Real Mosquitto, the agent as its own process, publishes counted against the
records (those the vendor stored and those still in the agent's ledger)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest

from mqtt_licensing.core.signing import parse_envelope
from mqtt_licensing.core.usage_documents import UsageRecord
from tests.helpers.broker import MqttClient, wait_for
from tests.helpers.mosquitto import MosquittoHandle

from .test_metering import BRIDGE_CLASS, PAYLOAD, vendor_usage

ROUND = 300


def publish_round(plc: MqttClient, bridge: MqttClient, start: int) -> None:
    for n in range(start, start + ROUND):
        plc.client.publish(f"plant/line4/{n % 7}", PAYLOAD, qos=1)
    wait_for(lambda: len(bridge.messages) >= start + ROUND, timeout=60, message=f"bridge got {start + ROUND}")


def taken_in(broker: MosquittoHandle) -> int:
    """Messages the agent has saved from the plugin and not yet closed into a record."""
    path = broker.folder / "state" / "usage" / "intake.json"
    return int(json.loads(path.read_bytes())["messages"]) if path.exists() else 0


def queued_to(pid: int) -> int:
    """Bytes waiting in the process's Unix sockets (what the plugin sent and it has not read)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        target = os.readlink(fd)
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    out = subprocess.run(["ss", "-xn"], capture_output=True, text=True, timeout=10, check=True).stdout
    rows = (line.split() for line in out.splitlines()[1:])
    return sum(int(row[2]) for row in rows if len(row) >= 6 and row[5] in inodes)


def ledger_usage(broker: MosquittoHandle) -> dict[str, int]:
    records = [
        UsageRecord.from_body(parse_envelope(path.read_bytes()).unverified_body())
        for path in (broker.folder / "state" / "usage").glob("*.usage")
    ]
    return {"messages": sum(r.messages for r in records), "bytes": sum(r.bytes for r in records)}


@pytest.mark.timeout(240)
def test_bridge_usage_is_counted_once_across_kill_9_of_the_agent(tmp_path: Path, plugin: Path, vendor: Any) -> None:
    key = vendor.issue(features=["mqtt_server", "iot_bridge_snowflake"])
    license_id = vendor.license_id(key)
    # No interval closes while the test runs: what the agent takes in stays open, in memory and in
    # its intake file, until the clean stop at the end.
    with MosquittoHandle(
        tmp_path / "b",
        plugin,
        vendor=vendor,
        agent_process=True,
        client_classes=BRIDGE_CLASS,
        usage_interval=3600,
        usage_report_interval=3600,
    ) as broker:
        with broker.admin() as c:
            assert c.request("activate", {"license_key": key})["status"]["state"] == "active"
        with (
            MqttClient(broker.port, client_id="snowflake-1") as bridge,
            MqttClient(broker.port, client_id="plc-1") as plc,
        ):
            assert bridge.connect() == 0 and plc.connect() == 0
            assert bridge.subscribe("plant/#", qos=1) == 1

            # 1. Acknowledged and on the agent's disk, in no record yet: kill -9.
            publish_round(plc, bridge, 0)
            wait_for(lambda: taken_in(broker) == ROUND, timeout=30, message="the first batch saved")
            broker.kill_agent()

            # 2. Counted while no agent is there: the plugin holds it for the next one.
            publish_round(plc, bridge, ROUND)
            broker.start_agent()
            wait_for(lambda: taken_in(broker) == 2 * ROUND, timeout=30, message="the held usage saved")

            # 3. Sent and never acknowledged: the agent is frozen with the batch in its socket, then killed.
            assert broker.agent_proc is not None
            pid = broker.agent_proc.pid
            os.kill(pid, signal.SIGSTOP)
            try:
                publish_round(plc, bridge, 2 * ROUND)
                wait_for(lambda: queued_to(pid) > 0, timeout=30, message="the batch waits in the agent's socket")
            finally:
                broker.kill_agent()  # SIGKILL ends a stopped process too
            broker.start_agent()
            wait_for(lambda: taken_in(broker) == 3 * ROUND, timeout=30, message="the unacknowledged batch saved")

        broker.stop_agent()  # the open interval becomes a record (and is reported, if it can be)
        total = {k: vendor_usage(vendor, license_id)[k] + ledger_usage(broker)[k] for k in ("messages", "bytes")}
        assert total == {"messages": 3 * ROUND, "bytes": 3 * ROUND * len(PAYLOAD)}
