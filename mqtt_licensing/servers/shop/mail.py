"""E-mail over SMTP: the license key after a purchase, receipts, reminders, portal codes.

STARTTLS (or implicit TLS) with certificate verification before any credential is
sent. Nothing here logs a message body: a key or a sign-in code exists only in the
message handed to the SMTP server.
"""

from __future__ import annotations

import re
import smtplib
import ssl
from email.message import EmailMessage
from typing import Any

from ...core.errors import ErrorCode, LicensingError
from .config import SmtpSettings


class MailError(LicensingError):
    def __init__(self, message: str) -> None:
        super().__init__(ErrorCode.SERVER_UNREACHABLE, message)


class Mailer:
    def __init__(self, settings: SmtpSettings) -> None:
        self.settings = settings

    def _tls(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self.settings.ca_file)

    def send(self, to: str, subject: str, body: str, *, attachment: tuple[str, str] | None = None) -> None:
        """Hand one message to the SMTP server; raises :class:`MailError` (never with the body)."""
        s = self.settings
        msg = EmailMessage()
        msg["From"], msg["To"], msg["Subject"] = s.sender, to, subject
        msg.set_content(body)
        if attachment is not None:
            name, text = attachment
            msg.add_attachment(text.encode(), maintype="text", subtype="plain", filename=name)
        try:
            if s.security == "ssl":
                smtp: smtplib.SMTP = smtplib.SMTP_SSL(s.host, s.port, timeout=s.timeout, context=self._tls())
            else:
                smtp = smtplib.SMTP(s.host, s.port, timeout=s.timeout)
            with smtp:
                if s.security == "starttls":
                    smtp.starttls(context=self._tls())
                if s.username:
                    smtp.login(s.username, s.password or "")
                smtp.send_message(msg)
        except (OSError, smtplib.SMTPException) as exc:
            # The exception text names the server and the failure, never the message.
            raise MailError(f"cannot send e-mail through {s.host}:{s.port}: {type(exc).__name__}: {exc}") from None


_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]+$")


def check_email(address: Any) -> str:
    """The address as typed, trimmed; BAD_REQUEST for anything that is not one."""
    if not isinstance(address, str) or len(address) > 254 or not _EMAIL.match(address.strip()):
        raise LicensingError(ErrorCode.BAD_REQUEST, "enter a valid e-mail address")
    return address.strip()


def mask_email(address: str) -> str:
    """j***@example.com: enough for the customer to recognise their address, not to learn it."""
    local, _, domain = address.partition("@")
    return f"{local[:1]}***@{domain}"
