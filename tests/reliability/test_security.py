"""Security: who may do and read what, against real brokers and real servers.

* every command from every non-admin role: ``not_authorized``, nothing changes (even with a valid key);
* reading others' replies: SUBSCRIBE refused for every filter reaching another client's reply
  subtree (a list against a live broker, plus a property over generated filters), and the
  RECEIVE-time check: a second connection with the same client id, or a persistent session
  taken over by another principal, never gets what was meant for the first;
* retained messages: only the status document, never a key; a non-reader gets nothing; the
  broker log (the CLI at DEBUG) never shows a full license key or a password;
* brute force: unknown keys are rate-limited by the vendor (HTTP 429 ``rate_limited``), also
  through the agent and under a concurrent burst;
* admin APIs of both servers: every admin route answers 401 without or with a wrong token;
* a wrong-password CONNECT that reuses a live admin's or user's client id (clean session on
  and off) grants and changes no role (BRIEF §9).
"""

from __future__ import annotations

import asyncio
import json
import secrets
import socket
import time
from collections import Counter
from typing import Any

import httpx
import msgpack
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from mqtt_licensing.core import labels, protocol
from mqtt_licensing.core.documents import sign_instance_request
from mqtt_licensing.core.errors import LicensingError
from mqtt_licensing.core.keys import format_key, key_digest, normalize_key
from mqtt_licensing.core.passwords import hash_password
from mqtt_licensing.core.signing import b64
from tests.helpers.activation import start_vendor
from tests.helpers.broker import (
    ADMIN,
    ADMIN_PASSWORD,
    READER,
    READER_PASSWORD,
    MqttClient,
    start_broker,
)
from tests.helpers.floating import start_floating
from tests.reliability.support import (
    BrokerProcess,
    connack_code,
    decode_any,
    wait_until,
)

PLAIN, PLAIN_PASSWORD = "plain", "plain-secret"
USERS = {READER: hash_password(READER_PASSWORD, n=2**10), PLAIN: hash_password(PLAIN_PASSWORD, n=2**10)}


def ask(client: MqttClient, topic: str, payload: bytes, reply_topic: str, timeout: float = 10) -> dict[str, Any]:
    n = len(client.messages)
    client.publish(topic, payload)
    return decode_any(bytes(client.wait_message(reply_topic, timeout=timeout, after=n).payload))


def license_messages(client: MqttClient) -> list[Any]:
    return [m for m in client.messages if m.topic.startswith("$license")]


# -- commands --------------------------------------------------------------------------------


def test_no_command_from_any_non_admin_role(tmp_path, vendor):
    key = vendor.issue(features=["mqtt_server"])
    license_id = vendor.license_id(key)
    bodies = {
        "$license/activate": {"method": "online", "license_key": key},
        "$license/reactivate": {},
        "$license/deactivate": {},
        "$license/status": {},
        "$license/offline/request": {"license_key": key},
    }
    with start_broker(tmp_path / "s", vendor=vendor, users=USERS) as broker:
        identities = [("anon", None, None), ("dash", READER, READER_PASSWORD), ("plain", PLAIN, PLAIN_PASSWORD)]
        for client_id, user, password in identities:
            for topic, body in bodies.items():
                # one connection per topic: 4 requests, within a non-admin connection's burst of 5
                with MqttClient(broker.port, client_id=client_id, username=user, password=password) as c:
                    assert c.connect() == 0
                    reply_topic = f"$license/reply/{client_id}"
                    assert c.subscribe(reply_topic + "/#") == 1
                    for encode in (lambda b: json.dumps(b).encode(), msgpack.packb):
                        extras: list[dict[str, Any]] = [{}, {"reply_to": reply_topic + "/x", "correlation_id": 7}]
                        for extra in extras:
                            reply = ask(
                                c,
                                topic,
                                encode({**body, **extra}),
                                reply_topic + extra.get("reply_to", "")[len(reply_topic) :],
                            )
                            if user == READER and topic == "$license/status":
                                assert reply["ok"] is True, reply  # readers may ask for status
                                continue
                            assert reply["ok"] is False and reply["error"]["code"] == "not_authorized", reply
                            assert "status" not in reply
        status = broker.status()
        assert status["state"] == "trial" and status["offline"] is None
        assert vendor.service.list_activations(license_id, include_freed=True) == []
        # and on an activated broker, nobody but an admin deactivates it
        with broker.admin() as admin:
            admin.request("activate", {"license_key": key})
        for client_id, user, password in identities:
            with MqttClient(broker.port, client_id=client_id, username=user, password=password) as c:
                assert c.connect() == 0
                assert c.subscribe(f"$license/reply/{client_id}") == 1
                for topic in ("$license/deactivate", "$license/reactivate"):
                    reply = ask(c, topic, b"{}", f"$license/reply/{client_id}")
                    assert reply["error"]["code"] == "not_authorized"
        assert broker.status()["state"] == "active"
        assert len(vendor.service.list_activations(license_id)) == 1


