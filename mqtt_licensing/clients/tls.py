"""MQTT over TLS for the operator's clients, with the mosquitto clients' options."""

from __future__ import annotations

import ssl
from dataclasses import dataclass

from ..core.errors import ErrorCode, LicensingError


@dataclass(frozen=True)
class ClientTls:
    """MQTT over TLS, with the mosquitto clients' options: ``cafile`` (else the system's CAs),
    a client certificate and its key, and ``insecure`` (the server's name is not checked)."""

    cafile: str | None = None
    certfile: str | None = None
    keyfile: str | None = None
    insecure: bool = False

    def context(self) -> ssl.SSLContext:
        """The client context; an unreadable file is ``invalid_field`` naming it, before any traffic."""
        try:
            context = ssl.create_default_context(cafile=self.cafile)
            if self.certfile:
                context.load_cert_chain(self.certfile, self.keyfile)
        except (OSError, ssl.SSLError) as exc:
            files = ", ".join(f for f in (self.cafile, self.certfile, self.keyfile) if f)
            raise LicensingError(ErrorCode.INVALID_FIELD, f"TLS files ({files}) not usable: {exc}") from None
        if self.insecure:
            context.check_hostname = False
        return context


__all__ = ["ClientTls"]
