"""The one place HTTP failures become :class:`LicensingError`.

Every server answers errors as ``{"error": {"code": ..., "message": ...}}``; a
client turns that into the same exception type the rest of the system raises,
and a network failure into ``server_unreachable`` - the agent's state machine
only ever sees codes, never httpx exceptions.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Self

import httpx

from ..core.errors import ErrorCode, LicensingError
from ..core.signing import unb64

DEFAULT_TIMEOUT = 10.0

#: Set by a caller that wants to hear of each HTTP call before it goes out (the agent turns it
#: into a ``waiting_for_server`` event, so an operator hears of a slow server while waiting).
calling: ContextVar[Callable[[str], None] | None] = ContextVar("calling", default=None)


@dataclass(frozen=True)
class HttpOptions:
    """How a client reaches a server: whom it trusts for HTTPS and which proxy it goes through.

    ``ca_file``: PEM certificates to trust instead of the system roots (a private CA, pinned).
    ``proxy``: an HTTP(S) proxy URL (``http://proxy:3128``; HTTPS goes through it with CONNECT).
    ``proxy_from_env``: honour ``HTTPS_PROXY``/``HTTP_PROXY``/``NO_PROXY``; off unless asked for, so
    a variable meant for something else on the host never reroutes license traffic."""

    timeout: float = DEFAULT_TIMEOUT
    ca_file: str | None = None
    proxy: str | None = None
    proxy_from_env: bool = False

    def ssl_context(self) -> ssl.SSLContext:
        """The system roots (not a bundled list), or only ``ca_file``; a file that does not load is
        ``invalid_field`` naming it."""
        try:
            return ssl.create_default_context(cafile=self.ca_file)
        except (OSError, ssl.SSLError) as exc:
            reason = getattr(exc, "strerror", None) or getattr(exc, "reason", None) or str(exc)
            raise LicensingError(ErrorCode.INVALID_FIELD, f"ca_file {self.ca_file}: {reason}") from None


class JsonApiClient:
    """A small async JSON client; use as ``async with Client(url) as c: ...``."""

    def __init__(
        self,
        base_url: str,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        token: str | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        options: HttpOptions | None = None,
    ) -> None:
        """``options`` (TLS trust, proxy) override ``timeout`` when given."""
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        options = options or HttpOptions(timeout=timeout)
        self.base_url = base_url.rstrip("/")
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            timeout=options.timeout,
            headers=headers,
            transport=transport,
            verify=options.ssl_context() if self.base_url.startswith("https:") else True,
            proxy=options.proxy,
            trust_env=options.proxy_from_env,
        )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def call(self, method: str, path: str, json: Any = None, params: dict[str, Any] | None = None) -> Any:
        notify = calling.get()
        if notify is not None:
            notify(self.base_url)
        try:
            response = await self._http.request(method, path, json=json, params=params)
        except httpx.TimeoutException as exc:
            limit = self._http.timeout.read
            within = f" within {limit:g} s" if limit else ""
            raise LicensingError(
                ErrorCode.SERVER_UNREACHABLE,
                f"{self.base_url} did not answer{within} ({type(exc).__name__}): "
                "the server is slow or stuck; try again later",
            ) from None
        except httpx.HTTPError as exc:
            raise LicensingError(
                ErrorCode.SERVER_UNREACHABLE, f"cannot reach {self.base_url}: {type(exc).__name__}: {exc}".rstrip(": ")
            ) from None
        return parse_response(response)


def parse_response(response: httpx.Response) -> Any:
    try:
        data = response.json()
    except ValueError:
        raise LicensingError(
            ErrorCode.BAD_RESPONSE, f"the server answered HTTP {response.status_code} with a body that is not JSON"
        ) from None
    if response.is_success:
        return data
    error = data.get("error") if isinstance(data, dict) else None
    if isinstance(error, dict) and isinstance(error.get("code"), str):
        try:
            code = ErrorCode(error["code"])
        except ValueError:
            code = ErrorCode.BAD_RESPONSE
        evidence = data.get("evidence")
        try:
            blob = unb64(evidence) if isinstance(evidence, str) else None
        except LicensingError:
            blob = None  # unreadable evidence is no evidence
        raise LicensingError(code, str(error.get("message", "")), evidence=blob)
    raise LicensingError(ErrorCode.BAD_RESPONSE, f"the server answered HTTP {response.status_code}")


def binary_field(data: Any, name: str) -> bytes:
    """A base64 field of a JSON answer (a certificate, a lease) as bytes, or ``bad_response``."""
    if not isinstance(data, dict) or not isinstance(data.get(name), str):
        raise LicensingError(ErrorCode.BAD_RESPONSE, f"the server's answer carries no {name}")
    try:
        return unb64(data[name])
    except LicensingError:
        raise LicensingError(ErrorCode.BAD_RESPONSE, f"the server's {name} is not base64") from None