# -- reading others' replies -------------------------------------------------------------------

VICTIM = "ops"
REACHING_FILTERS = [
    "$license/reply/ops",
    "$license/reply/ops/#",
    "$license/reply/ops/+",
    "$license/reply/ops/job-1",
    "$license/reply/+",
    "$license/reply/+/#",
    "$license/reply/+/job-1",
    "$license/reply/#",
    "$license/+/ops",
    "$license/+/ops/#",
    "$license/+/+",
    "$license/+/+/#",
    "$license/+/#",
    "$license/#",
    "$license/+",
]


def mqtt_matches(topic: str, topic_filter: str) -> bool:
    """MQTT 3.1.1 matching, including [MQTT-4.7.2-1]: wildcards at the first level skip $ topics."""
    if topic.startswith("$") and topic_filter[:1] in ("+", "#"):
        return False
    t, f = topic.split("/"), topic_filter.split("/")
    for i, level in enumerate(f):
        if level == "#":
            return i == len(f) - 1
        if i >= len(t) or (level != "+" and level != t[i]):
            return False
    return len(t) == len(f)


def test_subscribe_refused_for_every_filter_reaching_another_clients_replies(tmp_path, vendor):
    with start_broker(tmp_path / "s", vendor=vendor, users=USERS) as broker:
        spies = [("spy", None, None), ("spy-dash", READER, READER_PASSWORD), ("spy-admin", ADMIN, ADMIN_PASSWORD)]
        for client_id, user, password in spies:
            with MqttClient(broker.port, client_id=client_id, username=user, password=password) as spy:
                assert spy.connect() == 0
                for topic_filter in REACHING_FILTERS:
                    assert spy.subscribe(topic_filter) == 0x80, (client_id, topic_filter)
                # its own subtree is allowed, so the refusals above are about reach, not a blanket no
                assert spy.subscribe(f"$license/reply/{client_id}/#") == 1


LEVELS = ["reply", "ops", "spy", "+", "#", "status", "events", "x", "", "op", "spyx", "$license", "spy-2"]


def test_no_allowed_filter_matches_another_clients_reply_topic():
    """Exhaustive: every filter of up to four levels below $license/ from a vocabulary of client ids,
    wildcards and look-alikes; whatever subscription_allowed() grants must match no reply topic of
    another client."""
    import itertools

    checked = granted = 0
    for n in range(1, 5):
        for levels in itertools.product(LEVELS, repeat=n):
            topic_filter = "$license/" + "/".join(levels)
            for client_id in ("spy", "spy-2"):
                for reader in (False, True):
                    checked += 1
                    if not protocol.subscription_allowed(topic_filter, client_id, may_read_status=reader):
                        continue
                    granted += 1
                    for other in ("ops", "spyx", "spy-2x", "op", "x" + client_id, "spy" if client_id != "spy" else "s"):
                        for topic in (
                            f"$license/reply/{other}",
                            f"$license/reply/{other}/job",
                            f"$license/reply/{other}/a/b",
                        ):
                            assert not mqtt_matches(topic, topic_filter), (topic_filter, client_id, topic)
    print(f"{checked} (filter, client) pairs, {granted} granted, none reaching another client's replies")
    assert granted > 100


