"""The store's pages and the Stripe webhook: server-rendered Starlette routes, Jinja2 templates.

Mounted under ``/shop`` on the activation server. Pages answer HTML (errors as an
error page with the code); ``/orders/{id}/pay`` and the webhook answer JSON. Each endpoint is a
module-level function over the store's :class:`.state.ShopState`.
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.templating import Jinja2Templates

from ...core.errors import ErrorCode, LicensingError
from .._http import HTTP_STATUS, MAX_BODY_BYTES, error_response, read_json
from .by_invoice import offered
from .catalogue import Kind, format_money
from .config import StripeSettings
from .lineup import named
from .messages import apply_steps, day, describe_line, support_text
from .state import shop_state
from .store import Order

TEMPLATES = Jinja2Templates(directory=str(Path(__file__).with_name("templates")))
MAX_FORM_BYTES = 64 * 1024


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def content_policy(settings: StripeSettings) -> str:
    """The pages' Content-Security-Policy: our own scripts by nonce, and Stripe.js with the hosts
    it talks to (Stripe's, or the test server's); nothing else runs, frames or receives data."""
    js = _origin(settings.js_url)
    api = _origin(settings.api_base) if settings.api_base else "https://api.stripe.com"
    frames = js if settings.api_base else f"{js} https://hooks.stripe.com"
    return (
        f"default-src 'self'; script-src 'nonce-{{nonce}}' {js}; connect-src 'self' {api}; frame-src {frames}; "
        "img-src 'self' data: https:; style-src 'self' 'unsafe-inline'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    )


def page(request: Request, name: str, status_code: int = 200, **context: Any) -> Response:
    context.setdefault("refresh", None)
    context["seller"] = shop_state(request).seller
    context["base"] = str(request.scope.get("root_path", "")).rstrip("/")
    context["nonce"] = nonce = secrets.token_urlsafe(16)
    response = TEMPLATES.TemplateResponse(request, name, context, status_code=status_code)
    response.headers["Content-Security-Policy"] = shop_state(request).content_policy.replace("{nonce}", nonce)
    response.headers["Cache-Control"] = "no-store"  # pages may show keys in forms, codes, terms
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


def error_page(request: Request, exc: LicensingError) -> Response:
    return page(request, "error.html", HTTP_STATUS.get(exc.code, 400), code=str(exc.code), message=exc.message)


async def form(request: Request, *, files: int = 0) -> Any:
    if int(request.headers.get("content-length") or 0) > MAX_FORM_BYTES:
        raise LicensingError(ErrorCode.PAYLOAD_TOO_LARGE, f"the form is over {MAX_FORM_BYTES} bytes")
    return await request.form(max_files=files, max_fields=100)


def _product_view(product: Any, currency: str) -> dict[str, Any]:
    if product.kind is Kind.METERED:
        price = f"{format_money(product.price, currency)} per {product.unit or 'unit'} (billed monthly on usage)"
    elif product.kind is Kind.PER_YEAR:
        price = f"{format_money(product.price, currency)} per year"
    else:
        price = f"{format_money(product.price, currency)} once"
    return {
        "id": product.id,
        "name": product.name,
        "kind": product.kind.value,
        "description": product.description,
        "includes": product.includes,
        "price_text": price,
    }


def _root(request: Request) -> str:
    return str(request.scope.get("root_path", ""))


async def offers_page(
    request: Request,
    key: str | None,
    *,
    error: str = "",
    chosen: dict[str, int] | None = None,
    email: Any = "",
    status: int = 200,
    error_code: str = "",
    country: str = "",
    postal_code: str = "",
) -> Response:
    """The store page: a new license's offers, or (with a key) an upgrade's; a refused order
    comes back here with its message inline and its choices kept."""
    orders = shop_state(request).orders
    catalogue = await run_in_threadpool(orders.offers_now)
    lic = await run_in_threadpool(orders.license_for_key, key) if key else None
    products = catalogue.offers(tuple(lic["features"]) if lic is not None else None)
    chosen = chosen or {}
    offers = [
        {**_product_view(p, catalogue.currency), "checked": p.id in chosen, "years": chosen.get(p.id, 1)}
        for p in products
    ]
    view = None
    if lic is not None:
        view = {
            "id": lic["id"],
            "features": named(lic["features"], catalogue.definitions),
            "support_until": lic["support_until"],
            "support_until_text": support_text(lic["support_until"]),
        }
    context = {"offers": offers, "license": view, "license_key": key or "", "email": email or "", "error": error}
    context["error_code"] = error_code
    rates = shop_state(request).orders.config.tax
    context.update(countries=sorted(rates.rates), stripe_tax=rates.stripe, tax_label=rates.label)
    context.update(country=country, postal_code=postal_code)
    return page(request, "catalogue.html", status, **context)


async def index(request: Request) -> Response:
    return await offers_page(request, None)


async def upgrade_form(request: Request) -> Response:
    return page(request, "upgrade.html", license_id=request.query_params.get("license", "")[:64], license_key="")


def _key_refused(request: Request, exc: LicensingError, license_id: str, key: str) -> Response:
    """The key form again with the reason beside it and the key as typed, to correct."""
    return page(
        request,
        "upgrade.html",
        HTTP_STATUS.get(exc.code, 400),
        license_id=license_id[:64],
        license_key=key,
        error=exc.message,
        error_code=str(exc.code),
    )


async def upgrade_offers(request: Request) -> Response:
    shop = shop_state(request)
    data = await form(request)
    key = str(data.get("license_key", "")).strip()
    wanted = str(data.get("license", ""))
    try:
        lic = await run_in_threadpool(shop.orders.license_for_key, key)
        if wanted and wanted != lic["id"]:
            raise LicensingError(ErrorCode.BAD_REQUEST, f"this key belongs to another license than {wanted}")
    except LicensingError as exc:
        return _key_refused(request, exc, wanted, key)
    return await offers_page(request, key)


async def create_order(request: Request) -> Response:
    orders = shop_state(request).orders
    data = await form(request)
    choice: dict[str, int] = {}
    key = str(data.get("license_key", "")).strip() or None
    try:
        for pid in data.getlist("product"):
            try:
                choice[str(pid)] = int(str(data.get(f"years_{pid}", "1")))
            except ValueError:
                choice[str(pid)] = 1
                raise LicensingError(ErrorCode.BAD_REQUEST, "years must be a whole number") from None
        order = await run_in_threadpool(
            lambda: orders.create(
                email=data.get("email"),
                choice=choice,
                license_key=key,
                country=data.get("country"),
                postal_code=data.get("postal_code"),
            )
        )
    except LicensingError as exc:
        if exc.code != ErrorCode.BAD_REQUEST and key is not None:  # a wrong key, a revoked license
            return _key_refused(request, exc, "", key)
        email = data.get("email")
        status = HTTP_STATUS.get(exc.code, 400)
        return await offers_page(
            request,
            key,
            error=exc.message,
            chosen=choice,
            email=email,
            status=status,
            error_code=str(exc.code),
            country=str(data.get("country") or "")[:2],
            postal_code=str(data.get("postal_code") or "")[:20],
        )
    return RedirectResponse(f"{_root(request)}/orders/{order.id}", status_code=303)


async def show_order(request: Request) -> Response:
    shop = shop_state(request)
    order: Order = await run_in_threadpool(shop.orders.get, request.path_params["order_id"])
    waiting = False
    if order.state == "pending" and order.stripe_payment_intent is not None and not order.last_error:
        # Taken or being taken: wait for the webhook. Anything else (3-D Secure abandoned,
        # declined): the pay form again.
        intent = await run_in_threadpool(shop.orders.gateway.intent, order.stripe_payment_intent)
        waiting = intent.status in ("succeeded", "processing")
    apply_text = ""
    if order.kind == "upgrade" and order.state == "fulfilled" and order.license_id is not None:
        lic = await run_in_threadpool(shop.orders.service.get_license, order.license_id)
        apply_text = apply_steps(lic["model"])
    base = _root(request)
    return page(
        request,
        "order.html",
        apply_text=apply_text,
        number=shop.seller.order_number(order.number),
        ordered_on=day(order.created_at),
        order=order,
        lines=[_line_view(ln, order.currency) for ln in order.lines],
        total=format_money(order.amount, order.currency),
        subtotal=format_money(order.amount - order.tax, order.currency),
        tax_text=shop.orders.config.tax.describe(order.country) if order.country else "",
        tax=format_money(order.tax, order.currency),
        waiting=waiting,
        refresh=2 if waiting or order.state == "paid" else None,
        js_url=shop.stripe.js_url,
        publishable_key=shop.stripe.publishable_key,
        pay_url=f"{base}/orders/{order.id}/pay",
        order_url=f"{base}/orders/{order.id}",
        invoice_offered=offered(shop.orders.config, order) and order.stripe_payment_intent is None,
        invoice_action=f"{base}/orders/{order.id}/invoice",
        due_days=shop.orders.config.invoices.days_until_due,
        portal_url=f"{base}/portal",
    )


def _line_view(line: dict[str, Any], currency: str) -> dict[str, Any]:
    return {
        "name": line["name"],
        "kind": line["kind"],
        "quantity": line["quantity"],
        "price_text": describe_line(line, currency).split(": ", 1)[1],
    }


async def pay(request: Request) -> Response:
    shop = shop_state(request)
    try:
        data = await read_json(request)
        result = await run_in_threadpool(shop.orders.pay, request.path_params["order_id"], data.get("token"))
    except LicensingError as exc:
        return error_response(exc)
    if result.get("state") == "paid":
        shop.wake()
    return JSONResponse(result)


async def pay_by_invoice(request: Request) -> Response:
    """POST-redirect-GET: the order page then shows the invoice sent (or the reason it was not)."""
    shop = shop_state(request)
    order_id = request.path_params["order_id"]
    data = await form(request)
    try:
        await run_in_threadpool(shop.orders.pay_by_invoice, order_id, data.get("po_number"))
    except LicensingError as exc:
        if exc.code not in (ErrorCode.PAYMENT_PROVIDER_ERROR, ErrorCode.PAYMENT_DECLINED):
            raise  # refused before Stripe was asked (too small, expired): said on its own page, as before
        # Stripe failed: PRG too, the order page shows why (order.last_error) beside the buttons.
    shop.wake()  # a provisional license, where configured
    return RedirectResponse(f"{_root(request)}/orders/{order_id}", status_code=303)


async def order_state(request: Request) -> Response:
    try:
        order = await run_in_threadpool(shop_state(request).orders.get, request.path_params["order_id"])
    except LicensingError as exc:
        return error_response(exc)
    return JSONResponse({"state": order.state, "license_id": order.license_id})


async def webhook(request: Request) -> Response:
    shop = shop_state(request)
    payload = await request.body()
    try:
        if len(payload) > MAX_BODY_BYTES:
            raise LicensingError(ErrorCode.PAYLOAD_TOO_LARGE, "webhook body too large")
        event = shop.orders.gateway.verify_event(payload, request.headers.get("stripe-signature"))
    except LicensingError as exc:
        # 400 makes Stripe retry a genuine event; a forged one is simply dropped.
        return JSONResponse({"error": exc.to_dict()}, status_code=400)
    # Read the verified bytes ourselves: exactly what was signed, as plain JSON.
    obj = json.loads(payload)["data"]["object"]
    result = await run_in_threadpool(shop.orders.apply_event, str(event["id"]), str(event["type"]), obj)
    if result in ("paid", "recorded"):  # a license to issue, or to change as the money moved
        shop.wake()
    return JSONResponse({"received": True, "result": result})


STYLESHEET = Path(__file__).with_name("static") / "store.css"


async def stylesheet(request: Request) -> Response:
    """The store's one stylesheet (a file in the package, so the pages need no inline style)."""
    return Response(STYLESHEET.read_bytes(), media_type="text/css", headers={"Cache-Control": "public, max-age=3600"})


ROUTES = [
    Route("/", index, methods=["GET"]),
    Route("/static/store.css", stylesheet, methods=["GET"]),
    Route("/upgrade", upgrade_form, methods=["GET"]),
    Route("/upgrade", upgrade_offers, methods=["POST"]),
    Route("/orders", create_order, methods=["POST"]),
    Route("/orders/{order_id}", show_order, methods=["GET"]),
    Route("/orders/{order_id}/pay", pay, methods=["POST"]),
    Route("/orders/{order_id}/invoice", pay_by_invoice, methods=["POST"]),
    Route("/orders/{order_id}/state", order_state, methods=["GET"]),
    Route("/stripe/webhook", webhook, methods=["POST"]),
]
