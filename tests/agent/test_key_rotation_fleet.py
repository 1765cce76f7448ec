"""A vendor key rotation across a fleet: 3 online brokers, 1 offline site and 1 floating server
(with a broker leasing from it) keep serving, and once the old key is retired a document it
signed is refused everywhere.

Online brokers learn the rotation at their next check-in; the floating server with its next
vendor answer (the certificate carries the documents), its brokers with their next lease (which
embeds that certificate); the offline site with its next usage license."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from mqtt_licensing.cli.main import main
from mqtt_licensing.clients.http import HttpOptions
from mqtt_licensing.core.documents import TrialRecord
from mqtt_licensing.core.errors import LicensingError
from mqtt_licensing.core.keyring import KeyRing
from mqtt_licensing.core.signing import fingerprint, unb64
from mqtt_licensing.servers.floating.provision import activate_online, refresh_online
from tests.helpers.broker import BrokerHandle, start_broker, wait_for
from tests.helpers.floating import start_floating

HTTP = HttpOptions(timeout=10.0)


def request(broker: BrokerHandle, operation: str, fields: dict[str, Any] | None = None) -> dict[str, Any]:
    with broker.admin() as c:
        return c.request(operation, fields or {})


def renew_offline(broker: BrokerHandle, vendor: Any, key: str) -> dict[str, Any]:
    """The offline site's next exchange of codes: its request, the vendor's usage license."""
    code = request(broker, "offline_request", {"license_key": key})["request_code"]
    answer = vendor.service.offline_activate(code).usage_license
    return request(broker, "activate", {"method": "offline", "usage_license": answer})["status"]


def stored_ring(state_dir: Path, pinned: Any) -> KeyRing:
    """What a broker stored, replayed from the key its config still pins (as at its next start)."""
    ring = KeyRing(pinned)
    ring.restore([unb64(d) for d in json.loads((state_dir / "state.json").read_text())["vendor_key_documents"]])
    return ring


def test_a_rotation_keeps_the_whole_fleet_serving_and_a_retirement_reaches_every_site(tmp_path, vendor):
    online_keys = [vendor.issue(max_activations=1) for _ in range(3)]
    offline_key = vendor.issue(model="offline")
    _lic, floating_key = vendor.issue_license(features=["mqtt_server"], model="floating", seats=2)
    old_public = vendor.public_key
    old_private = serialization.load_pem_private_key((vendor.data_dir / "vendor.key").read_bytes(), None)
    assert isinstance(old_private, Ed25519PrivateKey)

    fls = start_floating(tmp_path / "fls")
    asyncio.run(activate_online(fls.service, floating_key, vendor.url, vendor_public_key=old_public, options=HTTP))
    online = [start_broker(tmp_path / f"on{n}", vendor=vendor) for n in range(3)]
    offline = start_broker(tmp_path / "off", vendor=vendor)
    leasing = start_broker(tmp_path / "fl", vendor=vendor, floating_server_url=fls.url, retry_interval=0.2)
    everyone = [*online, offline, leasing]
    try:
        for broker, key in zip(online, online_keys, strict=True):
            assert request(broker, "activate", {"license_key": key})["status"]["state"] == "active"
        assert renew_offline(offline, vendor, offline_key)["state"] == "active"
        assert request(leasing, "reactivate")["status"]["state"] == "active"

        assert main(["vendor", "key", "rotate", "--data", str(vendor.data_dir)]) == 0
        vendor.restart()  # signs with the new key from now on
        new_fp = fingerprint(vendor.public_key)
        for broker in online:
            assert request(broker, "reactivate")["status"]["state"] == "active"
        asyncio.run(refresh_online(fls.service, options=HTTP))  # the floating server's next vendor answer
        ring = fls.service.vendor_keys()
        assert ring is not None and new_fp in ring.keys.keys  # pinned on disk beside vendor.pub
        assert (tmp_path / "fls" / "vendor-key-documents.txt").exists()
        assert request(leasing, "reactivate")["status"]["state"] == "active"  # a lease with the new certificate
        assert renew_offline(offline, vendor, offline_key)["state"] == "active"  # the next usage license
        for broker in everyone:
            assert broker.status()["state"] == "active"
            assert new_fp in stored_ring(broker.state_dir, old_public).keys.keys

        old_fp = fingerprint(old_public)
        assert main(["vendor", "key", "retire", old_fp[:12], "--data", str(vendor.data_dir)]) == 0
        vendor.restart()
        for broker in online:
            assert request(broker, "reactivate")["status"]["state"] == "active"
        asyncio.run(refresh_online(fls.service, options=HTTP))
        assert request(leasing, "reactivate")["status"]["state"] == "active"
        assert renew_offline(offline, vendor, offline_key)["state"] == "active"

        signed_by_old = TrialRecord("f", 1, "n", int(time.time())).sign(old_private)
        fls.restart()  # the floating server's trust is read back from its folder
        rings = [stored_ring(b.state_dir, old_public) for b in everyone] + [fls.service.vendor_keys()]
        for ring in rings:
            assert ring is not None
            with pytest.raises(LicensingError, match="retired"):
                TrialRecord.open(signed_by_old, ring)
        for broker in everyone:  # and each still serves, on the new key alone, across a restart
            broker.restart()  # (the leasing one handed its seat back and leases again)
            wait_for(lambda b=broker: b.status()["state"] == "active", message=str(broker.state_dir))
    finally:
        for broker in everyone:
            broker.stop()
        fls.stop()
