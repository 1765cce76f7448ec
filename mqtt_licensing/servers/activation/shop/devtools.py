"""A Stripe-compatible server and an SMTP sink on 127.0.0.1, for the demo and the tests.

Both are real servers on real sockets (``localstripe`` and ``aiosmtpd``, installed with
the ``test`` extra), nothing here is used by the store in production.
"""

from __future__ import annotations

import email
import email.policy
import os
import ssl
import subprocess
import sys
import threading
import time
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx

from ....core.errors import ErrorCode, LicensingError
from ...common import free_port

# localstripe pickles its whole state to /tmp/localstripe.pickle after each change, one file
# for every instance on the machine; this process keeps its state in memory only.
_LOCALSTRIPE = (
    "import sys, localstripe.resources as r\n"
    "r.Store.dump_to_disk = lambda self: None\n"
    "sys.argv = ['localstripe', '--from-scratch', '--port', sys.argv[1]]\n"
    "from localstripe.server import start\n"
    "start()\n"
)


def _missing(what: str) -> LicensingError:
    return LicensingError(ErrorCode.BAD_REQUEST, f"{what} is not installed: pip install -e '.[test]'")


class LocalStripe:
    """``localstripe`` in a subprocess on a free port; ``url`` is what ``stripe.api_base`` takes."""

    def __init__(self, port: int = 0, log_path: Path | None = None) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30) -> LocalStripe:
        try:
            import localstripe  # noqa: F401
        except ImportError:
            raise _missing("localstripe") from None
        out = self.log_path.open("ab") if self.log_path else subprocess.DEVNULL
        self.process = subprocess.Popen(
            [sys.executable, "-c", _LOCALSTRIPE, str(self.port)], stdout=out, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"localstripe exited with {self.process.returncode}")
            try:
                if httpx.get(f"{self.url}/js.stripe.com/v3/", timeout=1, trust_env=False).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError("localstripe did not start")

    def register_webhook(self, url: str, secret: str, name: str = "shop") -> None:
        """Make localstripe deliver every event to ``url``, signed with ``secret`` like Stripe does."""
        r = httpx.post(f"{self.url}/_config/webhooks/{name}", data={"url": url, "secret": secret}, trust_env=False)
        r.raise_for_status()

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.process = None

    def __enter__(self) -> LocalStripe:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


class _Handler:
    def __init__(self, sink: SmtpSink) -> None:
        self.sink = sink

    async def handle_DATA(self, _server: Any, _session: Any, envelope: Any) -> str:
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(msg, EmailMessage)
        self.sink.received(msg)
        return "250 OK"


class SmtpSink:
    """An SMTP server (aiosmtpd) that keeps what it receives; optionally STARTTLS and a login.

    ``messages`` in arrival order; :meth:`wait` blocks until a message matches."""

    def __init__(
        self,
        port: int = 0,
        *,
        tls_context: ssl.SSLContext | None = None,
        login: tuple[str, str] | None = None,
        folder: Path | None = None,
    ) -> None:
        self.port = port or free_port()
        self.messages: list[EmailMessage] = []
        self.folder = folder
        self.logins: list[str] = []
        self._cond = threading.Condition()
        self._tls, self._login = tls_context, login
        self._controller: Any = None

    def received(self, msg: EmailMessage) -> None:
        with self._cond:
            self.messages.append(msg)
            if self.folder is not None:
                self.folder.mkdir(parents=True, exist_ok=True)
                path = self.folder / f"{len(self.messages):03d}.eml"
                path.write_bytes(msg.as_bytes())
                os.chmod(path, 0o600)
            self._cond.notify_all()

    def _authenticate(self, _server: Any, _session: Any, _envelope: Any, _mechanism: str, auth_data: Any) -> Any:
        from aiosmtpd.smtp import AuthResult, LoginPassword

        ok = (
            self._login is not None
            and isinstance(auth_data, LoginPassword)
            and (auth_data.login.decode(), auth_data.password.decode()) == self._login
        )
        if ok:
            self.logins.append(auth_data.login.decode())
        return AuthResult(success=ok)

    def start(self) -> SmtpSink:
        try:
            from aiosmtpd.controller import Controller
        except ImportError:
            raise _missing("aiosmtpd") from None
        options: dict[str, Any] = {}
        if self._tls is not None:
            options.update(tls_context=self._tls, require_starttls=True)
        if self._login is not None:
            options.update(authenticator=self._authenticate, auth_required=True, auth_require_tls=True)
        self._controller = Controller(_Handler(self), hostname="127.0.0.1", port=self.port, **options)
        self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def wait(self, predicate: Any = None, timeout: float = 20, count: int = 1) -> list[EmailMessage]:
        """The first ``count`` messages matching ``predicate`` (all if None), waiting for them."""

        def matching() -> list[EmailMessage]:
            return [m for m in self.messages if predicate is None or predicate(m)]

        with self._cond:
            if not self._cond.wait_for(lambda: len(matching()) >= count, timeout):
                raise TimeoutError(f"expected {count} matching e-mail(s), got {len(matching())}")
            return matching()[:count]

    def __enter__(self) -> SmtpSink:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def body_of(msg: EmailMessage) -> str:
    part = msg.get_body(preferencelist=("plain",))
    assert part is not None
    return str(part.get_content())
