"""A vendor's product line as data, end to end on a running server: two new features and an
edition defined with the CLI, licenses issued from it (CLI and admin API), and every
certificate the vendor signs - online, offline code, floating - carrying their definitions.
No code changes between the steps: only `vendor feature|template|issue` and the admin API."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from mqtt_licensing.cli.main import main
from mqtt_licensing.clients.activation import ActivationClient
from mqtt_licensing.clients.admin import VendorAdminClient
from mqtt_licensing.clients.floating import FloatingClient, lease_request
from mqtt_licensing.core import labels
from mqtt_licensing.core.codes import unarmor
from mqtt_licensing.core.documents import (
    ActivationCertificate,
    FloatingCertificate,
    sign_instance_request,
    verify_lease,
)
from mqtt_licensing.core.errors import ErrorCode, LicensingError
from mqtt_licensing.core.features import resolve
from mqtt_licensing.core.keys import key_digest
from mqtt_licensing.core.timefmt import add_years
from mqtt_licensing.servers.activation.catalogue import Template, template_license_terms
from tests.helpers.activation import VendorHandle
from tests.helpers.floating import floating_server_key, start_floating

from .conftest import Instance

EDITION = ("mqtt_server", "sparkplug_b", "iot_bridge_kafka")


def cli(capsys: Any, vendor: VendorHandle, *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(["vendor", *argv[:2], *argv[2:], "--data", str(vendor.data_dir)])
    out = capsys.readouterr()
    return code, out.out, out.err


def cli_ok(capsys: Any, vendor: VendorHandle, *argv: str) -> str:
    code, out, err = cli(capsys, vendor, *argv)
    assert code == 0, err
    return out


def define_enterprise(capsys: Any, vendor: VendorHandle) -> None:
    """What the README's "Your product line" does."""
    cli_ok(capsys, vendor, "feature", "add", "sparkplug_b", "--title", "Sparkplug B", "--kind", "perpetual",
           "--gates-clients", "--requires", "mqtt_server")  # fmt: skip
    cli_ok(capsys, vendor, "feature", "add", "iot_bridge_kafka", "--title", "IoT Bridge for Kafka",
           "--kind", "metered", "--unit", "messages", "--gates-clients", "--requires", "mqtt_server")  # fmt: skip
    cli_ok(capsys, vendor, "template", "add", "enterprise", "--features", ",".join(EDITION),
           "--max-connections", "500", "--activations", "3", "--valid-days", "30", "--support-years", "1")  # fmt: skip


def definitions_of(cert: ActivationCertificate | FloatingCertificate) -> dict[str, dict[str, Any]]:
    """The definitions as a broker reads them: checked by core.features.resolve, which refuses
    a granted feature without one."""
    resolved = resolve(cert.features, cert.definitions)
    assert set(resolved) == set(cert.features) == set(EDITION)
    return {d["name"]: d for d in cert.definitions}


def assert_edition(cert: ActivationCertificate | FloatingCertificate, sparkplug_title: str = "Sparkplug B") -> None:
    defs = definitions_of(cert)
    assert defs["sparkplug_b"] == {
        "name": "sparkplug_b",
        "title": sparkplug_title,
        "kind": "perpetual",
        "gates": "class",
        "requires": ["mqtt_server"],
    }
    assert defs["iot_bridge_kafka"]["kind"] == "metered" and defs["iot_bridge_kafka"]["unit"] == "messages"
    assert defs["iot_bridge_kafka"]["gates"] == "class"
    assert defs["mqtt_server"]["gates"] == "all"


