"""Issue 10: a floating pool is not open to anyone on the LAN once it has access rules.

Main: 5 fresh instance identities leased a 5-seat pool in 0.06 s; the real broker went
``unlicensed``. Now ``floating allow`` rules admit new instances only by join token,
fingerprint or source network; leases already held renew as before; ``--new-identities-per-minute``
limits new identities per source."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from mqtt_licensing.cli.main import main
from mqtt_licensing.clients.floating import FloatingClient, lease_request
from mqtt_licensing.core.errors import ErrorCode, LicensingError
from mqtt_licensing.core.signing import fingerprint
from mqtt_licensing.servers.floating.service import FloatingService
from tests.helpers.broker import start_broker, wait_for
from tests.helpers.floating import start_floating

pytestmark = pytest.mark.timeout(60)

ACQ, RENEW = "lease_acquire", "lease_renew"


async def take(url: str, key: Ed25519PrivateKey, token: str | None = None) -> bytes:
    async with FloatingClient(url) as client:
        return await client.acquire(lease_request(key, ACQ), join_token=token)


async def refused(url: str, key: Ed25519PrivateKey, token: str | None = None) -> LicensingError:
    with pytest.raises(LicensingError) as info:
        await take(url, key, token)
    return info.value


async def test_strangers_take_no_seat_once_the_pool_has_rules(floating):
    fls = floating(seats=5)
    holder = Ed25519PrivateKey.generate()
    await take(fls.url, holder)  # no rules yet: open, as before
    token = fls.service.allow("token")
    assert token is not None and fls.service.status()["access"] == [{"kind": "token", "value": "(join token)"}]
    strangers = [await refused(fls.url, Ed25519PrivateKey.generate()) for _ in range(4)]
    assert {e.code for e in strangers} == {ErrorCode.NOT_AUTHORIZED}
    assert "join token" in strangers[0].message
    assert (await refused(fls.url, Ed25519PrivateKey.generate(), "mqlj_guess")).code == ErrorCode.NOT_AUTHORIZED
    assert fls.service.status()["seats"]["used"] == 1
    await take(fls.url, Ed25519PrivateKey.generate(), token)  # with the token: a seat
    async with FloatingClient(fls.url) as client:  # the holder renews and re-acquires as before
        await client.renew(lease_request(holder, RENEW))
    await take(fls.url, holder)
    assert fls.service.status()["seats"]["used"] == 2


async def test_allowed_fingerprints_and_networks(floating):
    fls = floating(seats=5)
    known = Ed25519PrivateKey.generate()
    fls.service.allow("fingerprint", fingerprint(known))
    await take(fls.url, known)
    assert (await refused(fls.url, Ed25519PrivateKey.generate())).code == ErrorCode.NOT_AUTHORIZED
    fls.service.allow("network", "127.0.0.0/8")  # every instance on this host
    await take(fls.url, Ed25519PrivateKey.generate())


async def test_new_identities_per_source_are_limited(tmp_path, vendor):
    fls = start_floating(tmp_path / "fls", vendor_key=vendor, seats=5)
    try:
        fls.service.new_identities.per_minute = 2
        await take(fls.url, Ed25519PrivateKey.generate())
        await take(fls.url, Ed25519PrivateKey.generate())
        assert (await refused(fls.url, Ed25519PrivateKey.generate())).code == ErrorCode.RATE_LIMITED
        assert fls.service.status()["seats"]["used"] == 2
    finally:
        fls.stop()


def test_floating_allow_cli(tmp_path, capsys):
    data = tmp_path / "fls"
    assert main(["floating", "allow", "--data", str(data)]) == 0
    assert "open to anyone" in capsys.readouterr().out
    fp = "0123456789abcdef0123456789abcdef"
    assert main(["floating", "allow", "--data", str(data), "--fingerprint", fp, "--network", "10.0.0.0/8"]) == 0
    assert main(["floating", "allow", "--data", str(data), "--new-token"]) == 0
    out = capsys.readouterr().out
    token = out.split("floating_join_token): ")[1].split()[0]
    assert f"fingerprint  {fp}" in out and "network      10.0.0.0/8" in out and out.count(token) == 1
    service = FloatingService.open(data)
    try:
        from mqtt_licensing.servers.floating.access import admits

        with service.store.transaction() as tx:
            rules = tx.access_rules()
        assert admits(rules, fingerprint="f" * 32, source="192.0.2.1", join_token=token)
        assert not admits(rules, fingerprint="f" * 32, source="192.0.2.1", join_token=None)
    finally:
        service.close()
    assert main(["floating", "allow", "--data", str(data), "--network", "not-a-net"]) == 1
    assert "not-a-net" in capsys.readouterr().err


def test_a_broker_with_the_join_token_leases_and_one_without_shows_why(tmp_path, vendor):
    from mqtt_licensing.core.signing import public_key_to_text

    with start_floating(tmp_path / "fls", vendor_key=vendor, seats=3) as fls:
        token = fls.service.allow("token")
        common = {
            "vendor_url": None,
            "vendor_public_key": public_key_to_text(vendor),
            "trial_seconds": 0,
            "floating_server_url": fls.url,
            "retry_interval": 0.3,
        }
        with (
            start_broker(tmp_path / "ok", floating_join_token=token, **common) as ok,
            start_broker(tmp_path / "stranger", **common) as stranger,
        ):
            wait_for(lambda: ok.agent.evaluation.state == "active", timeout=10)
            wait_for(lambda: (stranger.status()["floating"] or {}).get("last_error") is not None, timeout=10)
            assert stranger.status()["floating"]["last_error"]["code"] == "not_authorized"
            assert stranger.status()["state"] == "unlicensed"