def test_a_second_connection_with_the_same_client_id_never_gets_the_firsts_replies(tmp_path, vendor):
    """A clean-session CONNECT reusing a live client id closes the first connection (MQTT 3.1.1
    §3.1.4-2; amqtt 0.12.1 alone kept both). The reply topic is named after the client id, so
    replies to the first connection's requests must not reach the second one."""
    with start_broker(tmp_path / "s", vendor=vendor) as broker:
        # (a) the admin first, asking; then an anonymous client with its id takes it over
        ops = MqttClient(broker.port, client_id=VICTIM, username=ADMIN, password=ADMIN_PASSWORD)
        spy = MqttClient(broker.port, client_id=VICTIM)
        try:
            assert ops.connect() == 0
            assert ops.subscribe(f"$license/reply/{VICTIM}/#") == 1
            for i in range(5):
                ops.client.publish("$license/status", json.dumps({"correlation_id": i}).encode(), qos=1)
                ops.client.publish(
                    "$license/status", json.dumps({"reply_to": f"$license/reply/{VICTIM}/j{i}"}).encode(), qos=1
                )
            assert spy.connect() == 0
            assert ops.disconnected.wait(10), "the first connection was not closed"
            ops.client.loop_stop()  # no automatic reconnect: it would take the id back
            spy.subscribe(f"$license/reply/{VICTIM}/#")
            spy.subscribe(f"$license/reply/{VICTIM}")
            time.sleep(1.0)
            assert [m.payload[:80] for m in license_messages(spy) if m.topic.startswith("$license/reply")] == []
        finally:
            spy.close()
            ops.close()
        # (b) a client squatting on the id first; the admin connects with it later and is served
        spy = MqttClient(broker.port, client_id=VICTIM)
        ops = MqttClient(broker.port, client_id=VICTIM, username=ADMIN, password=ADMIN_PASSWORD)
        try:
            assert spy.connect() == 0
            assert spy.subscribe(f"$license/reply/{VICTIM}/#") == 1  # its own, for now
            assert ops.connect() == 0
            assert spy.disconnected.wait(10), "the squatter was not closed"
            spy.client.loop_stop()
            assert ops.subscribe(f"$license/reply/{VICTIM}/#") == 1
            for i in range(5):
                reply = ask(
                    ops,
                    "$license/status",
                    json.dumps({"reply_to": f"$license/reply/{VICTIM}/k{i}", "correlation_id": i}).encode(),
                    f"$license/reply/{VICTIM}/k{i}",
                )
                assert reply["ok"] is True and reply["correlation_id"] == i
            assert [m.topic for m in license_messages(spy) if m.topic.startswith("$license/reply")] == []
        finally:
            spy.close()
            ops.close()


def test_wildcard_subscriptions_never_deliver_license_messages(tmp_path, vendor):
    with (
        start_broker(tmp_path / "s", vendor=vendor) as broker,
        MqttClient(broker.port, client_id="spy") as spy,
        MqttClient(broker.port, client_id="ops", username=ADMIN, password=ADMIN_PASSWORD) as ops,
    ):
        assert spy.connect() == 0 and ops.connect() == 0
        for topic_filter in ("#", "+/#", "+/reply/#", "+/+/ops", "+/+/+", "+"):
            assert spy.subscribe(topic_filter) in (0, 1)  # granted: not a $license filter...
        assert ops.subscribe("$license/reply/ops") == 1
        for _ in range(3):
            ask(ops, "$license/status", b"{}", "$license/reply/ops")
        ask(ops, "$license/reactivate", b"{}", "$license/reply/ops")  # an event too
        time.sleep(0.5)
        assert license_messages(spy) == []  # ...yet no $license message ever reaches it