async def test_an_edition_reaches_online_offline_and_floating_certificates(capsys: Any, vendor: VendorHandle) -> None:
    define_enterprise(capsys, vendor)

    # online, issued from the template by the CLI; the certificate is opened with the vendor key
    key = cli_ok(capsys, vendor, "issue", "--template", "enterprise").strip()
    lic = vendor.service.get_license(vendor.license_id(key))
    assert tuple(lic["features"]) == tuple(sorted(EDITION))
    assert (lic["max_connections"], lic["max_activations"], lic["model"]) == (500, 3, "online")
    assert lic["expires_at"] == lic["created_at"] + 30 * 86400
    assert lic["support_until"] == add_years(lic["created_at"], 1)
    inst = Instance()
    async with ActivationClient(vendor.url) as client:
        result = await client.activate(key, inst.activate(key))
        cert = ActivationCertificate.open(result["certificate"], vendor.public_key)
        assert_edition(cert)

        # a new title reaches the instance at its next check-in, with no code change
        cli_ok(capsys, vendor, "feature", "update", "sparkplug_b", "--title", "Sparkplug B Edge")
        blob = await client.check_in(inst.check_in(result["activation_id"]))
    assert_edition(ActivationCertificate.open(blob, vendor.public_key), "Sparkplug B Edge")

    # offline codes: the template with an override
    offline_key = cli_ok(capsys, vendor, "issue", "--template", "enterprise", "--model", "offline").strip()
    async with VendorAdminClient(vendor.url, token=vendor.token) as admin:
        answer = await admin.offline_activate(Instance().offline_request_code(offline_key))
        usage_license = ActivationCertificate.open(
            unarmor(answer["usage_license"], labels.USAGE_LICENSE), vendor.public_key
        )
        assert usage_license.model == "offline"
        assert_edition(usage_license, "Sparkplug B Edge")

        # floating, issued through the admin API from the same template
        issued = await admin.issue(template="enterprise", model="floating", seats=5)
        assert issued["license"]["max_connections"] == 500 and issued["license"]["seats"] == 5
        floating_key = issued["key"]
        coded = await admin.floating_issue(Instance().floating_request_code(floating_key))
        floating = FloatingCertificate.open(
            unarmor(coded["certificate"], labels.FLOATING_CERTIFICATE), vendor.public_key
        )
        assert_edition(floating, "Sparkplug B Edge")
        await admin.free(coded["activation_id"])  # its one activation, for the online floating server below
    server = Instance()
    async with ActivationClient(vendor.url) as client:
        blob = await client.floating_activate(
            floating_key, server.request(labels.KIND_FLOATING_ACTIVATE, key_digest=key_digest(floating_key))
        )
    assert_edition(FloatingCertificate.open(blob, vendor.public_key), "Sparkplug B Edge")


async def test_a_license_of_builtins_carries_their_definitions(vendor: VendorHandle) -> None:
    key = vendor.issue(features=["mqtt_server", "mqtt_server_support"])
    async with ActivationClient(vendor.url) as client:
        cert = ActivationCertificate.open((await client.activate(key, Instance().activate(key)))["certificate"],
                                          vendor.public_key)  # fmt: skip
    assert [d["name"] for d in cert.definitions] == ["mqtt_server", "mqtt_server_support"]
    assert cert.definitions[1] == {
        "name": "mqtt_server_support",
        "title": "MQTT Server Support",
        "kind": "term",
        "gates": "none",
        "requires": ["mqtt_server"],
    }


def test_support_alone_is_refused_by_vendor_issue(capsys: Any, vendor: VendorHandle) -> None:
    code, _, err = cli(capsys, vendor, "issue", "--features", "mqtt_server_support")
    assert code != 0 and len(err.strip().splitlines()) == 1
    assert "mqtt_server_support requires mqtt_server" in err
    code, _, err = cli(capsys, vendor, "issue", "--features", "iot_bridge_snowflake")
    assert code != 0 and "iot_bridge_snowflake requires mqtt_server" in err
    code, _, err = cli(capsys, vendor, "issue", "--template", "nope")
    assert code != 0 and "no template 'nope'" in err
    assert vendor.service.list_licenses() == []


