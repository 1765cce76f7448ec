"""The human summary of status documents: complete, partial and malformed ones."""

from datetime import UTC, datetime

import pytest

from mqtt_licensing.cli.format import deactivation_banner, format_event, format_status, format_time

NOW = datetime(2025, 6, 1, 12, 0, 0, tzinfo=UTC)

FULL = {
    "state": "grace",
    "serving": True,
    "reason": "the vendor could not be reached since 2025-05-31",
    "model": "online",
    "license_id": "lic_7f3a",
    "key": "MQL1-ABCDE-*****-*****-*****-*****-XYZ12",
    "activation_id": "act_19",
    "features": ["mqtt_server", "mqtt_server_support"],
    "support_until": "2026-06-01T12:00:00Z",
    "expires_at": None,
    "valid_until": "2025-06-08T12:00:00Z",
    "deadline": "2025-06-08T12:00:00Z",
    "max_connections": 100,
    "connections": 3,
    "instance": {"fingerprint": "fp-abc123"},
    "trial": None,
    "check_in": {
        "server": "http://vendor",
        "last_ok_at": "2025-05-31T12:00:00Z",
        "failing_since": None,
        "next_at": "2025-06-01T13:00:00Z",
        "last_error": "server_unreachable",
    },
    "offline": None,
    "floating": None,
    "problems": [
        {"code": "server_unreachable", "message": "cannot reach http://vendor"},
        {"code": "clock", "message": "second problem"},
    ],
    "updated_at": "2025-06-01T11:59:00Z",
}


def test_full_document_shows_everything_an_operator_needs():
    text = format_status(FULL, NOW)
    lines = {
        line.split(":", 1)[0].strip(): line.split(":", 1)[1].strip()
        for line in text.splitlines()
        if ":" in line and not line.startswith(" ")
    }
    assert lines["State"] == "grace (serving)"
    assert lines["Features"] == "mqtt_server, mqtt_server_support"
    assert lines["Support until"].startswith("2026-06-01 12:00:00 UTC (in 365 days)")
    assert lines["Key"] == "MQL1-ABCDE-*****-*****-*****-*****-XYZ12"
    assert lines["License"] == "lic_7f3a"
    assert lines["Activation"] == "act_19"
    assert lines["Expires"] == "never"
    assert lines["Grace ends"] == "2025-06-08 12:00:00 UTC (in 7 days)"
    assert lines["Connections"] == "3 of 100"
    assert lines["Instance"] == "fp-abc123"
    assert lines["Problems"] == "[server_unreachable] cannot reach http://vendor"
    assert "[clock] second problem" in text
    assert "last ok at: 2025-05-31 12:00:00 UTC (1 day ago)" in text
    assert "last error: server_unreachable" in text
    assert "failing since" not in text  # null sub-fields are left out


def test_not_serving_is_spelled_out():
    assert format_status({"state": "unlicensed", "serving": False}, NOW).startswith("State:")
    assert "unlicensed (NOT serving)" in format_status({"state": "unlicensed", "serving": False}, NOW)


@pytest.mark.parametrize(
    "doc",
    [
        {},
        {
            "state": None,
            "serving": "yes",
            "features": "mqtt_server",
            "problems": ["plain text", 7, {"message": "m"}],
            "instance": "not-a-dict",
            "trial": [],
            "check_in": "x",
            "offline": {"pending_request_at": "garbage-time"},
            "connections": 5,
            "deadline": 12,
            "updated_at": {"nested": 1},
        },
        {"unknown_key": {"deep": [1, 2]}, "features": None, "max_connections": 10},
        {
            "state": "trial",
            "trial": {
                "started_at": "2025-06-01T10:00:00Z",
                "ends_at": "2025-06-01T12:00:00+00:00",
                "max_connections": 25,
            },
            "deadline": "2025-06-01T14:00:00",
        },
    ],
)
def test_odd_or_partial_documents_never_crash(doc):
    text = format_status(doc, NOW)
    assert text.startswith("State:")


def test_odd_values_are_shown_not_dropped():
    text = format_status(
        {
            "state": "trial",
            "connections": 5,
            "max_connections": None,
            "offline": {"pending_request_at": "garbage-time"},
            "deadline": "2025-06-01T14:00:00",
            "problems": ["plain text", {"message": "only a message"}],
        },
        NOW,
    )
    assert "Connections: 5 (no license limit)" in " ".join(text.split())
    assert "pending request at: garbage-time" in text
    assert "Trial ends:" in text and "(in 2 h)" in text
    assert "plain text" in text and "only a message" in text


def test_non_dict_documents_are_reported():
    assert "no status document" in format_status(None)
    assert "no status document" in format_status(["state", "active"])


