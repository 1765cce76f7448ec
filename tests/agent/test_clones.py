"""Issue 10: a copied state folder is seen by the vendor (the check-in chain).

Main: a licensed broker's state folder copied to 2 more hosts gave 3 brokers ``active``, all
checking in fine; the vendor showed 1 activation and could not tell them apart. Now the copies
diverge at their second check-in: flagged (the default) or, by policy, both suspended with a
signed ``cloned`` verdict."""

from __future__ import annotations

import shutil
from typing import Any

import httpx
import pytest

from mqtt_licensing.cli.main import main
from mqtt_licensing.core.errors import LicensingError
from tests.helpers.broker import start_broker, wait_for


def activate(broker, key):
    with broker.admin() as c:
        return c.request("activate", {"method": "online", "license_key": key})["status"]


def check_in(broker) -> dict[str, Any]:
    """An operator-triggered check-in (``$license/reactivate``); the reply, or the error's dict."""
    with broker.admin() as c:
        try:
            return c.request("reactivate")
        except LicensingError as exc:
            return exc.to_dict()


def cloned_pair(tmp_path, vendor, key):
    original = tmp_path / "a"
    broker = start_broker(original, vendor=vendor, check_in_interval=3600, trial_seconds=0)
    try:
        activate(broker, key)
    finally:
        broker.stop()
    shutil.copytree(original, tmp_path / "b")  # identity.key, state.json (its MAC still verifies)
    return (
        start_broker(original, vendor=vendor, check_in_interval=3600, trial_seconds=0),
        start_broker(tmp_path / "b", vendor=vendor, check_in_interval=3600, trial_seconds=0),
    )


def test_a_copied_folder_is_flagged_within_two_check_ins(tmp_path, vendor, capsys):
    lic, key = vendor.issue_license()
    a, b = cloned_pair(tmp_path, vendor, key)
    try:
        check_in(a)
        check_in(b)  # b presents the secret a already moved past... as a lost answer's retry
        [act] = vendor.service.list_activations(lic["id"])
        assert act["clone_count"] == 0
        check_in(a)  # ...until a presents its newer one: two instances, one activation
        [act] = vendor.service.list_activations(lic["id"])
        assert act["clone_count"] == 1 and act["cloned_at"] is not None
        assert a.status()["state"] == b.status()["state"] == "active"  # flag: seen, not stopped
        assert "mqtt_license_server_cloned_activations 1.0" in httpx.get(vendor.url + "/metrics", timeout=10).text
        check_in(b)
        assert vendor.service.list_activations(lic["id"])[0]["clone_count"] == 2
    finally:
        a.stop()
        b.stop()
    assert main(["vendor", "activations", "--data", str(vendor.data_dir)]) == 0
    assert "CLONED x2 since" in capsys.readouterr().out


def test_policy_suspend_stops_both_copies_with_a_signed_verdict(tmp_path, vendor):
    lic, key = vendor.issue_license()
    assert main(["vendor", "update", lic["id"], "--data", str(vendor.data_dir), "--clone-policy", "suspend"]) == 0
    assert vendor.service.get_license(lic["id"])["clone_policy"] == "suspend"
    a, b = cloned_pair(tmp_path, vendor, key)
    try:
        check_in(a)
        check_in(b)
        assert check_in(a)["code"] == "cloned"
        assert check_in(b)["code"] == "cloned"
        for broker in (a, b):
            wait_for(lambda broker=broker: broker.status()["state"] == "suspended")
            assert "another instance" in broker.status()["reason"]
    finally:
        a.stop()
        b.stop()


def test_a_lost_answer_is_not_a_clone(tmp_path, vendor):
    """The same instance presenting the previous secret again (its last answer never arrived)."""
    lic, key = vendor.issue_license()
    broker = start_broker(tmp_path / "a", vendor=vendor, check_in_interval=3600, trial_seconds=0)
    try:
        activate(broker, key)
        before = (tmp_path / "a" / "state.json").read_bytes()
        check_in(broker)
        broker.stop()
        (tmp_path / "a" / "state.json").write_bytes(before)  # as if that answer was never saved
        broker.start()
        check_in(broker)
        check_in(broker)
        assert vendor.service.list_activations(lic["id"])[0]["clone_count"] == 0
    finally:
        broker.stop()


@pytest.mark.parametrize("policy", ["sometimes", None])
def test_an_unknown_clone_policy_is_refused(vendor, policy):
    lic, _ = vendor.issue_license()
    with pytest.raises(LicensingError) as refused:
        vendor.service.update_license(lic["id"], {"clone_policy": policy})
    assert "clone_policy must be one of flag, suspend" in refused.value.message


def renew(broker) -> dict[str, Any]:
    """An operator-triggered renewal of the floating lease (``$license/reactivate``)."""
    return check_in(broker)


