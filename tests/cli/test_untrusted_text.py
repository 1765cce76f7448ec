"""Text that came from whoever connects (usernames, client ids, messages) is printed with its
control characters escaped: a terminal never runs an ANSI/OSC sequence a stranger typed."""

import subprocess
import sys

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from mqtt_licensing.cli.format import format_event, format_status
from mqtt_licensing.core.signing import public_key_to_text
from tests.helpers.broker import ADMIN, ADMIN_PASSWORD, RawClient, start_broker

CLI = [sys.executable, "-m", "mqtt_licensing.cli.main"]
HOSTILE = "\x1b]0;pwned\x07\x1b[2J\x1b[32mState: active\x1b[0m\u202e"


def test_events_prints_a_hostile_username_as_escapes(tmp_path):
    pub = public_key_to_text(Ed25519PrivateKey.generate())
    with start_broker(tmp_path / "state", vendor_url=None, vendor_public_key=pub) as broker:
        with RawClient(broker.port) as raw:
            assert raw.connect(HOSTILE, username=HOSTILE, password="wrong") != 0
        follower = subprocess.Popen(
            [*CLI, "events", "-p", str(broker.port), "-u", ADMIN, "-P", ADMIN_PASSWORD, "--since", "10m"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        try:
            assert follower.stdout is not None and follower.stderr is not None
            while b"connection_refused" not in (line := follower.stdout.readline()):
                assert line, follower.stderr.read()
        finally:
            follower.terminate()
            follower.wait(timeout=10)
    assert b"\x1b" not in line and b"\x07" not in line and "\u202e".encode() not in line, line
    assert b"\\x1b]0;pwned\\x07" in line, line


def test_status_and_events_escape_every_field():
    doc = {"state": "trial", "reason": HOSTILE, "problems": [{"code": "x", "message": HOSTILE}]}
    for text in (format_status(doc), format_event({"type": HOSTILE, "client_id": HOSTILE}), format_event(HOSTILE)):
        assert "\x1b" not in text and "\x07" not in text and "\u202e" not in text, text
        assert "\\x1b[2J" in text


def test_status_shows_the_instance_label_with_escapes_as_text():
    fingerprint = "ab" * 16
    text = format_status({"state": "active", "instance": {"fingerprint": fingerprint, "label": "line-7-broker"}})
    assert f"line-7-broker ({fingerprint})" in text
    # A status document comes from whatever broker answered: its label is as untrusted as a username.
    text = format_status({"state": "active", "instance": {"fingerprint": fingerprint, "label": HOSTILE}})
    assert "\x1b" not in text and "\x07" not in text and "\u202e" not in text, text
    assert "\\x1b]0;pwned\\x07" in text and fingerprint in text