def test_pending_deactivation_code_in_status_is_shown_as_a_banner():
    code = "-----BEGIN DEACTIVATION CODE-----\nABCDEF\n=12345678\n-----END DEACTIVATION CODE-----\n"
    text = format_status(
        {"state": "unlicensed", "serving": False, "offline": {"pending_request_at": None, "deactivation_code": code}},
        NOW,
    )
    assert "deactivation code: pending: see below" in text
    assert text.endswith(deactivation_banner(code))
    assert "send it to your vendor" in deactivation_banner(code)
    assert code.strip() in deactivation_banner(code)


def test_format_time():
    assert format_time("2025-06-01T12:00:00Z", NOW) == "2025-06-01 12:00:00 UTC (now)"
    assert format_time("2025-06-01T11:00:00+00:00", NOW) == "2025-06-01 11:00:00 UTC (1 h ago)"
    assert format_time(int(NOW.timestamp()) + 120, NOW) == "2025-06-01 12:02:00 UTC (in 2 min)"
    assert format_time("not a time", NOW) == "not a time"
    assert format_time(True, NOW) == "True"


def test_format_event():
    line = format_event(
        {"at": "2025-06-01T12:00:00Z", "event": "connect_refused", "client_id": "c1", "reason": "not serving"}, NOW
    )
    assert line == "2025-06-01 12:00:00 UTC (now)  connect_refused  client id: c1; reason: not serving"
    assert format_event("text") == "text"
    assert format_event({}) == "event"


def test_agent_specific_sections():
    request_code = (
        "-----BEGIN MQTT LICENSING USAGE REQUEST-----\nABC\n=1234\n-----END MQTT LICENSING USAGE REQUEST-----\n"
    )
    text = format_status(
        {
            "state": "clock_tampered",
            "serving": False,
            "clock": {"last_seen": "2025-06-01T13:00:00Z", "tampered": True},
            "offline": {
                "pending_request_at": "2025-06-01T11:00:00Z",
                "request_code": request_code,
                "deactivation_code": None,
            },
            "floating": {
                "server": "http://fls:8800",
                "features": ["mqtt_server"],
                "lease_id": "l1",
                "lease_expires_at": "2025-06-01T12:10:00Z",
                "seats": 5,
            },
        },
        NOW,
    )
    assert "Clock:" in text and "ran back" in text and "(in 1 h)" in text
    assert "request code: present (a multi-line code: see --json)" in text
    assert "BEGIN" not in text
    assert "lease expires at: 2025-06-01 12:10:00 UTC (in 10 min)" in text and "seats: 5" in text
    assert "Clock" not in format_status({"state": "active", "clock": {"last_seen": None, "tampered": False}}, NOW)


def test_status_prints_each_alarm_with_severity_and_since():
    doc = {
        **FULL,
        "alarms": [
            {
                "code": "grace_ending",
                "severity": "critical",
                "since": "2025-06-01T10:00:00Z",
                "deadline": "2025-06-02T10:00:00Z",
                "message": "grace ends at 2025-06-02T10:00:00Z",
            },
            {"code": "check_in_failing", "severity": "warning", "since": None, "deadline": None, "message": "x"},
        ],
    }
    text = format_status(doc, NOW)
    lines = text.splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith("Alarms:"))
    assert "[critical] grace_ending: grace ends at 2025-06-02T10:00:00Z (since" in lines[first]
    assert "[warning] check_in_failing: x" in lines[first + 1]
    assert "Alarms:" not in format_status({**FULL, "alarms": []}, NOW)


def test_connections_past_the_cap_name_the_overage():
    doc = {"state": "active", "serving": True, "max_connections": 4, "connections": 5}
    over = {**doc, "connections_over_cap": True, "overage": {"fraction": 0.5, "allowed": 6}}
    assert "Connections: 5 of 4 (overage admits up to 6, over the cap)" in format_status(over)
    under = {**over, "connections": 4, "connections_over_cap": False}
    assert "Connections: 4 of 4 (overage admits up to 6)" in format_status(under)
    assert "Connections: 5 of 4\n" in format_status({**doc, "overage": None}) + "\n"


def test_a_released_activation_is_one_reason_line_and_heartbeats_a_row_of_their_own() -> None:
    from mqtt_licensing.core.state import RELEASED_STOPPED

    doc = {
        **FULL,
        "state": "unlicensed",
        "serving": False,
        "reason": RELEASED_STOPPED,
        "check_in": {
            **FULL["check_in"],  # type: ignore[dict-item]
            "heartbeat": {"interval": 60, "release_after": 300, "last_ok_at": "2025-06-01T11:59:00Z"},
        },
    }
    text = format_status(doc, now=NOW)
    [reason] = [line for line in text.splitlines() if "released this activation" in line]
    assert "no activation is free" in reason and "activates again by itself" in reason
    [beat] = [line for line in text.splitlines() if line.lstrip().startswith("Heartbeat")]
    assert (
        "interval: 60" in beat
        and "release after: 300" in beat
        and "heartbeat" not in text.split("Check-in")[1].split("\n")[0]
    )
