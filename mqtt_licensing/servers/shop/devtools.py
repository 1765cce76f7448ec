"""A Stripe-compatible server and an SMTP sink on 127.0.0.1, for the demo and the tests.

Both are real servers on real sockets (``localstripe`` and ``aiosmtpd``, installed with
the ``test`` extra), nothing here is used by the store in production.
"""

from __future__ import annotations

import email
import email.policy
import os
import secrets
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from email.message import EmailMessage
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import yaml

from ...core.errors import ErrorCode, LicensingError
from .._files import atomic_write
from .._run import free_port

if TYPE_CHECKING:
    from ..activation.service import ActivationService
    from .app import Shop

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
        on_message: Callable[[EmailMessage, Path | None], None] | None = None,
    ) -> None:
        self.port = port or free_port()
        self.messages: list[EmailMessage] = []
        self.folder = folder
        self.on_message = on_message
        self.logins: list[str] = []
        self._cond = threading.Condition()
        self._tls, self._login = tls_context, login
        self._controller: Any = None

    def received(self, msg: EmailMessage) -> None:
        path = None
        with self._cond:
            self.messages.append(msg)
            if self.folder is not None:
                self.folder.mkdir(parents=True, exist_ok=True)
                path = self.folder / f"{len(self.messages):03d}.eml"
                path.write_bytes(msg.as_bytes())
                os.chmod(path, 0o600)
            self._cond.notify_all()
        if self.on_message is not None:
            self.on_message(msg, path)

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


DEMO_CATALOGUE = {  # titles, kinds and rules come from the vendor catalogue; the store adds prices
    "currency": "usd",
    "products": [
        {"feature": "mqtt_server", "price": 50000, "description": "Full-featured MQTT server (one-time purchase)"},
        {"feature": "mqtt_server_support", "price": 10000, "description": "A year of support; buy one or several"},
        {"feature": "iot_bridge_snowflake", "price": 5, "unit": "1,000 messages",
         "description": "Connect to Snowflake (meter-based)"},
    ],
}  # fmt: skip


def print_mail(msg: EmailMessage, path: Path | None) -> None:
    """The demo's inbox is the console (and ``mail/*.eml``)."""
    text = "\n".join("    | " + line for line in body_of(msg).splitlines())
    print(f"\n[mail to {msg['To']}: {msg['Subject']!r}, saved as {path}]\n{text}\n", flush=True)


class DemoStore:
    """The store against localstripe and an SMTP sink: purchase -> e-mail -> activate on one machine."""

    def __init__(self, folder: Path, base_url: str) -> None:
        self.folder, self.base_url = folder, base_url
        self.stripe = LocalStripe(log_path=folder / "localstripe.log")
        self.smtp = SmtpSink(folder=folder / "mail", on_message=print_mail)

    def start(self, service: ActivationService) -> Shop:
        from .app import Shop
        from .config import load_config

        self.folder.mkdir(parents=True, exist_ok=True)
        self.stripe.start()
        self.smtp.start()
        webhook_secret = f"whsec_{secrets.token_hex(16)}"
        atomic_write(self.folder / "stripe-secret-key", f"sk_test_demo_{secrets.token_hex(8)}\n".encode())
        atomic_write(self.folder / "stripe-webhook-secret", f"{webhook_secret}\n".encode())
        config = {
            "base_url": self.base_url,
            "stripe": {
                "publishable_key": "pk_test_demo",
                "api_base": self.stripe.url,
                "secret_key_file": str(self.folder / "stripe-secret-key"),
                "webhook_secret_file": str(self.folder / "stripe-webhook-secret"),
            },
            "smtp": {"host": "127.0.0.1", "port": self.smtp.port, "security": "none", "from": "store@vendor.demo"},
            "catalogue": DEMO_CATALOGUE,
            "worker": {"interval": 1},
            # localstripe cannot finalize an invoice or mark one paid out of band (README, "The store").
            "invoices": {"receipts": False},
        }
        (self.folder / "shop.yaml").write_text("# written by `mqtt-licensing demo --store`\n" + yaml.safe_dump(config))
        shop = Shop.open(service, load_config(self.folder / "shop.yaml"))
        self.stripe.register_webhook(f"{self.base_url}/shop/stripe/webhook", webhook_secret)
        return shop

    def instructions(self, activate: str = "mqtt-licensing activate") -> str:
        return (
            f"\nThe store (payments go to localstripe at {self.stripe.url}, mail to {self.folder / 'mail'}):\n"
            f"  buy a license          : {self.base_url}/shop/\n"
            f"  customer portal        : {self.base_url}/shop/portal\n"
            "  test card              : 4242 4242 4242 4242, any future month/year, any CVC\n"
            "  3-D Secure test card   : 4000 0027 6000 3184 (confirm in the pop-up)\n"
            "  the key arrives here as an e-mail; save it as key.txt, then:\n"
            f"  {activate} --key-file key.txt\n"
            "  upgrade: the store's Upgrade page (with the key), then `mqtt-licensing reactivate`\n"
        )

    def stop(self) -> None:
        self.smtp.stop()
        self.stripe.stop()
