"""`vendor serve --workers 2` (servers/_workers.py) as a real process on one SQLite file: the
exactly-once rules hold across the workers, and a worker killed -9 is started again."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import sqlalchemy as sa

from mqtt_licensing.core.signing import b64
from mqtt_licensing.servers.activation.schema import activations
from mqtt_licensing.servers.activation.service import ActivationService
from tests.helpers.workers import kill_one_and_see_it_restarted, post_each, worker_pids
from tests.servers.replicas import Replica

from .conftest import Instance

pytestmark = pytest.mark.timeout(120)


def test_two_workers_keep_the_exactly_once_rules(tmp_path: Path) -> None:
    data = tmp_path / "vendor"
    server = Replica("vendor", data, None, "--workers", "2", "--log-level", "WARNING")
    try:
        workers = worker_pids(server.proc.pid)
        assert len(workers) == 2
        service = ActivationService.open(data)  # the CLI's way in, beside the running server
        try:
            _lic, key = service.issue_license(features=["mqtt_server"], max_activations=3)
            # 8 instances race for 3 activations, across both workers: exactly 3 get one.
            instances = [Instance() for _ in range(8)]
            bodies = [{"license_key": key, "request": b64(i.activate(key))} for i in instances]
            answers = asyncio.run(post_each(server.url, "/v1/activations", bodies))
            granted = [r for r in answers if r.status_code == 201]
            assert len(granted) == 3, [(r.status_code, r.text) for r in answers]
            assert {r.json()["error"]["code"] for r in answers if r.status_code != 201} == {"no_activations_left"}
            with service.store.engine.connect() as conn:
                live = conn.execute(
                    sa.select(sa.func.count()).select_from(activations).where(activations.c.freed_at.is_(None))
                ).scalar_one()
            assert live == 3
            # 16 copies of one signed check-in, across both workers: exactly one is answered.
            winner = next(i for i, r in zip(instances, answers, strict=True) if r.status_code == 201)
            act_id = next(r.json()["activation_id"] for i, r in zip(instances, answers, strict=True) if i is winner)
            copy = {"request": b64(winner.check_in(act_id))}
            answers = asyncio.run(post_each(server.url, "/v1/activations/check-in", [copy] * 16))
            assert sorted(r.status_code for r in answers) == [200] + [400] * 15, [r.text for r in answers]
            assert all("replay" in r.json()["error"]["message"] for r in answers if r.status_code == 400)
        finally:
            service.close()

        # A worker killed -9 is started again; the server answers throughout.
        kill_one_and_see_it_restarted(server.proc.pid, server.url, workers)
    finally:
        server.stop()
    assert server.proc.returncode == 0
    assert not worker_pids(server.proc.pid)
