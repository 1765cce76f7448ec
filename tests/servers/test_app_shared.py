"""Both servers are built by one app builder (``servers/_app.py``): the same health and no-op
answers, the same metrics route and error bodies, and ``trusted_proxies`` on both (the floating
server had none: behind a reverse proxy every instance came from the proxy's address)."""

from __future__ import annotations

from pathlib import Path

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from mqtt_licensing.clients.floating import lease_request
from mqtt_licensing.core.signing import b64
from mqtt_licensing.servers._proxies import parse_networks
from mqtt_licensing.servers._run import ServerThread
from mqtt_licensing.servers.floating import create_app
from tests.helpers.activation import start_vendor
from tests.helpers.floating import start_floating

HEALTH = {"ok", "service", "public_key", "fingerprint", "time"}


def test_health_noop_metrics_and_errors_have_one_shape_on_both_servers(tmp_path: Path) -> None:
    vendor_key = Ed25519PrivateKey.generate()
    with start_vendor(tmp_path / "vendor") as vendor, start_floating(tmp_path / "fls", vendor_key=vendor_key) as fls:
        for url, name, fingerprint in ((vendor.url, "activation", None), (fls.url, "floating", fls.fingerprint)):
            health = httpx.get(url + "/v1/health", trust_env=False).json()
            assert set(health) >= HEALTH and health["ok"] is True and health["service"] == name
            assert isinstance(health["time"], int) and len(health["fingerprint"]) == 32
            if fingerprint is not None:  # the floating server's old field still comes, with the same value
                assert health["fingerprint"] == health["server_fingerprint"] == fingerprint
            assert httpx.get(url + "/v1/noop", trust_env=False).json() == {"ok": True}
            assert "mqtt_license_server_requests" in httpx.get(url + "/metrics", trust_env=False).text
            missing = httpx.get(url + "/v1/nothing", trust_env=False)
            assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
        assert httpx.get(vendor.url + "/v1/health", trust_env=False).json()["public_key"] == vendor.public_key_text


def test_the_floating_server_honours_x_forwarded_for_only_from_trusted_proxies(tmp_path: Path) -> None:
    fls = start_floating(tmp_path / "fls", vendor_key=Ed25519PrivateKey.generate())
    try:
        fls.service.allow("network", "10.0.0.0/8")  # the instances' LAN, behind a reverse proxy on this host
        behind_proxy = {"X-Forwarded-For": "10.1.2.3"}

        def acquire(url: str) -> httpx.Response:
            body = {"request": b64(lease_request(Ed25519PrivateKey.generate(), "lease_acquire"))}
            return httpx.post(url + "/v1/leases", json=body, headers=behind_proxy, trust_env=False)

        untrusted = acquire(fls.url)  # the header is the client's word: the peer (127.0.0.1) counts
        assert untrusted.status_code == 403 and untrusted.json()["error"]["code"] == "not_authorized"
        app = create_app(fls.service, fls.token, trusted_proxies=parse_networks("127.0.0.1"))
        with ServerThread(app) as proxied:
            assert acquire(proxied).status_code == 200
    finally:
        fls.stop()


def test_admin_code_bodies_take_code_and_still_read_request_code(tmp_path: Path) -> None:
    """One documented field, ``code``, on the three offline admin routes; ``request_code`` (what
    two of them took before, and what older clients send) is still read."""
    from tests.servers.activation.conftest import Instance

    with start_vendor(tmp_path / "vendor") as vendor:
        admin = {"Authorization": f"Bearer {vendor.token}"}
        key = vendor.issue(model="offline", max_activations=2)
        for name in ("code", "request_code"):
            body = {name: Instance().offline_request_code(key)}
            reply = httpx.post(vendor.url + "/v1/admin/offline/activations", json=body, headers=admin, trust_env=False)
            assert reply.status_code == 200 and reply.json()["usage_license"].startswith("-----BEGIN"), name
        inst = Instance()
        done = httpx.post(
            vendor.url + "/v1/admin/offline/activations",
            json={"code": inst.offline_request_code(vendor.issue(model="offline"))},
            headers=admin,
            trust_env=False,
        ).json()
        freed = httpx.post(
            vendor.url + "/v1/admin/offline/deactivations",
            json={"code": inst.deactivation_code(done["activation_id"])},
            headers=admin,
            trust_env=False,
        ).json()
        assert freed == {
            "freed": True,
            "already_free": False,
            "activation_id": done["activation_id"],
            "license_id": done["license_id"],
            "usage_records": 0,
        }
        wrong = httpx.post(vendor.url + "/v1/usage", json={"request": b64(b"x"), "records": "nope"}, trust_env=False)
        assert wrong.status_code == 400 and wrong.json()["error"]["code"] == "invalid_field"  # the _http.py rule
        absent = httpx.post(vendor.url + "/v1/usage", json={"request": b64(b"x")}, trust_env=False)
        assert absent.status_code == 400 and absent.json()["error"]["code"] == "bad_request"


def test_the_gauges_are_counted_on_sqlite_and_postgresql(tmp_path: Path, database_url: str | None) -> None:
    """The scrape counts in SQL (``COUNT ... GROUP BY``) in a worker thread: the same numbers the
    rows give, on both databases."""
    from tests.servers.activation.conftest import Instance
    from tests.servers.test_observe import scrape

    with start_vendor(tmp_path / "vendor", database_url=database_url) as vendor:
        key = vendor.issue(max_activations=3)
        vendor.issue()  # a second license, never activated
        activations = [vendor.service.activate(key, Instance().activate(key)) for _ in range(3)]
        vendor.service.free_activation(activations[0].activation_id)
        m = scrape(vendor.url)
        assert m['mqtt_license_server_activations{state="active"}'] == 2
        assert m['mqtt_license_server_activations{state="freed"}'] == 1
        assert m["mqtt_license_server_licenses"] == 2 and m["mqtt_license_server_cloned_activations"] == 0
    fls = start_floating(tmp_path / "fls", vendor_key=Ed25519PrivateKey.generate(), seats=4)
    try:
        for _ in range(3):
            body = {"request": b64(lease_request(Ed25519PrivateKey.generate(), "lease_acquire"))}
            assert httpx.post(fls.url + "/v1/leases", json=body, trust_env=False).status_code == 200
        m = scrape(fls.url)
        assert (m["mqtt_license_floating_seats"], m["mqtt_license_floating_seats_used"]) == (4, 3)
        assert m["mqtt_license_floating_provisioned"] == 1 and m["mqtt_license_floating_cloned_leases"] == 0
    finally:
        fls.stop()
