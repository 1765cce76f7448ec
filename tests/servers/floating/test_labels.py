"""Instance labels on the floating server: carried signed by acquire and renew, stored per lease,
kept per instance as a capped history (a lease ends, the broker comes back), shown by the admin
status, and refused (``invalid_field``) when not 1..64 printable characters."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from mqtt_licensing.cli.main import main
from mqtt_licensing.clients.floating import FloatingClient, lease_request
from mqtt_licensing.core.errors import ErrorCode, LicensingError
from mqtt_licensing.core.instance_label import HISTORY
from mqtt_licensing.core.signing import fingerprint
from mqtt_licensing.servers.floating.schema import leases

pytestmark = pytest.mark.timeout(60)

ACQ, RENEW, REL = "lease_acquire", "lease_renew", "lease_release"


def _lease_of(status: dict[str, Any], key: Ed25519PrivateKey) -> dict[str, Any]:
    (lease,) = [le for le in status["leases"] if le["instance_fingerprint"] == fingerprint(key)]
    return dict(lease)


async def test_label_travels_with_acquire_and_renew_and_history_survives_the_lease(floating: Any) -> None:
    fls = floating(seats=2, ttl=60)
    inst = Ed25519PrivateKey.generate()
    async with FloatingClient(fls.url, token=fls.token) as client:
        await client.acquire(lease_request(inst, ACQ, label="line-7-broker"))
        lease = _lease_of(await client.admin_status(), inst)
        assert lease["label"] == "line-7-broker"
        await client.renew(lease_request(inst, RENEW))  # an agent that sends none keeps its label
        assert _lease_of(await client.admin_status(), inst)["label"] == "line-7-broker"
        await client.renew(lease_request(inst, RENEW, label="line-8-broker"))
        lease = _lease_of(await client.admin_status(), inst)
        assert lease["label"] == "line-8-broker"
        assert [h["label"] for h in lease["label_history"]] == ["line-7-broker", "line-8-broker"]

        # A new lease after a release: the same instance, the same history, no rename recorded.
        await client.release(lease_request(inst, REL))
        await client.acquire(lease_request(inst, ACQ, label="line-8-broker"))
        lease = _lease_of(await client.admin_status(), inst)
        assert lease["label"] == "line-8-broker"
        assert [h["label"] for h in lease["label_history"]] == ["line-7-broker", "line-8-broker"]

        for n in range(HISTORY + 3):
            await client.renew(lease_request(inst, RENEW, label=f"name-{n}"))
        history = [h["label"] for h in _lease_of(await client.admin_status(), inst)["label_history"]]
        assert history == [f"name-{n}" for n in range(3, HISTORY + 3)]


@pytest.mark.parametrize("label", ["y" * 65, "\x1b]0;owned\x07", "tab\there"], ids=["long", "osc", "tab"])
async def test_bad_labels_are_refused(floating: Any, label: str) -> None:
    fls = floating(seats=2, ttl=60)
    inst = Ed25519PrivateKey.generate()
    async with FloatingClient(fls.url, token=fls.token) as client:
        with pytest.raises(LicensingError) as err:
            await client.acquire(lease_request(inst, ACQ, label=label))
        assert err.value.code == ErrorCode.INVALID_FIELD and "instance label" in err.value.message
        assert (await client.admin_status())["leases"] == []
        await client.acquire(lease_request(inst, ACQ, label="fine"))
        with pytest.raises(LicensingError) as err:
            await client.renew(lease_request(inst, RENEW, label=label))
        assert err.value.code == ErrorCode.INVALID_FIELD
        assert _lease_of(await client.admin_status(), inst)["label"] == "fine"


async def test_floating_status_shows_labels_and_prints_escapes_as_text(floating: Any, capsys: Any) -> None:
    fls = floating(seats=2, ttl=60)
    inst = Ed25519PrivateKey.generate()
    async with FloatingClient(fls.url) as client:
        await client.acquire(lease_request(inst, ACQ, label="line-7-broker"))
    capsys.readouterr()
    assert main(["floating", "status", "--data", str(fls.data_dir)]) == 0
    assert "label line-7-broker" in capsys.readouterr().out
    # The CLI's own defence: a label in the database holding terminal escapes prints as text.
    with fls.service.store.engine.begin() as conn:
        conn.execute(sa.update(leases).values(label="\x1b[2J\x1b[32mACTIVE\x1b[0m"))
    assert main(["floating", "status", "--data", str(fls.data_dir)]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "label \\x1b[2J\\x1b[32mACTIVE\\x1b[0m" in out
