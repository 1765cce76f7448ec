"""Setup mistakes of the ``vendor`` and ``floating`` verbs and of the servers' startup: one line
naming the fix, exit 2, no traceback (``--debug`` shows it); a mistyped ``--data`` never makes a
new signing key, also not for read-only verbs."""

import socket
import subprocess
from pathlib import Path

import pytest

from mqtt_licensing.servers._run import free_port
from mqtt_licensing.servers.floating.service import FloatingService
from tests.helpers.cli import run_cli


def cli(*args: object, debug: bool = False) -> subprocess.CompletedProcess[str]:
    """In-process: what is checked is the exit code and the one line on stderr, not a process."""
    return run_cli(*(["--debug"] if debug else []), *args)


def one_line(result: subprocess.CompletedProcess[str], code: str) -> str:
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert lines[0].startswith(f"error [{code}]: "), lines[0]
    return lines[0]


@pytest.mark.parametrize(
    "verb", [["licenses"], ["activations"], ["public-key"], ["issue", "--features", "mqtt_server"]]
)
def test_a_vendor_verb_refuses_a_folder_that_is_not_one_and_creates_nothing(tmp_path, verb):
    typo = tmp_path / "vendor-dta"
    line = one_line(cli("vendor", verb[0], "--data", typo, *verb[1:]), "not_a_data_folder")
    assert str(typo) in line and "mqtt-licensing vendor init" in line
    assert not typo.exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    one_line(cli("vendor", verb[0], "--data", empty, *verb[1:]), "not_a_data_folder")
    assert list(empty.iterdir()) == []


def test_vendor_init_creates_a_folder_every_verb_accepts_and_keeps_its_key(tmp_path):
    data = tmp_path / "vendor-data"
    made = cli("vendor", "init", data)
    assert made.returncode == 0 and "created" in made.stdout
    key = (data / "vendor.key").read_bytes()
    assert (data / "admin.token").exists() and (data / "vendor.pub").exists()
    again = cli("vendor", "init", data)
    assert again.returncode == 0 and "already" in again.stdout and (data / "vendor.key").read_bytes() == key
    assert cli("vendor", "licenses", "--data", data).stdout.strip() == "no licenses issued yet"
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    one_line(cli("vendor", "init", busy), "not_a_data_folder")
    assert not (busy / "vendor.key").exists()


def test_a_damaged_vendor_key_is_named_with_its_fix(tmp_path):
    data = tmp_path / "v"
    assert cli("vendor", "init", data).returncode == 0
    (data / "vendor.key").write_text("garbage")
    line = one_line(cli("vendor", "licenses", "--data", data), "state_corrupt")
    assert "vendor.key" in line and "restore it from a backup" in line
    assert "Traceback" in cli("vendor", "licenses", "--data", data, debug=True).stderr
    assert (data / "vendor.key").read_text() == "garbage"


@pytest.mark.parametrize("server", ["vendor", "floating"])
def test_serve_on_a_port_in_use_is_one_line(tmp_path, server):
    data = tmp_path / "d"
    if server == "vendor":
        assert cli("vendor", "init", data).returncode == 0
    else:
        FloatingService.open(data).close()
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        line = one_line(cli(server, "serve", "--data", data, "--port", port), "port_in_use")
    assert f"port {port}" in line and "--port" in line


@pytest.mark.parametrize("verb", [["status"], ["refresh"], ["deactivate"]])
def test_a_floating_verb_refuses_a_folder_that_is_not_one(tmp_path, verb):
    typo = tmp_path / "fls-typo"
    line = one_line(cli("floating", *verb, "--data", typo), "not_a_data_folder")
    assert "floating activate" in line and not typo.exists()


@pytest.mark.parametrize(
    "url", ["postgresql+nosuchdriver://ops:s3cret@db/fls", "not a url s3cret", "sqlite:////no/such/dir/x.db"]
)
def test_floating_serve_with_a_bad_database_url_is_one_line_without_the_password(tmp_path: Path, url):
    data = tmp_path / "fls"
    FloatingService.open(data).close()
    result = cli("floating", "serve", "--data", data, "--db-url", url, "--port", free_port())
    code = result.stderr.partition("[")[2].partition("]")[0]  # the servers name the code (bad_request, ...)
    line = one_line(result, code)
    assert "database" in line and "s3cret" not in line


def test_unusable_files_on_the_command_line_are_one_line(tmp_path):
    data = tmp_path / "v"
    assert cli("vendor", "init", data).returncode == 0
    line = one_line(
        cli("vendor", "offline-activate", "--data", data, "--request", tmp_path / "nope.txt"), "bad_request"
    )
    assert "nope.txt" in line
    fls = tmp_path / "fls"
    args = ["--key-file", tmp_path / "no-key.txt", "--vendor", "http://x", "--vendor-key", "nonsense"]
    assert "--key-file" in one_line(cli("floating", "activate", "--data", fls, *args), "invalid_field")
    assert not fls.exists()