def test_a_taken_over_persistent_reader_session_gets_no_status_or_events(tmp_path, vendor):
    with start_broker(tmp_path / "s", vendor=vendor, users=USERS) as broker:
        with MqttClient(
            broker.port, client_id="shared", username=READER, password=READER_PASSWORD, clean_session=False
        ) as dash:
            assert dash.connect() == 0
            assert dash.subscribe("$license/status") == 1 and dash.subscribe("$license/events") == 1
            dash.wait_message("$license/status")
        with (
            MqttClient(broker.port, client_id="shared", clean_session=False) as intruder,
            MqttClient(broker.port, client_id="dash2", username=READER, password=READER_PASSWORD) as reader,
            broker.admin() as admin,
        ):
            assert intruder.connect() == 0 and reader.connect() == 0
            assert reader.subscribe("$license/events") == 1
            with pytest.raises(LicensingError):
                admin.request("reactivate")  # -> a command_failed event
            reader.wait_message("$license/events")
            time.sleep(0.3)
            assert license_messages(intruder) == []


# -- retained messages and logs ------------------------------------------------------------------


def key_spellings(key: str) -> list[str]:
    canonical = normalize_key(key)
    compact = canonical.replace("-", "")
    return [canonical, canonical.lower(), compact, compact.lower(), compact[4:], compact[4:].lower()]


def test_retained_messages_hold_no_key_and_reach_only_readers(tmp_path, vendor):
    online_key = vendor.issue()
    offline_key = vendor.issue(model="offline")
    with start_broker(tmp_path / "s", vendor=vendor, users=USERS) as broker:
        with (
            MqttClient(broker.port, client_id="dash", username=READER, password=READER_PASSWORD) as dash,
            broker.admin() as admin,
        ):
            assert dash.connect() == 0
            assert dash.subscribe("$license/status") == 1 and dash.subscribe("$license/events") == 1
            replies = [admin.request("activate", {"license_key": online_key})]
            # a non-reader: refused, and handed nothing - neither on subscribing nor on connecting
            with (
                MqttClient(broker.port, client_id="nosy") as nosy,
                MqttClient(broker.port, client_id="plain", username=PLAIN, password=PLAIN_PASSWORD) as plain,
            ):
                assert nosy.connect() == 0 and plain.connect() == 0
                for c in (nosy, plain):
                    assert c.subscribe("$license/status") == 0x80
                    assert c.subscribe("$license/events") == 0x80
                    assert c.subscribe("$license/#") == 0x80
                replies.append(admin.request("status"))
                replies.append(admin.request("reactivate"))  # and its events
                time.sleep(0.5)
                assert license_messages(nosy) == [] and license_messages(plain) == []
            replies += [
                admin.request("deactivate"),
                admin.request("offline_request", {"license_key": offline_key}),
                admin.request("status"),
            ]
            # a request published to $license/status with the retain flag is not retained
            with MqttClient(broker.port, client_id="ops", username=ADMIN, password=ADMIN_PASSWORD) as ops:
                assert ops.connect() == 0
                ops.client.publish(
                    "$license/status", json.dumps({"license_key": online_key}), qos=1, retain=True
                ).wait_for_publish(5)
            time.sleep(0.5)
            assert broker.thread.broker is not None
            retained = broker.thread.broker._retained_messages  # amqtt internals, read only
            assert set(retained) == {"$license/status"}
            doc = json.loads(retained["$license/status"].data)
            assert doc["state"] == "trial" and doc["offline"]["pending_request_at"]  # the trial serves on
            everything = [
                retained["$license/status"].data.decode(),
                *(json.dumps(r) for r in replies),
                *(m.payload.decode() for m in dash.messages),
            ]
            assert len(everything) > 8
            for text in everything:
                for spelling in key_spellings(online_key) + key_spellings(offline_key):
                    assert spelling not in text


