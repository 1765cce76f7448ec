"""Configuration mistakes are one line naming the fix; secrets come from the environment or
files and never show in a repr; mail goes over STARTTLS with a verified certificate before any
password is sent, and never falls back to plain text."""

from __future__ import annotations

import datetime
import ipaddress
import ssl
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from mqtt_licensing.cli.main import main
from mqtt_licensing.core.errors import LicensingError
from mqtt_licensing.servers.shop.config import SmtpSettings, load_config, parse_config
from mqtt_licensing.servers.shop.devtools import SmtpSink, body_of
from mqtt_licensing.servers.shop.mail import Mailer, MailError
from tests.shop.support import SMTP_PASSWORD, STRIPE_KEY, WEBHOOK_SECRET, catalogue, secret_env


def base_config(**changes: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "base_url": "https://licenses.example.com",
        "stripe": {"publishable_key": "pk_test_x"},
        "smtp": {"host": "smtp.example.com", "from": "store@example.com", "username": "store"},
        "catalogue": catalogue(),
    }
    config.update(changes)
    return config


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in secret_env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("MQTT_LICENSING_SMTP_PASSWORD", SMTP_PASSWORD)


def test_secrets_come_from_the_environment_and_never_show(env: None) -> None:
    config = parse_config(base_config())
    assert (config.stripe.secret_key, config.stripe.webhook_secret) == (STRIPE_KEY, WEBHOOK_SECRET)
    assert config.smtp.password == SMTP_PASSWORD and config.smtp.port == 587 and config.smtp.security == "starttls"
    shown = repr(config)
    for secret in (STRIPE_KEY, WEBHOOK_SECRET, SMTP_PASSWORD):
        assert secret not in shown


def test_secrets_from_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (*secret_env(), "MQTT_LICENSING_SMTP_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    (tmp_path / "sk").write_text("sk_from_file\n")
    (tmp_path / "wh").write_text("whsec_from_file\n")
    (tmp_path / "pw").write_text("pw_from_file\n")
    config = parse_config(
        base_config(
            stripe={"publishable_key": "pk_x", "secret_key_file": str(tmp_path / "sk"),
                    "webhook_secret_file": str(tmp_path / "wh")},
            smtp={"host": "h", "from": "a@b.c", "username": "u", "password_file": str(tmp_path / "pw")},
        )
    )  # fmt: skip
    assert (config.stripe.secret_key, config.stripe.webhook_secret, config.smtp.password) == (
        "sk_from_file",
        "whsec_from_file",
        "pw_from_file",
    )


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"stripe": {"publishable_key": "pk_x", "secret_key": "sk_live_oops"}}, "do not put secrets in the file"),
        ({"smtp": {"host": "h", "from": "a@b.c", "password": "x"}}, "do not put secrets in the file"),
        ({"stripe": {"publishable_key": "sk_wrong"}}, "publishable key (pk_...)"),
        ({"base_url": "licenses.example.com"}, "base_url must be"),
        ({"smtp": {"host": "h", "from": "a@b.c", "security": "tls"}}, "smtp.security must be one of"),
        ({"catalogue": {"products": [{"id": "x", "name": "X", "feature": "Gold!", "kind": "one_time", "price": 1}]}},
         "feature name 'Gold!' must be"),  # whether the catalogue has it: tests/shop/test_product_line.py
        ({"catalogue": {"products": [{"id": "x", "name": "X", "feature": "mqtt_server", "kind": "lease", "price": 1}]}},
         "kind must be one of"),
        ({"catalogue": {"products": [{"id": "x", "name": "X", "feature": "mqtt_server", "kind": "one_time",
                                      "price": 9.99}]}}, "minor units"),
    ],
)  # fmt: skip
def test_config_mistakes_are_one_line(env: None, change: dict[str, Any], message: str) -> None:
    with pytest.raises(LicensingError) as exc:
        parse_config(base_config(**change))
    assert message in exc.value.message and "\n" not in exc.value.message


def test_a_missing_secret_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MQTT_LICENSING_STRIPE_SECRET_KEY", raising=False)
    with pytest.raises(LicensingError) as exc:
        parse_config(base_config())
    assert "MQTT_LICENSING_STRIPE_SECRET_KEY" in exc.value.message


def test_vendor_serve_with_a_bad_shop_config_says_one_line(
    tmp_path: Path, env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "shop.yaml"
    bad.write_text(yaml.safe_dump(base_config(base_url="nope")))
    assert main(["vendor", "serve", "--data", str(tmp_path / "v"), "--port", "1", "--shop-config", str(bad)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "base_url must be" in err and "Traceback" not in err
    assert not (tmp_path / "v").exists()  # refused before anything was opened or created
    with pytest.raises(LicensingError, match="cannot read"):
        load_config(tmp_path / "missing.yaml")


# -- mail ---------------------------------------------------------------------------------


def self_signed(folder: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "smtp.crt", folder / "smtp.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


def settings(port: int, **changes: Any) -> SmtpSettings:
    values: dict[str, Any] = {"host": "127.0.0.1", "port": port, "sender": "store@example.com", "timeout": 10.0}
    values.update(changes)
    return SmtpSettings(**values)


def test_starttls_with_login(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(cert, key)
    with SmtpSink(tls_context=tls, login=("store", SMTP_PASSWORD)) as sink:
        mailer = Mailer(settings(sink.port, username="store", password=SMTP_PASSWORD, ca_file=str(cert)))
        mailer.send("buyer@example.com", "hello", "over TLS")
        [msg] = sink.wait()
    assert body_of(msg).strip() == "over TLS" and sink.logins == ["store"]


def test_no_plain_text_fallback_and_no_unverified_server(tmp_path: Path) -> None:
    with SmtpSink() as plain:  # offers no STARTTLS
        with pytest.raises(MailError) as exc:
            Mailer(settings(plain.port, username="store", password=SMTP_PASSWORD)).send("a@b.c", "s", "secret body")
        assert plain.messages == []
    assert SMTP_PASSWORD not in exc.value.message and "secret body" not in exc.value.message

    cert, key = self_signed(tmp_path)
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(cert, key)
    with SmtpSink(tls_context=tls, login=("store", SMTP_PASSWORD)) as sink:
        # The system's CAs do not know this self-signed server: refused before the password is sent.
        with pytest.raises(MailError):
            Mailer(settings(sink.port, username="store", password=SMTP_PASSWORD)).send("a@b.c", "s", "b")
        assert sink.messages == [] and sink.logins == []