async def test_rules_and_retirement_through_the_admin_api(vendor: VendorHandle) -> None:
    async with VendorAdminClient(vendor.url, token=vendor.token) as admin:
        with pytest.raises(LicensingError) as info:
            await admin.issue(features=["mqtt_server_support"])
        assert info.value.code == ErrorCode.INVALID_FIELD and "requires mqtt_server" in info.value.message

        await admin.add_feature("ha_pair", title="High availability", kind="term", requires=["mqtt_server"])
        lic = (await admin.issue(features=["mqtt_server", "ha_pair"]))["license"]
        with pytest.raises(LicensingError) as info:  # the rule holds for changes too
            await admin.update(lic["id"], remove_features=["mqtt_server"])
        assert "ha_pair requires mqtt_server" in info.value.message

        retired = await admin.retire_feature("ha_pair")
        assert retired["retired_at"] is not None
        with pytest.raises(LicensingError) as info:  # no longer sold ...
            await admin.issue(features=["mqtt_server", "ha_pair"])
        assert "ha_pair is retired" in info.value.message
        # ... but kept, with its definition, where it was granted
        kept = await admin.update(lic["id"], add_features=["mqtt_server_support"])
        assert kept["features"] == ["ha_pair", "mqtt_server", "mqtt_server_support"]
        listed = {f["name"]: f for f in await admin.features()}
        assert listed["ha_pair"]["retired_at"] == retired["retired_at"]

        updated = await admin.update_feature("ha_pair", title="HA pair")
        assert updated["title"] == "HA pair" and updated["retired_at"] is not None

        await admin.add_template("standard", features=["mqtt_server"], max_connections=50, support_years=2)
        assert [t["name"] for t in await admin.templates()] == ["standard"]
        with pytest.raises(LicensingError) as info:
            await admin.add_template("standard", features=["mqtt_server"])
        assert "exists" in info.value.message
        await admin.add_template("standard", replace=True, features=["mqtt_server"], max_connections=100)
        issued = (await admin.issue(template="standard", max_connections=7))["license"]
        assert issued["max_connections"] == 7 and issued["support_until"] is None  # the replaced one has none
        unlimited, _ = vendor.service.issue_license(template="standard", max_connections=None)
        assert unlimited["max_connections"] is None  # a term given as null overrides too
        await admin.remove_template("standard")
        assert await admin.templates() == []
        with pytest.raises(LicensingError) as info:
            await admin.issue(template="standard")
        assert info.value.code == ErrorCode.NOT_FOUND


async def test_the_catalogue_routes_need_the_admin_token(vendor: VendorHandle) -> None:
    async with VendorAdminClient(vendor.url, token="wrong") as admin:
        for call in (admin.features(), admin.templates(), admin.add_feature("x", title="X", kind="term")):
            with pytest.raises(LicensingError) as info:
                await call
            assert info.value.code == ErrorCode.UNAUTHORIZED
    assert "x" not in {f["name"] for f in vendor.service.catalogue.list_features()}


def test_template_years_are_calendar_years() -> None:
    issued = int(datetime(2027, 12, 7, 10, 30, tzinfo=UTC).timestamp())
    terms = template_license_terms(
        Template("t", {"features": ["mqtt_server"], "support_years": 1, "valid_days": 2}), issued
    )
    assert terms["support_until"] == int(datetime(2028, 12, 7, 10, 30, tzinfo=UTC).timestamp())
    assert terms["expires_at"] == issued + 2 * 86400
    leap = int(datetime(2028, 2, 29, tzinfo=UTC).timestamp())
    assert add_years(leap, 1) == int(datetime(2029, 2, 28, tzinfo=UTC).timestamp())
    with pytest.raises(LicensingError, match="support_years must be 1 or more"):
        template_license_terms(Template("t", {"support_years": 0}), issued)


def test_flags_override_the_template(capsys: Any, vendor: VendorHandle) -> None:
    define_enterprise(capsys, vendor)
    overrides = ("--expires", "never", "--max-connections", "unlimited", "--features", "mqtt_server")
    key = cli_ok(capsys, vendor, "issue", "--template", "enterprise", *overrides, "--clone-policy", "suspend").strip()
    lic = vendor.service.get_license(vendor.license_id(key))
    assert lic["features"] == ["mqtt_server"] and lic["expires_at"] is None and lic["max_connections"] is None
    assert lic["clone_policy"] == "suspend"
    assert lic["max_activations"] == 3 and lic["support_until"] == add_years(lic["created_at"], 1)  # the template's
    code, _, err = cli(capsys, vendor, "issue")
    assert code != 0 and "give --features (or --template NAME)" in err


