"""The portal-by-account pages (:mod:`.accounts`): ask for a code by address, sign in with the
code or the mailed link, the account page (``/portal/account``, drawn by :mod:`.portal_web`), a key
shown again, Stripe's billing portal.

The answer to "send me a code" is the same redirect for every well-formed address, and the mail
goes out after it (a background task), so neither the page nor its timing says whether the
address bought anything. A mailed link opens a page with a button that signs in (a POST): mail
scanners that fetch links do not use it up.
"""

from __future__ import annotations

from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from ...core.errors import LicensingError
from .accounts import NOT_KEPT
from .portal import CODE_TTL
from .portal_web import (
    EMAIL_COOKIE,
    home,
    license_page,
    set_cookie,
    signed_in_response,
    signin_page,
    status_of,
    target,
)
from .state import shop_state
from .web import form, page


def _client(request: Request) -> str:
    return request.client.host if request.client is not None else "unknown"


async def send_code(request: Request) -> Response:
    email = str((await form(request)).get("email", "")).strip()
    try:
        job = await run_in_threadpool(shop_state(request).accounts.request_code, email, _client(request))
    except LicensingError as exc:  # a malformed address or the hourly limit: said beside the form
        return signin_page(request, status_of(exc), email=email, error=exc.message, error_code=str(exc.code))
    response = RedirectResponse(
        f"{request.scope.get('root_path', '')}/portal?asked=1",
        status_code=303,
        background=BackgroundTask(run_in_threadpool, job),
    )
    set_cookie(request, response, EMAIL_COOKIE, email, CODE_TTL)
    return response


async def login(request: Request) -> Response:
    data = await form(request)
    email = str(data.get("email", "") or request.cookies.get(EMAIL_COOKIE, "")).strip()
    try:
        token, _csrf = await run_in_threadpool(shop_state(request).accounts.sign_in, email, data.get("code"))
    except LicensingError as exc:  # the code form again: the same code can be retyped
        return signin_page(
            request,
            status_of(exc),
            mode="email_code",
            email=email,
            error=f"{exc.message}; type it again, or ask for a new code",
            error_code=str(exc.code),
        )
    return signed_in_response(request, token, "account")


async def link_page(request: Request) -> Response:
    token = request.query_params.get("token", "")[:100]
    return page(request, "portal_link.html", token=token)


async def link_login(request: Request) -> Response:
    data = await form(request)
    try:
        token, _csrf = await run_in_threadpool(shop_state(request).accounts.sign_in_link, data.get("token"))
    except LicensingError as exc:  # used or expired: the sign-in page, to ask for a new one
        return signin_page(request, status_of(exc), error=exc.message, error_code=str(exc.code))
    return signed_in_response(request, token, "account")


async def account(request: Request) -> Response:
    return await license_page(request)


async def show_key(request: Request) -> Response:
    """The question first (a POST without ``confirm``), then the key, logged on the license. The
    key is in this one answer only (no-store), never in a URL or a redirect."""
    data = await form(request)
    viewer, license_id = await target(request, data)
    back = home(request, viewer)
    if data.get("confirm") != "yes":
        return page(request, "portal_key.html", license_id=license_id, csrf=viewer.csrf, key=None, back=back)
    client = _client(request)
    license_id, key = await run_in_threadpool(shop_state(request).accounts.reveal_key, viewer, license_id, client)
    return page(
        request, "portal_key.html", license_id=license_id, key=key, not_kept=NOT_KEPT, csrf=viewer.csrf, back=back
    )


async def billing(request: Request) -> Response:
    data = await form(request)
    viewer, license_id = await target(request, data)
    back = f"{shop_state(request).orders.config.base_url}{home(request, viewer)}"
    try:
        url = await run_in_threadpool(shop_state(request).accounts.billing_portal, viewer, license_id, back)
    except LicensingError as exc:
        return await license_page(request, error=exc)
    return RedirectResponse(url, status_code=303)


ROUTES = [
    Route("/portal/email-code", send_code, methods=["POST"]),
    Route("/portal/email-login", login, methods=["POST"]),
    Route("/portal/link", link_page, methods=["GET"]),
    Route("/portal/link", link_login, methods=["POST"]),
    Route("/portal/account", account, methods=["GET"]),
    Route("/portal/key", show_key, methods=["POST"]),
    Route("/portal/billing", billing, methods=["POST"]),
]
