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
        ("mysql://u:secret@db/x", "driver for mysql is not installed"),
        ("postgresql://u:secret@127.0.0.1:1/db", "[server_unreachable]: cannot open the activation database"),
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
