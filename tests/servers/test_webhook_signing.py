"""Standard Webhooks signatures: the specification's own example, and what a receiver refuses."""

import pytest

from mqtt_licensing.core.errors import LicensingError
from mqtt_licensing.servers.webhooks import signing as hooks


def test_the_specifications_example_signature():
    # The example of the Standard Webhooks specification (and of its reference libraries).
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    body = b'{"test": 2432232314}'
    sig = hooks.signature(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body)
    assert sig == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_a_receiver_accepts_our_headers_and_refuses_tampering_and_replays():
    secret = hooks.new_secret()
    body = b'{"type": "license.created"}'
    sent = hooks.headers(secret, "msg_1", 1000, body)
    assert hooks.verify(secret, sent, body, now=1010) == "msg_1"
    with pytest.raises(LicensingError):
        hooks.verify(secret, sent, body + b" ", now=1010)
    with pytest.raises(LicensingError):
        hooks.verify(hooks.new_secret(), sent, body, now=1010)
    with pytest.raises(LicensingError, match="tolerance"):
        hooks.verify(secret, sent, body, now=1000 + hooks.TOLERANCE + 1)