def test_a_copied_folder_holding_a_lease_is_flagged_within_two_renewals(tmp_path):
    """Main: 2 brokers on 1 seat, both renewing; the pool showed 1 of 1 used. Now the floating
    server sees the copies diverge (per lease, as the vendor does per activation)."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from mqtt_licensing.core.signing import public_key_to_text
    from tests.helpers.floating import start_floating

    vendor_key = Ed25519PrivateKey.generate()
    options = {"vendor_url": None, "vendor_public_key": public_key_to_text(vendor_key), "trial_seconds": 0}
    with start_floating(tmp_path / "fls", vendor_key=vendor_key, seats=1) as fls:
        original = start_broker(tmp_path / "a", **options)
        try:
            with original.admin() as c:
                c.request("activate", {"method": "floating", "server_url": fls.url})
        finally:
            original.stop()
        shutil.copytree(tmp_path / "a", tmp_path / "b")
        a, b = start_broker(tmp_path / "a", **options), start_broker(tmp_path / "b", **options)
        try:
            renew(a)
            renew(b)
            renew(a)
            [lease] = fls.service.status()["leases"]
            assert lease["clone_count"] >= 1 and lease["cloned_at"] is not None
            assert "mqtt_license_floating_cloned_leases 1.0" in httpx.get(fls.url + "/metrics", timeout=10).text
        finally:
            a.stop()
            b.stop()


def test_pool_policy_suspend_refuses_both_copies_of_a_lease_with_a_signed_verdict(tmp_path, capsys):
    """Main (after the flag): both copies kept renewing one seat. With `floating allow
    --clone-policy suspend` the floating server ends the lease and refuses both, signed by its key;
    each agent drops the lease and says why in status, until `--unsuspend`."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from mqtt_licensing.core.signing import public_key_to_text
    from tests.helpers.floating import start_floating

    vendor_key = Ed25519PrivateKey.generate()
    options = {"vendor_url": None, "vendor_public_key": public_key_to_text(vendor_key), "trial_seconds": 0}
    with start_floating(tmp_path / "fls", vendor_key=vendor_key, seats=1) as fls:
        assert main(["floating", "allow", "--data", str(fls.data_dir), "--clone-policy", "suspend"]) == 0
        assert "clone policy: suspend" in capsys.readouterr().out
        original = start_broker(tmp_path / "a", **options)
        try:
            with original.admin() as c:
                c.request("activate", {"method": "floating", "server_url": fls.url})
        finally:
            original.stop()
        shutil.copytree(tmp_path / "a", tmp_path / "b")
        a, b = start_broker(tmp_path / "a", **options), start_broker(tmp_path / "b", **options)
        try:
            renew(a)
            renew(b)
            assert renew(a)["code"] == "cloned"
            assert renew(b)["code"] == "cloned"
            for broker in (a, b):
                status = broker.status()
                assert status["state"] != "active" and status["serving"] is False, status
                assert status["floating"]["last_error"]["code"] == "cloned"
                assert "--unsuspend" in status["floating"]["last_error"]["message"]
            pool = fls.service.status()
            assert pool["leases"] == [] and [s["instance_fingerprint"] for s in pool["suspended"]] == [
                a.agent.fingerprint
            ]
            assert main(["floating", "allow", "--data", str(fls.data_dir), "--unsuspend", a.agent.fingerprint]) == 0
            assert "unsuspended" in capsys.readouterr().out
            with a.admin() as c:
                c.request("activate", {"method": "floating", "server_url": fls.url})
            assert a.status()["state"] == "active"
        finally:
            a.stop()
            b.stop()


def test_only_a_cloned_refusal_signed_by_the_pool_for_this_request_drops_a_lease(tmp_path):
    """Anyone on the path can answer `cloned`: without the pool's signature, for this lease, this
    instance and the request just sent, it is a failed renewal (the lease serves until it expires)."""
    import time

    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from mqtt_licensing.core.documents import Verdict
    from mqtt_licensing.core.errors import ErrorCode
    from mqtt_licensing.core.signing import public_key_to_text
    from tests.helpers.floating import start_floating

    vendor_key = Ed25519PrivateKey.generate()
    options = {"vendor_url": None, "vendor_public_key": public_key_to_text(vendor_key), "trial_seconds": 0}
    with start_floating(tmp_path / "fls", vendor_key=vendor_key, seats=1) as fls:
        broker = start_broker(tmp_path / "a", **options)
        try:
            with broker.admin() as c:
                c.request("activate", {"method": "floating", "server_url": fls.url})
            source = broker.agent.source
            assert source is not None and source.lease is not None

            def refusal(key, **changes) -> LicensingError:
                fields = {
                    "verdict": "cloned",
                    "activation_id": source.lease.lease_id,
                    "instance_fingerprint": broker.agent.fingerprint,
                    "request_nonce": source.sent_nonce,
                    "issued_at": int(time.time()),
                    **changes,
                }
                return LicensingError(ErrorCode.CLONED, "cloned", evidence=Verdict(**fields).sign(key))

            pool_key = fls.service.signing_key
            assert source._signed_by_pool(refusal(pool_key)) is True
            assert source._signed_by_pool(refusal(Ed25519PrivateKey.generate())) is False
            assert source._signed_by_pool(refusal(pool_key, request_nonce="an-older-request")) is False
            assert source._signed_by_pool(refusal(pool_key, activation_id="lse_other")) is False
            assert source._signed_by_pool(LicensingError(ErrorCode.CLONED, "x", evidence=b"junk")) is False
            assert source._signed_by_pool(LicensingError(ErrorCode.CLONED, "x")) is False
        finally:
            broker.stop()


def test_chain_steps():
    """The rules of the chain (servers/_requests.chain_step), one case each."""
    from mqtt_licensing.servers._requests import chain_step

    new, prev, diverged = chain_step("c1", None, "c1")  # the current secret: move on
    assert (prev, diverged) == ("c1", False) and new not in ("c1", None)
    assert chain_step(new, "c1", "c1")[1:] == ("c1", False)  # the previous one, once more: a lost answer
    assert chain_step("c3", "c2", "c1")[1:] == (None, True)  # an older one: two instances
    assert chain_step(None, None, "anything")[2] is False  # a record from before chains starts one
    assert chain_step("c1", None, None) == ("c1", None, False)  # an agent from before chains: no verdict
    assert chain_step("c2", "c1", None)[1:] == (None, True)  # but once one was presented, it is required