@pytest.mark.timeout(60)
def test_broker_log_never_shows_a_key_or_a_password(tmp_path, vendor):
    """The broker as shipped (the CLI), at its most verbose level, through a full session."""
    online_key, offline_key, unknown_key = vendor.issue(), vendor.issue(model="offline"), format_key(bytes(15))
    wrong_password = "Wr0ng-" + secrets.token_hex(4)
    broker = BrokerProcess(
        tmp_path,
        tmp_path / "state",
        vendor_url=vendor.url,
        vendor_public_key=vendor.public_key_text,
        users=USERS,
        log_level="DEBUG",
    ).start()
    try:
        from mqtt_licensing.clients.mqtt import LicenseClient

        def client(user: str, password: str) -> LicenseClient:
            return LicenseClient("127.0.0.1", broker.port, username=user, password=password, timeout=10)

        for user in (ADMIN, READER, PLAIN):
            with pytest.raises(LicensingError):
                client(user, wrong_password).connect()
        with client(PLAIN, PLAIN_PASSWORD) as plain, pytest.raises(LicensingError):
            plain.request("activate", {"license_key": online_key})
        with client(ADMIN, ADMIN_PASSWORD) as admin:
            typo = (online_key[:-1] + ("A" if online_key[-1] != "A" else "B")).lower()  # a checksum error
            for bad in (unknown_key, typo):
                with pytest.raises(LicensingError):
                    admin.request("activate", {"license_key": bad})
            admin.request("activate", {"license_key": online_key.lower()})
            admin.request("deactivate")
            admin.request("offline_request", {"license_key": offline_key})
            admin.request("status")
    finally:
        broker.terminate()
    log = broker.log_text()
    assert "DEBUG" in log and "refused CONNECT" in log  # the log really is verbose
    for secret in [
        *key_spellings(online_key),
        *key_spellings(offline_key),
        *key_spellings(unknown_key),
        ADMIN_PASSWORD,
        READER_PASSWORD,
        PLAIN_PASSWORD,
        wrong_password,
        *USERS.values(),
    ]:
        assert secret not in log, f"the broker log shows {secret[:12]}..."


# -- brute force ----------------------------------------------------------------------------------


def _attempt(url: str, key: str, identity: Ed25519PrivateKey, path: str = "/v1/activations") -> httpx.Response:
    kind = labels.KIND_ACTIVATE if path == "/v1/activations" else labels.KIND_FLOATING_ACTIVATE
    try:
        digest = key_digest(key)
    except LicensingError:
        digest = "0" * 64
    request = sign_instance_request(
        identity, kind=kind, nonce=secrets.token_hex(16), created_at=int(time.time()), key_digest=digest
    )
    return httpx.post(url + path, json={"license_key": key, "request": b64(request)}, timeout=10)


def test_brute_force_keys_are_rate_limited(tmp_path):
    identity = Ed25519PrivateKey.generate()
    with start_vendor(tmp_path / "vendor") as vendor:
        good = vendor.issue()
        codes = []
        for i in range(14):
            key = format_key(secrets.token_bytes(15)) if i % 3 else "MQL1-" + secrets.token_hex(15).upper()
            response = _attempt(vendor.url, key, identity)
            codes.append((response.status_code, response.json()["error"]["code"]))
        first, rest = codes[:10], codes[10:]
        assert all(code in ("key_not_found", "invalid_key") for _, code in first), first
        assert rest == [(429, "rate_limited")] * 4, rest
        # while limited, a valid key from the same source is refused too (no oracle), on every route
        for path in ("/v1/activations", "/v1/floating/activations"):
            response = _attempt(vendor.url, good, identity, path)
            assert (response.status_code, response.json()["error"]["code"]) == (429, "rate_limited")
        assert vendor.service.list_activations() == []


@pytest.mark.timeout(60)
def test_brute_force_burst_is_rate_limited_too(tmp_path):
    """120 unknown keys at once from one source: the limit holds under concurrency."""
    identity = Ed25519PrivateKey.generate()
    with start_vendor(tmp_path / "vendor") as vendor:

        async def burst() -> Counter[str]:
            async with httpx.AsyncClient(
                base_url=vendor.url, timeout=30, limits=httpx.Limits(max_connections=200)
            ) as http:

                async def one() -> str:
                    key = format_key(secrets.token_bytes(15))
                    request = sign_instance_request(
                        identity,
                        kind=labels.KIND_ACTIVATE,
                        nonce=secrets.token_hex(16),
                        created_at=int(time.time()),
                        key_digest=key_digest(key),
                    )
                    response = await http.post("/v1/activations", json={"license_key": key, "request": b64(request)})
                    return response.json()["error"]["code"]

                return Counter(await asyncio.gather(*(one() for _ in range(120))))

        counts = asyncio.run(burst())
    print(f"burst of 120: {dict(counts)}")
    assert set(counts) <= {"key_not_found", "rate_limited"}
    assert counts["key_not_found"] <= 10, f"{counts['key_not_found']} unknown keys were looked up (limit 10)"


