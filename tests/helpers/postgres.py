"""A throwaway PostgreSQL cluster for tests: ``initdb`` + ``pg_ctl`` in a temporary folder.

    cluster = PostgresCluster.start()        # once per test session (see tests/conftest.py)
    url = cluster.new_database()             # a fresh, empty database per test
    ... ActivationService.open(data, database_url=url) ...
    cluster.stop()

The binaries come from Debian's ``postgresql`` package (``scripts/test.sh`` installs it). initdb
refuses to run as root, so as root the cluster runs as the ``postgres`` user in a folder it owns.
It listens on 127.0.0.1 on a free port (and a socket in its own folder), trusts local connections
and skips fsync: a killed server process is what the tests simulate, not a lost machine.
"""

from __future__ import annotations

import glob
import os
import secrets
import shutil
import subprocess
import tempfile
from pathlib import Path

from mqtt_licensing.servers._run import free_port


def _bin_dir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def available() -> str | None:
    """None when a cluster can be started here, else why not."""
    if _bin_dir() is None:
        return "PostgreSQL is not installed (scripts/test.sh installs it: apt-get install postgresql)"
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "psycopg is not installed"
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        return "running as root without runuser"
    return None


class PostgresCluster:
    def __init__(self, folder: Path, port: int, bin_dir: Path) -> None:
        self.folder = folder
        self.port = port
        self.bin_dir = bin_dir

    @property
    def data(self) -> Path:
        return self.folder / "data"

    def _run(self, *argv: str) -> subprocess.CompletedProcess[str]:
        prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        return subprocess.run([*prefix, *argv], check=True, capture_output=True, text=True, timeout=60)

    @classmethod
    def start(cls, *, durable: bool = False) -> PostgresCluster:
        """``durable``: keep PostgreSQL's fsync'd commits (for benchmarks; tests skip them)."""
        bin_dir = _bin_dir()
        assert bin_dir is not None, available()
        folder = Path(tempfile.mkdtemp(prefix="mql-pg-"))
        if os.geteuid() == 0:
            shutil.chown(folder, "postgres", "postgres")
        cluster = cls(folder, free_port(), bin_dir)
        cluster._run(str(bin_dir / "initdb"), "-D", str(cluster.data), "-U", "postgres", "--auth=trust", "-E", "UTF8")
        options = f"-p {cluster.port} -k {folder} -c listen_addresses=127.0.0.1 -c max_connections=300"
        if not durable:
            options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        cluster._run(
            str(bin_dir / "pg_ctl"), "-D", str(cluster.data), "-l", str(folder / "log"), "-o", options, "-w", "start"
        )
        return cluster

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        """A fresh empty database; returns its SQLAlchemy URL."""
        import psycopg

        name = "t_" + secrets.token_hex(6)
        with psycopg.connect(f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres", autocommit=True) as c:
            c.execute(f"CREATE DATABASE {name}")
        return self.url(name)

    def password_database(self, password: str) -> str:
        """A fresh database owned by a new role that must log in with ``password`` (scram, from
        127.0.0.1); returns its URL without the password."""
        import time

        import psycopg

        name = "p_" + secrets.token_hex(6)
        with psycopg.connect(f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres", autocommit=True) as c:
            c.execute(f"CREATE ROLE {name} LOGIN PASSWORD '{password}'")
            c.execute(f"CREATE DATABASE {name} OWNER {name}")
            hba = self.data / "pg_hba.conf"
            hba.write_text(f"host all {name} 127.0.0.1/32 scram-sha-256\n" + hba.read_text())
            c.execute("SELECT pg_reload_conf()")
        for _ in range(200):  # the reload is asynchronous: wait until the role is asked for its password
            try:
                psycopg.connect(f"host=127.0.0.1 port={self.port} user={name} dbname={name} password=").close()
            except psycopg.OperationalError:
                break
            time.sleep(0.05)
        return f"postgresql://{name}@127.0.0.1:{self.port}/{name}"

    def stop(self) -> None:
        try:
            self._run(str(self.bin_dir / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop")
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)


__all__ = ["PostgresCluster", "available"]
