"""``mqtt-licensing <args>`` run in this process: ``main([...])`` with its output captured.

    from tests.helpers.cli import run_cli

    done = run_cli("vendor", "issue", "--data", folder)      # a CompletedProcess: returncode, stdout, stderr
    done = run_cli("status", "--port", port, check=True)      # AssertionError with the output unless exit 0

A CLI run costs milliseconds here against about a second as a subprocess (interpreter start and
imports). Keep a subprocess where the process boundary is the point: signals, the exit status
seen by a shell, the environment or PATH, a long-running server.
"""

from __future__ import annotations

import contextlib
import io
import logging
import subprocess

from mqtt_licensing.cli.main import main


def run_cli(*args: object, check: bool = False) -> subprocess.CompletedProcess[str]:
    argv = [str(a) for a in args]
    out, err = io.StringIO(), io.StringIO()
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level  # the serve verbs set up logging for the process
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(argv)
    except SystemExit as exc:  # argparse: a usage error (2) or --help (0), as the process would exit
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        root.handlers[:], root.level = handlers, level
    done = subprocess.CompletedProcess(["mqtt-licensing", *argv], code, out.getvalue(), err.getvalue())
    if check and code != 0:
        raise AssertionError(f"{argv} exited {code}: {done.stdout}\n{done.stderr}")
    return done


__all__ = ["run_cli"]
