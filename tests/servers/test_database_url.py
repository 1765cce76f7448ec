"""`--database-url` on the CLI: named once, remembered in the data folder (owner-only), used by
every later verb on the folder; a URL that cannot work is one line naming the fix."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from mqtt_licensing.cli.main import main
from mqtt_licensing.servers._db import create_db_engine, redact_url
from mqtt_licensing.servers._files import DATABASE_URL_FILE
from mqtt_licensing.servers.activation.service import DB_FILE, ActivationService


def test_the_url_is_remembered_and_used_by_later_verbs(tmp_path: Path, pg_cluster: Any, capsys: Any) -> None:
    url = pg_cluster.new_database().replace("postgresql+psycopg://", "postgresql://")  # as an operator writes it
    data = tmp_path / "vendor"
    assert main(["vendor", "init", str(data), "--database-url", url]) == 0
    assert main(["vendor", "issue", "--data", str(data), "--database-url", url, "--features", "mqtt_server"]) == 0
    key = capsys.readouterr().out.strip()
    assert oct((data / DATABASE_URL_FILE).stat().st_mode & 0o777) == "0o600"
    assert not (data / DB_FILE).exists()  # nothing went to SQLite
    assert main(["vendor", "licenses", "--data", str(data), "--json"]) == 0
    assert key[-5:] in capsys.readouterr().out
    service = ActivationService.open(data)  # the library reads the same file
    try:
        assert service.store.engine.dialect.name == "postgresql"
    finally:
        service.close()


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("not a url", "is not a database URL"),
        ("mysql://u@db/x", "driver for mysql is not installed"),
        ("postgresql://u@127.0.0.1:1/db", "[server_unreachable]: cannot open the activation database"),
    ],
)
def test_a_url_that_cannot_work_is_one_line(tmp_path: Path, capsys: Any, url: str, words: str) -> None:
    assert main(["vendor", "init", str(tmp_path)]) == 0  # a vendor data folder (SQLite)
    capsys.readouterr()
    assert main(["vendor", "licenses", "--data", str(tmp_path), "--database-url", url]) == 2  # a setup mistake
    err = capsys.readouterr().err
    assert words in err and "Traceback" not in err and "secret" not in err, err
    assert not (tmp_path / DATABASE_URL_FILE).exists()  # a URL that never worked is not remembered


def test_passwords_are_not_shown() -> None:
    assert redact_url("postgresql://u:secret@db/x") == "postgresql://u:***@db/x"
    assert create_db_engine("postgresql://u:secret@db/x").url.password == "secret"  # kept for connecting


def test_the_database_password_never_goes_on_the_command_line(
    tmp_path: Path, pg_cluster: Any, capsys: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Main: the password was accepted only inside --database-url, where any local user reads it
    in /proc/<pid>/cmdline. Now such a URL is refused; PGPASSWORD, a .pgpass file or a 0600
    --database-password-file give it instead."""
    monkeypatch.delenv("PGPASSWORD", raising=False)
    monkeypatch.setenv("PGPASSFILE", str(tmp_path / "none"))
    url = pg_cluster.password_database("s3cret-pw")
    with_password = url.replace("@", ":s3cret-pw@", 1)
    assert main(["vendor", "init", str(tmp_path / "v0"), "--database-url", with_password]) == 2
    err = capsys.readouterr().err
    assert "PGPASSWORD" in err and "s3cret-pw" not in err and not (tmp_path / "v0").exists(), err
    assert main(["vendor", "init", str(tmp_path / "v1"), "--database-url", url]) == 2  # no password at all
    assert "no password supplied" in capsys.readouterr().err

    monkeypatch.setenv("PGPASSWORD", "s3cret-pw")
    assert main(["vendor", "init", str(tmp_path / "v2"), "--database-url", url]) == 0
    monkeypatch.delenv("PGPASSWORD")

    pgpass = tmp_path / "pgpass"
    pgpass.write_text("*:*:*:*:s3cret-pw\n")
    pgpass.chmod(0o600)
    monkeypatch.setenv("PGPASSFILE", str(pgpass))
    assert main(["vendor", "licenses", "--data", str(tmp_path / "v2"), "--database-url", url]) == 0
    monkeypatch.setenv("PGPASSFILE", str(tmp_path / "none"))

    secret = tmp_path / "db-password"
    secret.write_text("s3cret-pw\n")
    secret.chmod(0o644)
    args = ["vendor", "init", str(tmp_path / "v3"), "--database-url", url, "--database-password-file", str(secret)]
    assert main(args) == 2 and "chmod 600" in capsys.readouterr().err
    secret.chmod(0o600)
    assert main(args) == 0
    capsys.readouterr()
    assert main(["vendor", "licenses", "--data", str(tmp_path / "v3")]) == 0  # remembered, owner-only
    assert oct((tmp_path / "v3" / DATABASE_URL_FILE).stat().st_mode & 0o777) == "0o600"
