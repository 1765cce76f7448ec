"""What the vendor and floating server verbs share: the ``--data``/``--database-url`` options,
the data folder, database, port and files they name, checked before any work. Every mistake is a
:class:`~mqtt_licensing.core.errors.SetupError` (one line naming the fix, exit 2), and no verb
but the one that creates a folder ever writes a new signing key into a mistyped path."""

from __future__ import annotations

import argparse
import errno
import socket
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from ..core.errors import ErrorCode, LicensingError, SetupError

T = TypeVar("T")


def data_command(
    verbs: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    help_text: str,
    func: Any,
    *,
    kind: str,
    database: str,
) -> argparse.ArgumentParser:
    """A verb on a server's data folder; both servers spell the two options alike."""
    p = verbs.add_parser(name, help=help_text, description=help_text)
    p.add_argument("--data", required=True, type=Path, metavar="DIR", help=f"the {kind} data folder (keys, database)")
    database_options(p, database, func)
    return p


def database_options(p: argparse.ArgumentParser, database: str, func: Any) -> None:
    """``--database-url`` and ``--database-password-file``; ``func`` runs with the URL to open."""
    p.add_argument(
        "--database-url",
        "--db-url",
        dest="database_url",
        metavar="URL",
        help="the database, e.g. postgresql://user@host/db (remembered in DIR/database.url; "
        f"default: SQLite in DIR/{database}); its password from PGPASSWORD, ~/.pgpass or --database-password-file",
    )
    p.add_argument(
        "--database-password-file",
        type=Path,
        metavar="FILE",
        help="a file (mode 0600) holding the database password; kept with the URL in DIR/database.url",
    )
    p.set_defaults(func=lambda args: func(_with_database_password(args)))


def _with_database_password(args: argparse.Namespace) -> argparse.Namespace:
    """Refuse a password in ``--database-url`` (any local user reads it in /proc/<pid>/cmdline);
    put the one of ``--database-password-file`` into the URL instead."""
    import sqlalchemy as sa

    url, secret_file = args.database_url, args.database_password_file
    if not url:
        if secret_file:
            raise SetupError(ErrorCode.INVALID_FIELD, "--database-password-file needs --database-url")
        return args
    try:
        parsed = sa.engine.make_url(url)
    except sa.exc.ArgumentError:
        return args  # opening it says why, without echoing it
    if parsed.password:
        raise SetupError(
            ErrorCode.INVALID_FIELD,
            "a password in --database-url can be read by any local user (/proc/<pid>/cmdline): leave it out "
            "and set PGPASSWORD, use ~/.pgpass, or give --database-password-file FILE (mode 0600)",
        )
    if secret_file:
        try:
            mode, secret = secret_file.stat().st_mode, secret_file.read_text().strip("\r\n")
        except OSError as exc:
            raise SetupError(ErrorCode.INVALID_FIELD, f"cannot read {secret_file}: {exc.strerror}") from None
        if mode & 0o077:
            raise SetupError(ErrorCode.INVALID_FIELD, f"{secret_file} is readable by others: chmod 600 {secret_file}")
        args.database_url = parsed.set(password=secret).render_as_string(hide_password=False)
    return args


def require_data_folder(data: Path, key_name: str, *, kind: str, create: str) -> None:
    """Refuse a folder that is not a ``kind`` data folder; ``create`` is the command that makes one."""
    from ..servers._files import data_folder_problem

    problem = data_folder_problem(data, key_name)
    if problem is not None:
        raise SetupError(
            ErrorCode.NOT_A_DATA_FOLDER,
            f"{data} {problem}: it is not a {kind} data folder; check --data, or create one with: {create}",
        )


def open_data(data: Path, opener: Callable[[], T], *, db_url: str | None = None) -> T:
    """Open a server's data folder (and database) with every failure as one line naming the fix."""
    import sqlalchemy as sa

    try:
        return opener()
    except SetupError:
        raise
    except LicensingError as exc:  # an unreadable key, a database from a newer version
        raise SetupError(exc.code, exc.message) from exc  # its message names the file or URL already
    except OSError as exc:
        raise SetupError(
            ErrorCode.STATE_CORRUPT,
            f"{data}: cannot use {exc.filename or 'it'} ({exc.strerror}); fix its permissions or choose another --data",
        ) from exc
    except (sa.exc.SQLAlchemyError, ImportError) as exc:
        shown = _safe_url(db_url) if db_url else f"the database in {data}"
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SetupError(
            ErrorCode.INVALID_FIELD,
            f"cannot open {shown} ({detail}); check --db-url (e.g. postgresql+psycopg://user:pass@host/db)",
        ) from exc


def require_free_port(host: str, port: int) -> None:
    """Name a busy port before the HTTP server would log a traceback for it."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn's listener does
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise SetupError(
                    ErrorCode.PORT_IN_USE,
                    f"port {port} on {host} is in use: stop what holds it or choose another --port",
                ) from None
            raise SetupError(
                ErrorCode.INVALID_FIELD, f"cannot listen on {host}:{port} ({exc.strerror}); check --host and --port"
            ) from None


def read_text(source: str | Path, *, code: ErrorCode = ErrorCode.INVALID_FIELD) -> str:
    """A file named on the command line (``-``: stdin)."""
    if str(source) == "-":
        return sys.stdin.read()
    try:
        return Path(source).read_text()
    except OSError as exc:
        raise SetupError(code, f"cannot read {source}: {exc.strerror}; check the file name") from None


def write_out(text: str, out: str | Path | None) -> None:
    """Print ``text`` and, with ``--out``, write it to that file too: printed first, so a file
    that cannot be written loses nothing (a signed code is made only once)."""
    print(text, end="" if text.endswith("\n") else "\n")
    if out:
        try:
            Path(out).write_text(text)
        except OSError as exc:
            raise SetupError(
                ErrorCode.INVALID_FIELD, f"cannot write {out}: {exc.strerror}; the text is above, choose another --out"
            ) from None
        print(f"(also written to {out})", file=sys.stderr)


def _safe_url(url: str) -> str:
    import sqlalchemy as sa

    try:
        return sa.engine.make_url(url).render_as_string(hide_password=True)
    except sa.exc.ArgumentError:
        return "--db-url"  # unparsable: it may hold a password, so it is not echoed


def checked(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """An argparse type from a core parser: its one-line message becomes argparse's."""

    def check(text: str) -> Any:
        try:
            return parse(text)
        except LicensingError as exc:
            raise argparse.ArgumentTypeError(exc.message) from None

    return check


def parse_count(text: str) -> int:
    """A whole number from 1 (``--activations``, ``--seats``, ``--workers``...)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def workers_arg(p: argparse.ArgumentParser) -> None:
    """``--workers N`` of both ``serve`` verbs."""
    p.add_argument(
        "--workers",
        type=parse_count,
        default=1,
        metavar="N",
        help="serve with N processes sharing the port and the database (one per core; default 1)",
    )


__all__ = [
    "checked",
    "data_command",
    "database_options",
    "open_data",
    "parse_count",
    "read_text",
    "require_data_folder",
    "require_free_port",
    "workers_arg",
    "write_out",
]
