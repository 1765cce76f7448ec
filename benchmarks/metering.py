"""Metering cost on the message path (issue 16): throughput to a metered bridge subscriber against
the same run's throughput to an unmetered one, on one broker with the licensing agent.

    python -m benchmarks.metering [--seconds 3] [--rounds 5] [--qos 0 1]

Both publisher/subscriber pairs run on the same broker process, interleaved round by round
(A,B / B,A / ...), so machine noise hits both alike; the ratio is the median of the per-round
ratios. The bridge pair's client ids match the
``snowflake-`` class (feature ``iot_bridge_snowflake``, metered); the other pair's do not. The
broker runs in its trial (every feature), so no vendor is needed. Target: ratio >= 0.95.
Afterwards the broker is stopped cleanly and the messages in its usage records are checked
against what the bridge subscriber received: the counting must be exact, not only cheap.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from mqtt_licensing.core.signing import parse_envelope, public_key_to_text
from mqtt_licensing.core.usage_documents import UsageRecord
from mqtt_licensing.servers._run import free_port

from . import mqtt_load, processes

BRIDGE_CLASS = {"snowflake_bridge": {"features": ["iot_bridge_snowflake"], "client_id_prefixes": ["snowflake-"]}}
TARGET = 0.95


def usage_messages(state_dir: Path) -> int:
    total = 0
    for path in sorted((state_dir / "usage").glob("*.usage")):
        total += UsageRecord.from_body(parse_envelope(path.read_bytes()).unverified_body()).messages
    return total


async def bench(work: Path, seconds: float, rounds: int, qos: int) -> tuple[float, float, float, int, int]:
    """(median metered rate, median unmetered rate, median of the per-round ratios, received, counted)"""
    port = free_port()
    config = processes.agent_broker_config(
        port,
        work / f"state-q{qos}",
        vendor_url=f"http://127.0.0.1:{free_port()}",
        vendor_public_key=public_key_to_text(Ed25519PrivateKey.generate()),
        client_classes=BRIDGE_CLASS,
    )
    broker = processes.start_amqtt(f"metering-q{qos}", config, work)
    try:
        bridge = await mqtt_load.PubSub(port, qos, name="snowflake-bench").open()
        plain = await mqtt_load.PubSub(port, qos, name="plain-bench").open()
        rates: dict[str, list[float]] = {"bridge": [], "plain": []}
        pairs = {"bridge": bridge, "plain": plain}
        for pair in pairs.values():  # warm-up, uncounted
            await pair.throughput(min(seconds, 1.0))
        for r in range(rounds):
            order = ["bridge", "plain"] if r % 2 == 0 else ["plain", "bridge"]
            for name in order:
                rate, _sent = await pairs[name].throughput(seconds)
                rates[name].append(rate)
        received = bridge.received
        await bridge.close()
        await plain.close()
    finally:
        broker.stop()  # SIGTERM: a clean shutdown closes the open interval into a record
    counted = usage_messages(work / f"state-q{qos}")
    ratio = statistics.median(m / p for m, p in zip(rates["bridge"], rates["plain"], strict=True))
    return statistics.median(rates["bridge"]), statistics.median(rates["plain"]), ratio, received, counted


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--qos", type=int, nargs="+", default=[0, 1], choices=(0, 1))
    args = parser.parse_args(argv)
    ok = True
    print(f"{'QoS':<4} {'metered msgs/s':>15} {'unmetered msgs/s':>17} {'ratio':>6}  counted/received")
    with tempfile.TemporaryDirectory(prefix="metering-bench-") as tmp:
        for qos in args.qos:
            metered, plain, ratio, received, counted = asyncio.run(bench(Path(tmp), args.seconds, args.rounds, qos))
            ok = ok and ratio >= TARGET and counted == received
            print(f"{qos:<4} {metered:>15.0f} {plain:>17.0f} {ratio:>6.3f}  {counted}/{received}")
    print(f"target: ratio >= {TARGET} and every delivery counted: {'met' if ok else 'MISSED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
