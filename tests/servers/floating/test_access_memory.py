"""A floating pool remembers the instances it has leased to.

Main: ``floating allow --new-token`` and then a clean restart of a broker that held a lease:
the broker gives its seat back at shutdown, so its next start was a new instance and was
refused ``not_authorized``, although the README says leases already held renew as before."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from mqtt_licensing.clients.floating import FloatingClient, lease_request
from mqtt_licensing.core.errors import ErrorCode, LicensingError
from mqtt_licensing.core.signing import fingerprint, public_key_to_text
from tests.helpers.broker import start_broker, wait_for
from tests.helpers.floating import start_floating

pytestmark = pytest.mark.timeout(60)


def test_a_broker_that_held_a_lease_comes_back_after_a_clean_restart(tmp_path, vendor):
    with start_floating(tmp_path / "fls", vendor_key=vendor, seats=3) as fls:
        options = {
            "vendor_url": None,
            "vendor_public_key": public_key_to_text(vendor),
            "trial_seconds": 0,
            "floating_server_url": fls.url,
            "retry_interval": 0.3,
        }
        with start_broker(tmp_path / "broker", **options) as broker:
            wait_for(lambda: broker.agent.evaluation.state == "active", timeout=10)
            fls.service.allow("token")  # the operator closes the pool to newcomers
            broker.restart()  # a clean stop returns the seat; the start leases again
            wait_for(lambda: broker.agent.evaluation.state == "active", timeout=10, message=str(broker.status()))
            assert fls.service.status()["seats"]["used"] == 1
            # The memory is no rule: `floating status` still lists only the operator's token.
            assert [r["kind"] for r in fls.service.status()["access"]] == ["token"]
            assert fls.service.status()["remembered_instances"] == 1


async def test_forgetting_an_instance_by_fingerprint_closes_the_pool_to_it(tmp_path, vendor):
    with start_floating(tmp_path / "fls", vendor_key=vendor, seats=3) as fls:
        held = Ed25519PrivateKey.generate()
        async with FloatingClient(fls.url) as client:
            await client.acquire(lease_request(held, "lease_acquire"))
            fls.service.allow("token")
            await client.release(lease_request(held, "lease_release"))
            assert fls.service.status()["seats"]["used"] == 0
            await client.acquire(lease_request(held, "lease_acquire"))  # remembered: admitted
            await client.release(lease_request(held, "lease_release"))
            assert fls.service.disallow("fingerprint", fingerprint(held))
            with pytest.raises(LicensingError) as info:
                await client.acquire(lease_request(held, "lease_acquire"))
            assert info.value.code == ErrorCode.NOT_AUTHORIZED