@pytest.mark.parametrize(
    ("terms", "words"),
    [
        ({"features": "mqtt_server"}, "features must be a list of feature names"),
        ({"features": ["mqtt_server"], "model": "rental"}, "model must be one of online, offline, floating"),
        ({"features": ["mqtt_server"], "max_activations": 0}, "max_activations must be a whole number, at least 1"),
        ({"features": ["mqtt_server"], "overage": 2}, "overage must be a number from 0 to 1"),
        ({"features": ["mqtt_server"], "support_years": True}, "support_years must be a whole number"),
        ({"features": ["mqtt_server"], "seats_": 1}, "a template has no term 'seats_'"),
    ],
)
def test_a_template_is_checked_when_defined(vendor: VendorHandle, terms: dict[str, Any], words: str) -> None:
    with pytest.raises(LicensingError) as info:
        vendor.service.catalogue.add_template("odd", terms)
    assert words in info.value.message and "\n" not in info.value.message
    assert vendor.service.catalogue.list_templates() == []


def test_show_and_the_admin_api_give_the_titles(capsys: Any, vendor: VendorHandle) -> None:
    define_enterprise(capsys, vendor)
    lic, _ = vendor.service.issue_license(template="enterprise")
    out = cli_ok(capsys, vendor, "show", lic["id"])
    assert "iot_bridge_kafka (IoT Bridge for Kafka), mqtt_server (MQTT Server), sparkplug_b (Sparkplug B)" in out
    assert [d["title"] for d in vendor.service.get_license(lic["id"])["definitions"]] == [
        "IoT Bridge for Kafka",
        "MQTT Server",
        "Sparkplug B",
    ]


async def test_catalogue_requests_with_unknown_fields_are_refused(vendor: VendorHandle) -> None:
    async with VendorAdminClient(vendor.url, token=vendor.token) as admin:
        for call, words in (
            (admin.add_feature("y", title="Y", kind="term", color="red"), "unknown field(s) color"),
            (admin.update_feature("mqtt_server", label="other"), "unknown field(s) label"),
            (admin.add_template("t", features=["mqtt_server"], colour="red"), "unknown field(s) colour"),
            (admin.update_feature("nope", title="N"), "no feature 'nope'"),
            (admin.retire_feature("nope"), "no feature 'nope'"),
            (admin.remove_template("nope"), "no template 'nope'"),
        ):
            with pytest.raises(LicensingError) as info:
                await call
            assert words in info.value.message
    assert "y" not in {f["name"] for f in vendor.service.catalogue.list_features()}


async def test_a_lease_carries_the_pools_definitions_to_the_broker(
    capsys: Any, vendor: VendorHandle, tmp_path: Any
) -> None:
    """What a broker of a floating pool reads: the vendor's certificate inside its lease."""
    define_enterprise(capsys, vendor)
    key = cli_ok(capsys, vendor, "issue", "--template", "enterprise", "--model", "floating", "--seats", "2").strip()
    server_key = floating_server_key(tmp_path / "fls")
    async with ActivationClient(vendor.url) as client:
        request = sign_instance_request(
            server_key, kind=labels.KIND_FLOATING_ACTIVATE, nonce="n-1", created_at=int(time.time()),
            key_digest=key_digest(key),
        )  # fmt: skip
        certificate = await client.floating_activate(key, request)
    fls = start_floating(tmp_path / "fls", certificate=certificate, vendor_public_key=vendor.public_key)
    try:
        async with FloatingClient(fls.url) as client:
            broker = Ed25519PrivateKey.generate()
            blob = await client.acquire(lease_request(broker, "lease_acquire", features=("mqtt_server", "sparkplug_b")))
        lease, pool = verify_lease(blob, vendor.public_key)
        assert lease.features == ("mqtt_server", "sparkplug_b")
        assert_edition(pool)  # the pool's certificate: every granted feature's definition, signed by the vendor
    finally:
        fls.stop()
