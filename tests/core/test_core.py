"""The pure core, without any I/O: state machine, gate, keys, codes, protocol."""

import os

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from mqtt_licensing.core import protocol
from mqtt_licensing.core.codes import armor, unarmor
from mqtt_licensing.core.documents import ActivationCertificate
from mqtt_licensing.core.errors import LicensingError
from mqtt_licensing.core.gate import Refusal, decide, must_disconnect_existing
from mqtt_licensing.core.keys import format_key, mask_key, normalize_key
from mqtt_licensing.core.state import Facts, LicenseState, Limits, evaluate, observe_clock

LIMITS = Limits(trial_seconds=100, trial_max_connections=3, clock_tolerance=10)


def cert(**kw):
    base = dict(
        license_id="lic",
        key_mask="m",
        activation_id="act",
        model="online",
        features=("mqtt_server",),
        instance_fingerprint="fp",
        issued_at=0,
        valid_until=1000,
    )
    return ActivationCertificate(**{**base, **kw})


@pytest.mark.parametrize(
    ("facts", "now", "state"),
    [
        (Facts(trial_started_at=0), 50, LicenseState.TRIAL),
        (Facts(trial_started_at=0), 100, LicenseState.UNLICENSED),
        (Facts(trial_started_at=0, pending_offline_at=5), 50, LicenseState.TRIAL),  # the trial serves on
        (Facts(trial_started_at=0, pending_offline_at=5), 100, LicenseState.PENDING_OFFLINE),
        (Facts(trial_started_at=0, certificate=cert()), 500, LicenseState.ACTIVE),
        (Facts(trial_started_at=0, certificate=cert(), checkin_failing_since=400), 500, LicenseState.GRACE),
        (Facts(trial_started_at=0, certificate=cert(), checkin_failing_since=400), 1000, LicenseState.EXPIRED),
        (Facts(trial_started_at=0, certificate=cert(expires_at=300)), 300, LicenseState.EXPIRED),
        (Facts(trial_started_at=0, certificate=cert(model="offline", valid_until=None)), 10**9, LicenseState.ACTIVE),
        (Facts(trial_started_at=0, certificate=cert(), vendor_verdict="revoked"), 500, LicenseState.REVOKED),
        (Facts(trial_started_at=0, certificate=cert(), vendor_verdict="suspended"), 500, LicenseState.SUSPENDED),
        (Facts(trial_started_at=0, certificate=cert(), clock_tampered=True), 500, LicenseState.CLOCK_TAMPERED),
    ],
)
def test_state_is_a_function_of_facts_and_time(facts, now, state):
    assert evaluate(facts, now, LIMITS).state == state


def test_grace_deadline_is_valid_until():
    ev = evaluate(Facts(trial_started_at=0, certificate=cert(valid_until=900), checkin_failing_since=1), 5, LIMITS)
    assert ev.serving and ev.deadline == 900


def test_clock_rollback_detection():
    assert observe_clock(None, 100, 10) == (100, False)
    assert observe_clock(100, 95, 10) == (100, False)  # within tolerance
    assert observe_clock(100, 80, 10) == (100, True)
    assert observe_clock(100, 200, 10) == (200, False)


def test_trial_limits_cannot_grow():
    with pytest.raises(ValueError):
        Limits(trial_seconds=7201)
    with pytest.raises(ValueError):
        Limits(trial_max_connections=26)


def test_gate():
    active = evaluate(Facts(trial_started_at=0, certificate=cert(max_connections=2)), 5, LIMITS)
    expired = evaluate(Facts(trial_started_at=0), 10**6, LIMITS)
    need = frozenset({"mqtt_server"})
    assert decide(active, is_admin=False, required_features=need, current_connections=1).allowed
    assert (
        decide(active, is_admin=False, required_features=need, current_connections=2).refusal
        == Refusal.CONNECTION_LIMIT
    )
    assert (
        decide(active, is_admin=False, required_features=need | {"iot_bridge_snowflake"}, current_connections=0).refusal
        == Refusal.FEATURE_MISSING
    )
    assert (
        decide(expired, is_admin=False, required_features=need, current_connections=0).refusal == Refusal.NOT_LICENSED
    )
    assert decide(expired, is_admin=True, required_features=need, current_connections=99).allowed
    assert must_disconnect_existing(expired, True) and not must_disconnect_existing(expired, False)


def test_keys_normalise_and_catch_typos():
    key = format_key(os.urandom(15))
    assert normalize_key(f"  {key.lower().replace('-', ' ')}\n") == key
    assert mask_key(key).count("*****") == 4 and mask_key(key)[:10] == key[:10]
    for i in range(5, len(key)):
        if key[i] == "-":
            continue
        typo = key[:i] + ("Z" if key[i] != "Z" else "Y") + key[i + 1 :]
        with pytest.raises(LicensingError) as err:
            normalize_key(typo)
        assert err.value.code == "invalid_key"


def test_armour_round_trip_and_mail_damage():
    data = os.urandom(300)
    text = armor("MQTT LICENSING USAGE REQUEST", data)
    quoted = "\r\n".join("> " + line for line in text.splitlines())  # a mail reply quoting it
    assert unarmor(quoted, "MQTT LICENSING USAGE REQUEST") == data
    with pytest.raises(LicensingError) as err:
        unarmor(text, "MQTT LICENSING USAGE LICENSE")
    assert err.value.code == "wrong_document"
    with pytest.raises(LicensingError) as err:
        unarmor("\n".join(text.splitlines()[:-3] + text.splitlines()[-1:]), "MQTT LICENSING USAGE REQUEST")
    assert err.value.code == "invalid_code"


def test_signature_binds_the_document_type():
    key = Ed25519PrivateKey.generate()
    blob = cert().sign(key)
    assert ActivationCertificate.open(blob, key.public_key()).license_id == "lic"
    with pytest.raises(LicensingError) as err:
        ActivationCertificate.open(blob, Ed25519PrivateKey.generate().public_key())
    assert err.value.code == "invalid_signature"


@pytest.mark.parametrize(
    ("client_id", "topic", "allowed"),
    [
        ("ops", "$license/reply/ops", True),
        ("ops", "$license/reply/ops/job/1", True),
        ("ops", "$license/reply/ops2", False),
        ("ops", "$license/reply/other", False),
        ("ops", "$license/reply/ops/+", False),
        ("a/b", "$license/reply/a/b", False),
        ("", "$license/reply/", False),
    ],
)
def test_reply_topic_rules(client_id, topic, allowed):
    assert protocol.reply_topic_allowed(topic, client_id) is allowed


@pytest.mark.parametrize(
    ("topic_filter", "allowed"),
    [
        ("$license/reply/ops", True),
        ("$license/reply/ops/#", True),
        ("$license/reply/+", False),
        ("$license/#", False),
        ("$license/+/ops", False),
        ("$license/status", False),
        ("$license/events", False),
    ],
)
def test_subscription_rules_for_a_non_reader(topic_filter, allowed):
    assert protocol.subscription_allowed(topic_filter, "ops", may_read_status=False) is allowed
