"""The customer portal's pages. The session is a random token in an HttpOnly,
SameSite=Strict cookie (only its digest is stored); every action form also carries
the session's CSRF token."""

from __future__ import annotations

import hmac
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from ...core.errors import ErrorCode, LicensingError
from .messages import support_text, when
from .portal import SESSION_TTL
from .state import shop_state
from .web import form, page

COOKIE = "mqttlic_portal"


def _root(request: Request) -> str:
    return str(request.scope.get("root_path", ""))


async def _signed_in(request: Request, data: Any = None) -> tuple[str, str, str]:
    """(token, license id, csrf) of the request's session; a form must carry the session's csrf."""
    token = request.cookies.get(COOKIE, "")
    license_id, csrf = await run_in_threadpool(shop_state(request).portal.session, token)
    if data is not None and not hmac.compare_digest(str(data.get("csrf", "")), csrf):
        raise LicensingError(ErrorCode.UNAUTHORIZED, "the form expired; reload the page and try again")
    return token, license_id, csrf


async def _license_page(request: Request, notice: str = "", status_code: int = 200) -> Response:
    _token, license_id, csrf = await _signed_in(request)
    lic = await run_in_threadpool(shop_state(request).portal.overview, license_id)
    return page(
        request, "portal_license.html", status_code, lic=lic, csrf=csrf, notice=notice, fmt=when, support=support_text
    )


async def signin(request: Request) -> Response:
    return page(request, "portal_signin.html", masked_email=None)


async def send_code(request: Request) -> Response:
    key = str((await form(request)).get("license_key", "")).strip()
    masked = await run_in_threadpool(shop_state(request).portal.request_code, key)
    return page(request, "portal_signin.html", masked_email=masked, license_key=key)


async def login(request: Request) -> Response:
    shop = shop_state(request)
    data = await form(request)
    token, _csrf = await run_in_threadpool(
        shop.portal.sign_in, str(data.get("license_key", "")).strip(), data.get("code")
    )
    response = RedirectResponse(f"{_root(request)}/portal/license", status_code=303)
    response.set_cookie(
        COOKIE,
        token,
        max_age=SESSION_TTL,
        path=f"{_root(request)}/portal",
        httponly=True,
        samesite="strict",
        secure=shop.secure_cookie,
    )
    return response


async def show(request: Request) -> Response:
    return await _license_page(request)


async def free(request: Request) -> Response:
    data = await form(request)
    _token, license_id, _csrf = await _signed_in(request, data)
    act = await run_in_threadpool(shop_state(request).portal.free, license_id, data.get("activation_id"))
    return await _license_page(request, f"Activation {act['id']} was freed; the license can be activated again.")


async def offline_activate(request: Request) -> Response:
    data = await form(request)
    _token, license_id, _csrf = await _signed_in(request, data)
    portal = shop_state(request).portal
    result = await run_in_threadpool(portal.offline_activate, license_id, data.get("request_code"))
    return Response(
        result.usage_license,
        media_type="text/plain",
        headers={
            "Content-Disposition": f'attachment; filename="usage-license-{result.activation_id}.txt"',
            "Cache-Control": "no-store",
        },
    )


async def offline_deactivate(request: Request) -> Response:
    data = await form(request)
    _token, license_id, _csrf = await _signed_in(request, data)
    result = await run_in_threadpool(shop_state(request).portal.offline_deactivate, license_id, data.get("code"))
    what = "freed" if result.freed else "was already free"
    return await _license_page(request, f"Activation {result.activation_id} {what}.")


async def logout(request: Request) -> Response:
    data = await form(request)
    token, _license_id, _csrf = await _signed_in(request, data)
    await run_in_threadpool(shop_state(request).portal.sign_out, token)
    response = RedirectResponse(f"{_root(request)}/portal", status_code=303)
    response.delete_cookie(COOKIE, path=f"{_root(request)}/portal")
    return response


ROUTES = [
    Route("/portal", signin, methods=["GET"]),
    Route("/portal/code", send_code, methods=["POST"]),
    Route("/portal/login", login, methods=["POST"]),
    Route("/portal/license", show, methods=["GET"]),
    Route("/portal/free", free, methods=["POST"]),
    Route("/portal/offline-activate", offline_activate, methods=["POST"]),
    Route("/portal/offline-deactivate", offline_deactivate, methods=["POST"]),
    Route("/portal/logout", logout, methods=["POST"]),
]