def test_brute_force_through_the_agent_is_rate_limited(tmp_path, vendor):
    with start_broker(tmp_path / "s", vendor=vendor) as broker, broker.admin() as admin:
        codes = []
        for _ in range(12):
            with pytest.raises(LicensingError) as err:
                admin.request("activate", {"license_key": format_key(secrets.token_bytes(15))})
            codes.append(str(err.value.code))
    assert codes == ["key_not_found"] * 10 + ["rate_limited"] * 2


# -- admin APIs ------------------------------------------------------------------------------------

BAD_AUTH = [
    {},
    {"Authorization": ""},
    {"Authorization": "Bearer"},
    {"Authorization": "Token {token}"},
    {"Authorization": "Bearer wrong"},
    {"Authorization": "Basic {token}"},
    {"Authorization": "{token}"},
    {"Authorization": "Bearer {token}x"},
    {"Authorization": "Bearer x{token}"},
    {"Authorization": "Bearer {upper}"},
    {"Authorization": "Bearer {half}"},
    {"X-Admin-Token": "{token}"},
    {"Cookie": "token={token}"},
]


def _routes(app) -> list[tuple[str, str]]:
    out = []
    for route in app.routes:
        for method in sorted(route.methods or []):
            if method != "HEAD":
                out.append((method, route.path.replace("{license_id}", "lic_x").replace("{activation_id}", "act_x")))
    return out


