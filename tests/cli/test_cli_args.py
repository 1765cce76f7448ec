"""Argument handling that happens before any network traffic."""

from __future__ import annotations

import argparse
import socket

import pytest

from mqtt_licensing.cli.license_io import (
    ENV_HOST,
    ENV_PASSWORD,
    ENV_PORT,
    ENV_USERNAME,
    InputFileError,
    credentials,
    endpoint,
    license_key_from_args,
)
from mqtt_licensing.cli.main import build_parser, main
from mqtt_licensing.core.errors import ErrorCode, LicensingError
from mqtt_licensing.core.keys import format_key
from mqtt_licensing.core.passwords import verify_password

KEY = format_key(bytes(range(15)))


def typo(key: str) -> str:
    """Change one character of the random part (still base32, so only the checksum can catch it)."""
    i = 6
    return key[:i] + ("B" if key[i] != "B" else "C") + key[i + 1 :]


def parse(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(list(argv))


def test_common_options_and_defaults(monkeypatch):
    monkeypatch.delenv(ENV_HOST, raising=False)
    monkeypatch.delenv(ENV_PORT, raising=False)
    args = parse("status")
    assert (*endpoint(args), args.username, args.password, args.timeout, args.json, args.watch) == (
        "127.0.0.1",
        1883,
        None,
        None,
        10.0,
        False,
        False,
    )
    args = parse(
        "deactivate",
        "--host",
        "h",
        "--port",
        "2883",
        "--username",
        "u",
        "--password",
        "p",
        "--timeout",
        "2.5",
        "--json",
        "--out",
        "f",
    )
    assert (args.host, args.port, args.username, args.password, args.timeout, args.json, args.out) == (
        "h",
        2883,
        "u",
        "p",
        2.5,
        True,
        "f",
    )


def test_activate_sources_are_mutually_exclusive():
    with pytest.raises(SystemExit) as info:
        parse("activate", "--key", KEY, "--usage-license-file", "f")
    assert info.value.code == 2
    with pytest.raises(SystemExit):
        parse("offline-request")  # a key is required


def test_activate_needs_a_source_and_features_need_floating(capsys):
    for argv, message in (
        (["activate"], "say what to activate"),
        (["activate", "--key", KEY, "--features", "a"], "--features only goes with --floating"),
        (["activate", "--floating", "http://f", "--features", " , "], "at least one feature"),
    ):
        with pytest.raises(SystemExit) as info:
            main(argv)
        assert info.value.code == 2
        assert message in capsys.readouterr().err


def test_key_file_with_whitespace_is_normalised(tmp_path):
    path = tmp_path / "license.txt"
    path.write_text(f"\n\n   {KEY.lower()}  \r\n\n")
    assert license_key_from_args(argparse.Namespace(key=None, key_file=str(path))) == KEY
    grouped = KEY.replace("-", " - ")
    assert license_key_from_args(argparse.Namespace(key=grouped, key_file=None)) == KEY


def test_typo_in_key_fails_with_invalid_key():
    with pytest.raises(LicensingError) as info:
        license_key_from_args(argparse.Namespace(key=typo(KEY), key_file=None))
    assert info.value.code == ErrorCode.INVALID_KEY


@pytest.mark.parametrize("verb", ["activate", "offline-request"])
def test_typo_fails_before_any_network(verb, tmp_path, capsys):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    listener.setblocking(False)
    port = listener.getsockname()[1]
    key_file = tmp_path / "key.txt"
    key_file.write_text(typo(KEY) + "\n")
    try:
        rc = main([verb, "--key-file", str(key_file), "--port", str(port), "--timeout", "1"])
        with pytest.raises(BlockingIOError):
            listener.accept()  # nobody tried to connect
    finally:
        listener.close()
    assert rc == 1
    assert capsys.readouterr().err.startswith("error [invalid_key]: ")


def test_missing_files_are_usage_errors(tmp_path, capsys):
    assert main(["activate", "--key-file", str(tmp_path / "nope.txt")]) == 2
    assert "cannot read key file" in capsys.readouterr().err
    empty = tmp_path / "empty.txt"
    empty.write_text("  \n")
    assert main(["activate", "--usage-license-file", str(empty)]) == 2
    assert "is empty" in capsys.readouterr().err


def test_credentials_from_environment(monkeypatch):
    monkeypatch.setenv(ENV_USERNAME, "admin")
    monkeypatch.setenv(ENV_PASSWORD, "s3cret")
    assert credentials(parse("status")) == ("admin", "s3cret")
    assert credentials(parse("status", "--username", "other", "--password", "x")) == ("other", "x")
    monkeypatch.delenv(ENV_USERNAME)
    monkeypatch.delenv(ENV_PASSWORD)
    assert credentials(parse("status")) == (None, None)


def test_hash_password(capsys, monkeypatch):
    assert main(["hash-password", "--password", "correct horse"]) == 0
    encoded = capsys.readouterr().out.strip()
    assert verify_password("correct horse", encoded)
    assert not verify_password("wrong", encoded)
    import io

    monkeypatch.setattr("sys.stdin", io.StringIO("from stdin\n"))
    assert main(["hash-password"]) == 0
    assert verify_password("from stdin", capsys.readouterr().out.strip())
    assert main(["hash-password", "--password", ""]) == 2


@pytest.mark.parametrize("value", ["0", "-1", "abc"])
def test_timeout_must_be_positive(value, capsys):
    with pytest.raises(SystemExit) as info:
        parse("status", "--timeout", value)
    assert info.value.code == 2
    assert "--timeout" in capsys.readouterr().err


def test_short_flags_are_the_mosquitto_clients_ones():
    args = parse("status", "-H", "broker.lan", "-p", "2883", "-u", "ops", "-P", "pw", "-i", "me", "-W", "3")
    assert (args.host, args.port, args.username, args.password, args.client_id, args.timeout) == (
        "broker.lan",
        2883,
        "ops",
        "pw",
        "me",
        3.0,
    )


def test_h_is_help_on_every_verb_and_the_host_is_capital_h(capsys):
    for verb in ("status", "activate", "events", "deactivate", "vendor", "floating", "broker", "demo"):
        with pytest.raises(SystemExit) as info:
            parse(verb, "-h")
        assert info.value.code == 0, verb
        assert "show this help message" in capsys.readouterr().out, verb
    with pytest.raises(SystemExit):
        parse("status", "--help")
    assert "-H HOST, --host HOST" in capsys.readouterr().out


def test_host_and_port_come_from_the_environment_unless_given(monkeypatch):
    monkeypatch.setenv(ENV_HOST, "env-host")
    monkeypatch.setenv(ENV_PORT, "1999")
    assert endpoint(parse("status")) == ("env-host", 1999)
    assert endpoint(parse("status", "-H", "flag-host", "-p", "2000")) == ("flag-host", 2000)
    monkeypatch.setenv(ENV_PORT, "not-a-port")
    with pytest.raises(InputFileError, match=ENV_PORT):
        endpoint(parse("status"))


def test_bad_port_in_the_environment_is_one_line_and_exit_2(monkeypatch, capsys):
    monkeypatch.setenv(ENV_PORT, "70000")
    assert main(["status"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: $MQTT_LICENSING_PORT") and err.count("\n") == 1
