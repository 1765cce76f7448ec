"""Features as data: definitions are checked, travel signed, and unknown ones are never guessed."""

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from mqtt_licensing.core import features
from mqtt_licensing.core.documents import ActivationCertificate
from mqtt_licensing.core.errors import ErrorCode, LicensingError
from mqtt_licensing.core.features import BUILTIN, Feature, define


def sparkplug() -> Feature:
    return define(name="sparkplug_b", title="Sparkplug B", kind="perpetual", gates="class", requires=["mqtt_server"])


def test_the_built_in_catalogue_is_the_seeds_three_features():
    assert sorted(BUILTIN) == ["iot_bridge_snowflake", "mqtt_server", "mqtt_server_support"]
    assert BUILTIN["mqtt_server"].gates == "all"
    assert BUILTIN["mqtt_server_support"].gates == "none"
    assert BUILTIN["iot_bridge_snowflake"].unit == "messages"


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"name": "Bad Name"}, "lowercase"),
        ({"title": ""}, "title"),
        ({"title": "x\x1b[2J"}, "control"),
        ({"kind": "forever"}, "kind"),
        ({"kind": "metered"}, "needs a unit"),
        ({"unit": "messages"}, "only a metered"),
        ({"gates": "everyone"}, "gates"),
        ({"requires": ["sparkplug_b"]}, "itself"),
    ],
)
def test_a_bad_definition_names_the_wrong_field(fields, words):
    base = {"name": "sparkplug_b", "title": "Sparkplug B", "kind": "perpetual"}
    with pytest.raises(LicensingError) as err:
        define(**{**base, **fields})
    assert err.value.code == ErrorCode.INVALID_FIELD
    assert words in err.value.message


def test_a_definition_round_trips_through_its_body():
    kafka = define(
        name="iot_bridge_kafka", title="IoT Bridge for Kafka", kind="metered", unit="messages", gates="class"
    )
    assert Feature.from_body(kafka.to_body()) == kafka
    assert Feature.from_body(sparkplug().to_body()) == sparkplug()


def test_names_are_checked_against_a_catalogue_only_when_one_is_given():
    assert features.validate_features("sparkplug_b, mqtt_server") == ("mqtt_server", "sparkplug_b")
    with pytest.raises(LicensingError, match="unknown feature 'sparkplug_b'"):
        features.validate_features(["sparkplug_b"], BUILTIN)
    with pytest.raises(LicensingError, match="lowercase"):
        features.validate_features(["DROP TABLE"])


def test_requires_rules_name_the_missing_feature():
    catalogue = {**BUILTIN, "sparkplug_b": sparkplug()}
    features.check_requires(["mqtt_server", "sparkplug_b"], catalogue)
    with pytest.raises(LicensingError, match="mqtt_server_support requires mqtt_server"):
        features.check_requires(["mqtt_server_support"], catalogue)


def test_definitions_travel_signed_in_a_certificate_and_resolve_on_the_broker():
    key = Ed25519PrivateKey.generate()
    catalogue = {**BUILTIN, "sparkplug_b": sparkplug()}
    granted = ("mqtt_server", "sparkplug_b")
    cert = ActivationCertificate(
        license_id="L",
        key_mask="K",
        activation_id="A",
        model="online",
        features=granted,
        instance_fingerprint="f",
        issued_at=1,
        valid_until=None,
        definitions=features.definitions_for(granted, catalogue),
    )
    opened = ActivationCertificate.open(cert.sign(key), key.public_key())
    table = features.resolve(opened.features, opened.definitions)
    assert table["sparkplug_b"].title == "Sparkplug B"
    assert table["sparkplug_b"].gates == "class"
    assert features.serves_clients(opened.features, table)


def test_a_certificate_from_before_definitions_means_the_built_ins():
    table = features.resolve(["mqtt_server", "iot_bridge_snowflake"], [])
    assert table["iot_bridge_snowflake"] == BUILTIN["iot_bridge_snowflake"]


def test_a_feature_without_a_definition_is_refused_not_guessed():
    with pytest.raises(LicensingError) as err:
        features.resolve(["mqtt_server", "sparkplug_b"], [])
    assert err.value.code == ErrorCode.FEATURE_UNDEFINED
    carried = [BUILTIN["mqtt_server"].to_body()]
    with pytest.raises(LicensingError):
        features.resolve(["mqtt_server", "sparkplug_b"], carried)


def test_a_license_without_mqtt_server_serves_no_client():
    assert not features.serves_clients(["mqtt_server_support"], dict(BUILTIN))
    assert features.serves_clients(["mqtt_server", "mqtt_server_support"], dict(BUILTIN))


def test_a_signed_certificate_naming_an_undefined_feature_is_refused_when_read():
    key = Ed25519PrivateKey.generate()
    cert = ActivationCertificate(
        license_id="L",
        key_mask="K",
        activation_id="A",
        model="online",
        features=("mqtt_server", "sparkplug_b"),
        instance_fingerprint="f",
        issued_at=1,
        valid_until=None,
    )
    with pytest.raises(LicensingError) as err:
        ActivationCertificate.open(cert.sign(key), key.public_key())
    assert err.value.code == ErrorCode.FEATURE_UNDEFINED
