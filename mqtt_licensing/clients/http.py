"""The one place HTTP failures become :class:`LicensingError`.

Every server answers errors as ``{"error": {"code": ..., "message": ...}}``; a
client turns that into the same exception type the rest of the system raises,
and a network failure into ``server_unreachable`` - the agent's state machine
only ever sees codes, never httpx exceptions.
"""

from __future__ import annotations

from typing import Any, Self

import httpx

from ..core.errors import ErrorCode, LicensingError
from ..core.signing import unb64

DEFAULT_TIMEOUT = 10.0


class JsonApiClient:
    """A small async JSON client; use as ``async with Client(url) as c: ...``."""

    def __init__(
        self,
        base_url: str,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        token: str | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.base_url = base_url.rstrip("/")
        self._http = httpx.AsyncClient(
            base_url=self.base_url, timeout=timeout, headers=headers, transport=transport, trust_env=False
        )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def call(self, method: str, path: str, json: Any = None, params: dict[str, Any] | None = None) -> Any:
        try:
            response = await self._http.request(method, path, json=json, params=params)
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
