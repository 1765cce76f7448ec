"""Issue 10: the key-guessing limit counts the real source.

Main: ``X-Forwarded-For`` rotated from 127.0.0.1 bypassed the limit (30 of 30 keys looked up);
behind one remote proxy every customer shared one bucket (10 bad keys locked out all)."""

from __future__ import annotations

import os

import httpx

from mqtt_licensing.cli.main import main
from mqtt_licensing.core.keys import format_key
from mqtt_licensing.servers._proxies import parse_networks, source_address
from mqtt_licensing.servers._run import ServerThread
from mqtt_licensing.servers.activation.app import create_app
from tests.helpers.activation import VendorHandle

from .conftest import Instance


def _guess(url: str, forwarded_for: str, key: str | None = None) -> int:
    key = key or format_key(os.urandom(15))
    response = httpx.post(
        url + "/v1/activations",
        json=Instance().activation_body(key),
        headers={"X-Forwarded-For": forwarded_for},
        timeout=10,
    )
    return response.status_code


def test_a_forged_forwarded_for_does_not_buy_new_guesses(vendor: VendorHandle) -> None:
    codes = [_guess(vendor.url, f"203.0.113.{i}") for i in range(30)]
    assert codes.count(404) == 10 and codes[10:] == [429] * 20, codes


def test_behind_a_trusted_proxy_each_client_has_its_own_bucket(vendor: VendorHandle) -> None:
    app = create_app(vendor.service, vendor.token, trusted_proxies=parse_networks("127.0.0.1"))
    with ServerThread(app) as url:
        noisy = [_guess(url, "198.51.100.7") for _ in range(12)]
        assert noisy[-2:] == [429, 429], noisy
        good = vendor.issue()
        assert _guess(url, "198.51.100.8", good) == 201  # its neighbour behind the proxy is not locked out
        # a client cannot claim to be the proxy's other clients: only the hop our proxy wrote counts
        assert _guess(url, "198.51.100.8, 198.51.100.7") == 429


def test_source_address_reads_forwarded_for_only_from_trusted_proxies() -> None:
    proxies = parse_networks("10.0.0.0/8, ::1")
    assert source_address("192.0.2.1", ["6.6.6.6"], proxies) == "192.0.2.1"
    assert source_address("10.0.0.2", ["6.6.6.6, 192.0.2.9"], proxies) == "192.0.2.9"
    assert source_address("10.0.0.2", ["192.0.2.9, 10.0.0.3"], proxies) == "192.0.2.9"
    assert source_address("10.0.0.2", [], proxies) == "10.0.0.2"
    assert source_address("::1", ["2001:db8::1"], proxies) == "2001:db8::1"
    assert source_address("127.0.0.1", ["6.6.6.6"], ()) == "127.0.0.1"


def test_vendor_serve_names_a_bad_trusted_proxy_in_one_line(tmp_path, capsys) -> None:
    argv = ["vendor", "serve", "--data", str(tmp_path / "v"), "--trusted-proxies", "10.0.0.0/8,proxy.example"]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "proxy.example" in err and "invalid_field" in err, err
    assert not (tmp_path / "v").exists()