def _check_admin_routes(base_url: str, token: str, app, public: set[str]) -> int:
    routes = _routes(app)
    admin_routes = [(m, p) for m, p in routes if "/admin/" in p]
    assert admin_routes
    assert {p for _, p in routes} - {p for _, p in admin_routes} == public, "a new route outside /v1/admin/"
    checked = 0
    with httpx.Client(base_url=base_url, timeout=10) as http:
        for method, path in admin_routes:
            for headers in BAD_AUTH:
                headers = {
                    k: v.format(token=token, upper=token.upper(), half=token[: len(token) // 2])
                    for k, v in headers.items()
                }
                for params in ({}, {"token": token}):
                    response = http.request(method, path, headers=headers, params=params, json={"features": ["x"]})
                    assert response.status_code == 401, (method, path, headers, response.status_code)
                    assert response.json()["error"]["code"] == "unauthorized"
                    checked += 1
            ok = http.request(method, path, headers={"Authorization": f"Bearer {token}"}, json={})
            assert ok.status_code != 401, (method, path)  # the right token does get through
    return checked


def test_admin_apis_refuse_every_route_without_the_right_token(tmp_path):
    from mqtt_licensing.servers.activation.app import create_app as vendor_app
    from mqtt_licensing.servers.floating.app import create_app as floating_app

    with start_vendor(tmp_path / "vendor") as vendor:
        n = _check_admin_routes(
            vendor.url,
            vendor.token,
            vendor_app(vendor.service, vendor.token),
            {
                "/v1/health",
                "/v1/noop",
                "/v1/activations",
                "/v1/activations/check-in",
                "/v1/activations/deactivate",
                "/v1/activations/heartbeat",  # signed by the instance, verified against the key on record
                "/v1/activations/revive",  # the same: only the instance on record takes its activation back
                "/v1/floating/activations",
                "/v1/floating/check-in",
                "/v1/usage",  # signed usage reports, verified against the key on record
                "/v1/floating/usage",  # issue 16: a batch signed by the floating server, records by their brokers
                "/v1/trials",  # issue 10: self-signed, fresh, once; answers only when it first saw that instance
                "/v1/keys",  # the vendor's key rotations: each document is signed, sites verify them
                "/metrics",  # open in an app built without protect_metrics; `vendor serve` guards it
            },
        )
    with start_floating(tmp_path / "fls", vendor_key=Ed25519PrivateKey.generate()) as fls:
        n += _check_admin_routes(
            fls.url,
            fls.token,
            floating_app(fls.service, fls.token),
            {
                "/v1/leases",
                "/v1/leases/renew",
                "/v1/leases/release",
                "/v1/usage",  # issue 16: records signed by a lease holder, verified against its key on record
                "/v1/health",
                "/v1/noop",
                "/metrics",
            },
        )
    print(f"{n} unauthorised admin calls, all 401")
    for path in (tmp_path / "vendor" / "admin.token", tmp_path / "fls" / "admin.token"):
        assert path.stat().st_mode & 0o777 == 0o600


# -- a wrong-password CONNECT reusing a live client id ----------------------------------------


def raw_connect_and_listen(port: int, client_id: str, username: str, password: str, clean: bool) -> tuple[int, bytes]:
    """CONNECT with the given credentials; return the CONNACK code and whatever else arrives."""
    from tests.helpers.broker import connect_packet

    packet = connect_packet(client_id, username=username, password=password, keepalive=30, clean_session=clean)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(packet)
        data = b""
        sock.settimeout(1.0)
        try:
            while chunk := sock.recv(4096):
                data += chunk
        except (TimeoutError, ConnectionResetError):
            pass
    assert data[:2] == b"\x20\x02", data[:10]
    return data[3], data[4:]


@pytest.mark.parametrize("clean_session", [True, False], ids=["clean", "persistent"])
@pytest.mark.parametrize("victim", ["admin", "reader", "user"])
def test_wrong_password_connect_reusing_a_live_client_id_changes_no_role(tmp_path, vendor, victim, clean_session):
    creds = {"admin": (ADMIN, ADMIN_PASSWORD), "reader": (READER, READER_PASSWORD), "user": (PLAIN, PLAIN_PASSWORD)}
    with start_broker(tmp_path / "s", vendor=vendor, users=USERS) as broker:
        agent = broker.agent
        user, password = creds[victim]
        with (
            MqttClient(
                broker.port, client_id="victim", username=user, password=password, clean_session=clean_session
            ) as v,
            MqttClient(broker.port, client_id="bystander") as bystander,
        ):
            assert v.connect() == 0 and bystander.connect() == 0
            assert v.subscribe("$license/status") == (0x80 if victim == "user" else 1)
            roles_before = sorted((c.client_id, c.role) for c in agent.clients.values())
            for attacker_user in (ADMIN, READER, PLAIN):
                code, rest = raw_connect_and_listen(
                    broker.port, "victim", attacker_user, "guess-" + attacker_user, clean_session
                )
                assert code == 5 and rest == b"", (attacker_user, rest[:40])  # refused, handed nothing
            roles_after = sorted((c.client_id, c.role) for c in agent.clients.values())
            assert set(roles_after) <= set(roles_before), (roles_before, roles_after)
            assert ("victim", "admin") not in roles_after or victim == "admin"
            assert agent.status_document()["connections"] <= 2
        # the victim's credentials still mean what they meant: reconnect and use the role
        with MqttClient(broker.port, client_id="victim", username=user, password=password) as v:
            assert v.connect() == 0
            assert v.subscribe("$license/reply/victim") == 1
            reply = ask(v, "$license/status", b"{}", "$license/reply/victim")
            if victim in ("admin", "reader"):  # readers may ask for status too
                assert reply["ok"] is True
            else:
                assert reply["error"]["code"] == "not_authorized"
            if victim != "admin":
                assert v.subscribe("$license/status") == (1 if victim == "reader" else 0x80)  # the same role
            reply = ask(v, "$license/deactivate", b"{}", "$license/reply/victim")
            if victim != "admin":
                assert reply["error"]["code"] == "not_authorized"
        wait_until(
            lambda: agent.status_document()["connections"] == 0,
            5,
            "a refused CONNECT left a counted connection behind",
        )
        assert connack_code(broker.port, "after") == 0
