"""Security: what a broker keeps and shows, and who a CONNECT makes a client.

* retained messages: only the status document, never a key; a non-reader gets nothing; the
  broker log (the CLI at DEBUG) never shows a full license key or a password;
* a wrong-password CONNECT that reuses a live admin's or user's client id (clean session on
  and off) grants and changes no role (BRIEF §9).
"""

from __future__ import annotations

import json
import secrets
import socket
import time

import pytest

from mqtt_licensing.core.errors import LicensingError
from mqtt_licensing.core.keys import format_key, normalize_key
from tests.helpers.broker import (
    ADMIN,
    ADMIN_PASSWORD,
    READER,
    READER_PASSWORD,
    MqttClient,
    start_broker,
)
from tests.reliability.principals import PLAIN, PLAIN_PASSWORD, USERS, ask, license_messages
from tests.reliability.support import (
    BrokerProcess,
    connack_code,
    wait_until,
)

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
