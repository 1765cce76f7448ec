"""docs/prometheus/alerts.yml: valid rules (promtool, where installed), and every metric they name
is exported by the broker agent or a server, as scraped from the real endpoints."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest
import yaml
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from mqtt_licensing.agent.metrics import metrics_app
from tests.agent.test_alarms import Clock, open_agent, request
from tests.helpers.activation import start_vendor
from tests.helpers.floating import start_floating

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "docs" / "prometheus" / "alerts.yml"
MONITORING = ROOT / "docs" / "monitoring.md"


def exported(text: str) -> set[str]:
    """Every family and sample name a scrape can carry, from its ``# TYPE`` lines (so also for a
    family with no sample yet); the ``_created`` series are prometheus-client's, not ours."""
    names: set[str] = set()
    for name, kind in re.findall(r"^# TYPE (\S+) (\S+)$", text, re.MULTILINE):
        if not name.endswith("_created"):
            names |= {name, *((f"{name}_bucket", f"{name}_sum", f"{name}_count") if kind == "histogram" else ())}
    return names


def rule_metrics() -> set[str]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    exprs = [str(rule["expr"]) for group in groups for rule in group["rules"]]
    assert exprs
    return {name for expr in exprs for name in re.findall(r"\bmqtt_license_[a-z_]+", expr)}


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool (Debian package prometheus) not installed")
def test_promtool_accepts_the_rules():
    result = subprocess.run(["promtool", "check", "rules", str(RULES)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stdout + result.stderr


async def test_every_metric_in_the_rules_and_the_docs_is_exported(tmp_path):
    clock = Clock()
    names: set[str] = set()
    with start_vendor(tmp_path / "vendor", clock=clock) as vendor:
        key = vendor.issue(
            features=["mqtt_server", "mqtt_server_support"],
            expires_at=clock.now + 90 * 86400,
            support_until=clock.now + 90 * 86400,
            max_connections=10,
        )
        agent, transport = await open_agent(tmp_path / "s", vendor, clock)
        try:
            assert (await request(agent, transport, "activate", license_key=key))["ok"]
            app = metrics_app(agent.metrics, agent.status_document)
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://a") as client:
                names |= exported((await client.get("/metrics")).text)
        finally:
            await agent.stop()
        names |= exported(httpx.get(f"{vendor.url}/metrics", timeout=10).text)
    with start_floating(tmp_path / "fls", vendor_key=Ed25519PrivateKey.generate(), seats=2) as fls:
        names |= exported(httpx.get(f"{fls.url}/metrics", timeout=10).text)
    for timestamp in ("expiry", "deadline", "valid_until", "support_until"):
        assert f"mqtt_license_{timestamp}_timestamp_seconds" in names
    missing = rule_metrics() - names
    assert not missing, f"alerts.yml names metrics nobody exports: {sorted(missing)}"
    # A name, not a prefix in prose (`mqtt_license_server_*`).
    documented = set(re.findall(r"`(mqtt_license_[a-z_]+)(?![a-z_*])", MONITORING.read_text()))
    assert documented - names == set(), f"docs/monitoring.md lists unknown metrics: {sorted(documented - names)}"
    families = {n for n in names if not re.search(r"_(bucket|sum|count)$", n)}
    assert families - documented == set(), f"exported but not in docs/monitoring.md: {sorted(families - documented)}"
