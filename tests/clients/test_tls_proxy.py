"""HTTPS and proxies between the agent (or the floating server) and the servers: real uvicorn
HTTPS servers on sockets, a real CONNECT proxy, the real clients.

* trust is the system roots, or only a pinned ``ca_file``: a server certificate from another CA
  is ``server_unreachable`` saying why, never ``internal_error``;
* ``http_proxy`` routes every call through the proxy; the environment's proxy variables are used
  only when ``http_proxy_from_env`` asks for them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mqtt_licensing.agent.config import AgentConfig
from mqtt_licensing.clients.activation import ActivationClient
from mqtt_licensing.clients.http import HttpOptions
from mqtt_licensing.core.errors import ErrorCode, LicensingError
from mqtt_licensing.servers._files import load_or_create_token
from mqtt_licensing.servers._run import ServerThread
from mqtt_licensing.servers.activation import ActivationService, create_app
from tests.helpers.broker import start_broker, wait_for
from tests.helpers.proxy import ConnectProxy
from tests.helpers.tls import LocalCA, make_ca


@pytest.fixture
def ca(tmp_path: Path) -> LocalCA:
    return make_ca(tmp_path / "ca")


@pytest.fixture
def https_vendor(tmp_path: Path, ca: LocalCA) -> Iterator[tuple[str, ActivationService]]:
    """A vendor server on HTTPS with a certificate from ``ca``: (url, service)."""
    cert, key = ca.server_cert(tmp_path / "tls")
    service = ActivationService.open(tmp_path / "vendor")
    server = ServerThread(
        create_app(service, load_or_create_token(tmp_path / "vendor")), tls_cert=str(cert), tls_key=str(key)
    )
    with server as url:
        assert url.startswith("https://")
        yield url, service
    service.close()


async def _health(url: str, options: HttpOptions) -> dict[str, Any]:
    async with ActivationClient(url, options=options) as client:
        return dict(await client.call("GET", "/v1/health"))


async def test_https_with_the_pinned_ca(https_vendor: tuple[str, ActivationService], ca: LocalCA) -> None:
    url, _ = https_vendor
    assert (await _health(url, HttpOptions(ca_file=str(ca.cert_file))))["ok"] is True


async def test_a_certificate_from_another_ca_is_unreachable_with_the_reason(
    https_vendor: tuple[str, ActivationService], tmp_path: Path
) -> None:
    url, _ = https_vendor
    other = make_ca(tmp_path / "other", name="someone else")
    for options in (HttpOptions(ca_file=str(other.cert_file)), HttpOptions()):  # pinned elsewhere; system roots
        with pytest.raises(LicensingError) as info:
            await _health(url, options)
        assert info.value.code == ErrorCode.SERVER_UNREACHABLE
        assert "CERTIFICATE_VERIFY_FAILED" in info.value.message, info.value.message


def test_an_unreadable_ca_file_is_a_one_line_config_error(tmp_path: Path) -> None:
    (tmp_path / "junk.pem").write_text("not a certificate\n")
    for ca_file in (str(tmp_path / "missing.pem"), str(tmp_path / "junk.pem")):
        config = AgentConfig(vendor_public_key="x", ca_file=ca_file)
        with pytest.raises(LicensingError) as info:
            config.http_options().ssl_context()
        assert info.value.code == ErrorCode.INVALID_FIELD and ca_file in info.value.message


async def test_calls_go_through_the_configured_proxy(https_vendor: tuple[str, ActivationService], ca: LocalCA) -> None:
    url, _ = https_vendor
    target = url.removeprefix("https://")
    with ConnectProxy() as proxy:
        await _health(url, HttpOptions(ca_file=str(ca.cert_file)))
        assert proxy.tunnels == []  # no proxy configured: direct
        await _health(url, HttpOptions(ca_file=str(ca.cert_file), proxy=proxy.url))
        assert proxy.tunnels == [target]


async def test_proxy_variables_are_used_only_when_opted_in(
    https_vendor: tuple[str, ActivationService], ca: LocalCA, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, _ = https_vendor
    with ConnectProxy() as proxy:
        monkeypatch.setenv("HTTPS_PROXY", proxy.url)
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        await _health(url, HttpOptions(ca_file=str(ca.cert_file)))
        assert proxy.tunnels == []
        await _health(url, HttpOptions(ca_file=str(ca.cert_file), proxy_from_env=True))
        assert proxy.tunnels == [url.removeprefix("https://")]


def test_a_broker_activates_online_over_https_through_a_proxy(
    tmp_path: Path, https_vendor: tuple[str, ActivationService], ca: LocalCA
) -> None:
    url, service = https_vendor
    _lic, key = service.issue_license(features=["mqtt_server"])
    with (
        ConnectProxy() as proxy,
        start_broker(
            tmp_path / "broker",
            vendor_url=url,
            vendor_public_key=service.public_key_text,
            ca_file=str(ca.cert_file),
            http_proxy=proxy.url,
            trial_seconds=0,
        ) as broker,
        broker.admin() as admin,
    ):
        status = admin.request("activate", {"license_key": key})["status"]
        assert status["state"] == "active", status
        assert set(proxy.tunnels) == {url.removeprefix("https://")}  # the trial record and the activation
        wait_for(lambda: broker.agent.evaluation.state == "active")


def test_a_floating_server_activates_over_https_through_a_proxy(
    tmp_path: Path, https_vendor: tuple[str, ActivationService], ca: LocalCA, capsys: pytest.CaptureFixture[str]
) -> None:
    from mqtt_licensing.cli.main import main

    url, service = https_vendor
    _lic, key = service.issue_license(features=["mqtt_server"], model="floating", seats=4)
    base = ["floating", "activate", "--data", str(tmp_path / "fls"), "--key", key, "--vendor", url]
    base += [f"--vendor-key={service.public_key_text}"]
    with ConnectProxy() as proxy:
        assert main([*base, "--http-proxy", proxy.url]) == 1  # the system roots do not know our CA
        assert "server_unreachable" in capsys.readouterr().err
        assert main([*base, "--http-proxy", proxy.url, "--ca-file", str(ca.cert_file)]) == 0
        assert proxy.tunnels == [url.removeprefix("https://")] * 2


def test_the_trial_record_call_uses_the_ca_file_and_the_proxy(
    tmp_path: Path, https_vendor: tuple[str, ActivationService], ca: LocalCA
) -> None:
    """Main: the call recording the trial start with the vendor ignored ca_file and http_proxy,
    so it failed (quietly) against a private CA or behind a proxy."""
    import sqlalchemy as sa

    from mqtt_licensing.servers.activation.schema import trials

    url, service = https_vendor
    with (
        ConnectProxy() as proxy,
        start_broker(
            tmp_path / "broker",
            vendor_url=url,
            vendor_public_key=service.public_key_text,
            ca_file=str(ca.cert_file),
            http_proxy=proxy.url,
        ) as broker,
    ):

        def recorded() -> list[str]:
            with service.store.transaction() as tx:
                return list(tx.conn.execute(sa.select(trials.c.instance_fingerprint)).scalars())

        wait_for(lambda: broker.agent.fingerprint in recorded())
        assert proxy.tunnels == [url.removeprefix("https://")]
