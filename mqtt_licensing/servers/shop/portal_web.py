"""The customer portal's pages. The session is a random token in an HttpOnly,
SameSite=Strict cookie (only its digest is stored); every action form also carries
the session's CSRF token.

No dead ends: a mistake (an unknown key, a wrong code, a bad request code) shows on the page
it was made on, with what was typed kept (never a code); a wrong code can be typed again until
its attempts run out. Every action that changes something answers with a redirect to a page
(POST-redirect-GET), so Back and Reload never send it twice."""

from __future__ import annotations

import hmac
import re
from typing import Any
from urllib.parse import urlencode

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from ...core.errors import ErrorCode, LicensingError
from .._http import HTTP_STATUS
from .accounts import Viewer
from .messages import support_text, when
from .portal import CODE_TTL, SESSION_TTL
from .state import shop_state
from .web import MAX_FORM_BYTES, form, page

COOKIE = "mqttlic_portal"
# The key a sign-in code was just sent for, so the code form that follows (a GET) can carry it.
SIGNIN_COOKIE = "mqttlic_signin"
EMAIL_COOKIE = "mqttlic_signin_email"  # the address a code was asked for, likewise
_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_MASKED = re.compile(r"^[^<>\s]{1,254}$")
DONE = {  # what a redirect after an action says, by the name in its query
    "freed": "Activation {id} was freed; the license can be activated again.",
    "handed_in": "Activation {id} freed.",
    "already_free": "Activation {id} was already free.",
}


def _root(request: Request) -> str:
    return str(request.scope.get("root_path", ""))


async def signed_in(request: Request, data: Any = None) -> tuple[str, Viewer]:
    """(token, viewer) of the request's session; a form must carry the session's csrf."""
    token = request.cookies.get(COOKIE, "")
    viewer = await run_in_threadpool(shop_state(request).accounts.viewer, token)
    if data is not None and not hmac.compare_digest(str(data.get("csrf", "")), viewer.csrf):
        raise LicensingError(ErrorCode.UNAUTHORIZED, "the form expired; reload the page and try again")
    return token, viewer


async def target(request: Request, data: Any) -> tuple[Viewer, str]:
    """The viewer and the license a form acts on: a key session's own, or one of the account's."""
    _token, viewer = await signed_in(request, data)
    return viewer, await run_in_threadpool(shop_state(request).accounts.check, viewer, data.get("license_id"))


def home(request: Request, viewer: Viewer) -> str:
    return f"{_root(request)}/portal/{'account' if viewer.email else 'license'}"


def status_of(exc: LicensingError) -> int:
    return HTTP_STATUS.get(exc.code, 400)


def set_cookie(request: Request, response: Response, name: str, value: str, max_age: int) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path=f"{_root(request)}/portal",
        httponly=True,
        samesite="strict",
        secure=shop_state(request).secure_cookie,
    )


async def license_page(request: Request, *, error: LicensingError | None = None) -> Response:
    """The signed-in page: the license of a key session, every license of an address."""
    _token, viewer = await signed_in(request)
    accounts = shop_state(request).accounts
    licenses = [
        await run_in_threadpool(accounts.license_view, lid)
        for lid in await run_in_threadpool(accounts.license_ids, viewer)
    ]
    done, activation = request.query_params.get("done", ""), request.query_params.get("id", "")
    notice = DONE[done].format(id=activation) if done in DONE and _ID.match(activation) else ""
    return page(
        request,
        "portal_account.html" if viewer.email else "portal_license.html",
        status_of(error) if error else 200,
        licenses=licenses,
        lic=licenses[0] if licenses else None,
        viewer=viewer,
        csrf=viewer.csrf,
        notice=notice,
        error=error.message if error else "",
        error_code=str(error.code) if error else "",
        fmt=when,
        support=support_text,
    )


def _done(request: Request, viewer: Viewer, what: str, activation_id: str) -> Response:
    query = urlencode({"done": what, "id": activation_id})
    return RedirectResponse(f"{home(request, viewer)}?{query}", status_code=303)


def signin_page(request: Request, status: int = 200, **context: Any) -> Response:
    """The sign-in page: by address or by key; after a code was sent, the code form of that way."""
    context.setdefault("mode", "start")
    for name in ("email", "license_key", "masked_email", "error", "error_code"):
        context.setdefault(name, "")
    return page(request, "portal_signin.html", status, **context)


