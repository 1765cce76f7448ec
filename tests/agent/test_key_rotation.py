"""Vendor signing-key rotation with brokers in the field: they follow a rotation the key they pin
endorses, keep serving, and refuse what the retired key signs."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from mqtt_licensing.cli.main import main
from mqtt_licensing.core.documents import TrialRecord
from mqtt_licensing.core.errors import LicensingError
from mqtt_licensing.core.keyring import KeyRing
from mqtt_licensing.core.signing import fingerprint, unb64
from tests.helpers.broker import start_broker


def reactivate(broker) -> dict[str, Any]:
    with broker.admin() as c:
        return c.request("reactivate", {})


def test_brokers_follow_a_rotation_and_refuse_the_retired_key(tmp_path, vendor, capsys):
    keys = [vendor.issue(max_activations=1) for _ in range(3)]
    old_public = vendor.public_key
    old_private = serialization.load_pem_private_key((vendor.data_dir / "vendor.key").read_bytes(), None)
    brokers = [start_broker(tmp_path / f"b{n}", vendor=vendor) for n in range(3)]
    try:
        for broker, key in zip(brokers, keys, strict=True):
            with broker.admin() as c:
                assert c.request("activate", {"license_key": key})["status"]["state"] == "active"

        assert main(["vendor", "key", "rotate", "--data", str(vendor.data_dir)]) == 0
        vendor.restart()  # the server signs with the new key from now on
        assert vendor.public_key != old_public
        for broker in brokers:  # each check-in first learns the rotation, then trusts the new signature
            status = reactivate(broker)["status"]
            assert status["state"] == "active", status

        old_fp = fingerprint(old_public)
        assert main(["vendor", "key", "retire", old_fp[:12], "--data", str(vendor.data_dir)]) == 0
        vendor.restart()
        for broker in brokers:
            assert reactivate(broker)["status"]["state"] == "active"
        # what each broker stored replays to the same trust from the key its config still pins
        state = json.loads((tmp_path / "b0" / "state.json").read_text())
        ring = KeyRing(old_public)
        ring.restore([unb64(d) for d in state["vendor_key_documents"]])
        assert isinstance(old_private, Ed25519PrivateKey)
        signed_by_old = TrialRecord("f", 1, "n", int(time.time())).sign(old_private)
        with pytest.raises(LicensingError, match="retired"):
            TrialRecord.open(signed_by_old, ring)
        # and a restart keeps serving on the new key alone
        brokers[0].restart()
        assert brokers[0].status()["state"] == "active"
        assert reactivate(brokers[0])["status"]["state"] == "active"
    finally:
        for broker in brokers:
            broker.stop()
    capsys.readouterr()


def test_a_broker_that_never_saw_the_rotation_names_the_fix(tmp_path, vendor):
    key = vendor.issue()
    with start_broker(tmp_path / "b", vendor=vendor) as broker:
        with broker.admin() as c:
            c.request("activate", {"license_key": key})
        assert main(["vendor", "key", "rotate", "--data", str(vendor.data_dir)]) == 0
        (vendor.data_dir / "key-documents.txt").unlink()  # the documents never reach this broker
        vendor.restart()
        with pytest.raises(LicensingError, match="rotation document never reached it"):
            reactivate(broker)
        assert broker.status()["state"] == "grace"  # an answer it cannot verify is a failed check-in