async def signin(request: Request) -> Response:
    if request.cookies.get(COOKIE):  # signed in already: the portal link goes to the licenses
        try:
            _token, viewer = await signed_in(request)
            return RedirectResponse(home(request, viewer), status_code=303)
        except LicensingError:
            pass  # the session ended: sign in again
    key, email = request.cookies.get(SIGNIN_COOKIE, ""), request.cookies.get(EMAIL_COOKIE, "")
    sent_to = request.query_params.get("sent", "")
    if key and _MASKED.match(sent_to):
        return signin_page(request, mode="key_code", masked_email=sent_to, license_key=key)
    if email and request.query_params.get("asked"):
        return signin_page(request, mode="email_code", email=email)
    return signin_page(request)


async def send_code(request: Request) -> Response:
    key = str((await form(request)).get("license_key", "")).strip()
    try:
        masked = await run_in_threadpool(shop_state(request).portal.request_code, key)
    except LicensingError as exc:  # the key form again, the key kept, the reason beside it
        return signin_page(request, status_of(exc), license_key=key, error=exc.message, error_code=str(exc.code))
    response = RedirectResponse(f"{_root(request)}/portal?{urlencode({'sent': masked})}", status_code=303)
    set_cookie(request, response, SIGNIN_COOKIE, key, CODE_TTL)
    return response


async def login(request: Request) -> Response:
    shop = shop_state(request)
    data = await form(request)
    key = str(data.get("license_key", "") or request.cookies.get(SIGNIN_COOKIE, "")).strip()
    try:
        token, _csrf = await run_in_threadpool(shop.portal.sign_in, key, data.get("code"))
    except LicensingError as exc:  # the code form again: the same code can be retyped
        sent_to = request.query_params.get("sent", "") or str(data.get("sent", ""))
        return signin_page(
            request,
            status_of(exc),
            mode="key_code",
            masked_email=sent_to if _MASKED.match(sent_to) else "the purchase address",
            license_key=key,
            error=f"{exc.message}; type it again, or ask for a new code",
            error_code=str(exc.code),
        )
    return signed_in_response(request, token, "license")


def signed_in_response(request: Request, token: str, where: str) -> Response:
    response = RedirectResponse(f"{_root(request)}/portal/{where}", status_code=303)
    set_cookie(request, response, COOKIE, token, SESSION_TTL)
    for name in (SIGNIN_COOKIE, EMAIL_COOKIE):
        response.delete_cookie(name, path=f"{_root(request)}/portal")
    return response


async def show(request: Request) -> Response:
    return await license_page(request)


async def free(request: Request) -> Response:
    data = await form(request)
    viewer, license_id = await target(request, data)
    if data.get("confirm") != "yes":  # the question first: which broker, and that it must be gone
        lic = await run_in_threadpool(shop_state(request).portal.overview, license_id)
        asked = next((a for a in lic["activations"] if a["id"] == data.get("activation_id") and a["active"]), None)
        if asked is not None:
            back = home(request, viewer)
            return page(request, "portal_free.html", lic=lic, act=asked, csrf=viewer.csrf, fmt=when, back=back)
    try:
        freed = await run_in_threadpool(shop_state(request).portal.free, license_id, data.get("activation_id"))
    except LicensingError as exc:
        return await license_page(request, error=exc)
    return _done(request, viewer, "freed", str(freed["id"]))


async def offline_activate(request: Request) -> Response:
    data = await form(request, files=1)
    _viewer, license_id = await target(request, data)
    portal = shop_state(request).portal
    code = str(data.get("request_code") or "").strip()
    upload = data.get("request_file")
    if not code and isinstance(upload, UploadFile):  # the request code as the file the broker wrote
        code = (await upload.read(MAX_FORM_BYTES)).decode("utf-8", errors="replace")
    try:
        result = await run_in_threadpool(portal.offline_activate, license_id, code)
    except LicensingError as exc:  # the page again, the reason beside the form (the code is not kept)
        return await license_page(request, error=exc)
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
    viewer, license_id = await target(request, data)
    try:
        result = await run_in_threadpool(shop_state(request).portal.offline_deactivate, license_id, data.get("code"))
    except LicensingError as exc:
        return await license_page(request, error=exc)
    return _done(request, viewer, "handed_in" if result.freed else "already_free", result.activation_id)


async def logout(request: Request) -> Response:
    data = await form(request)
    token, _viewer = await signed_in(request, data)
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
