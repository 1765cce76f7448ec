"""Stripe's API as the store sees it in tests: localstripe behind a local HTTP server that records
every request (method, path, parameters, Idempotency-Key) and answers the invoice endpoints
itself, since localstripe cannot finalize an invoice, mark one paid out of band or send one; and
Stripe Tax's (``/v1/tax/calculations``, ``/v1/tax/transactions/create_from_calculation`` and
``create_reversal``), which
localstripe lacks, at the rates of ``proxy.tax_rates`` (a US address needs a postal code, as at Stripe).

    proxy = StripeProxy(localstripe.url)      # the shop's stripe.api_base
    proxy.requests                            # [{"method", "path", "params", "idempotency_key"}]
"""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

OWN = ("/v1/invoiceitems", "/v1/invoices", "/v1/tax/")  # answered here; everything else goes to localstripe
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never the host's HTTP proxy


class StripeProxy:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.requests: list[dict[str, Any]] = []
        self.items: list[dict[str, Any]] = []
        self.invoices: dict[str, dict[str, Any]] = {}
        self.by_key: dict[str, tuple[int, bytes]] = {}  # Stripe answers a repeated key with the first answer
        self.lock = threading.Lock()
        self.fail_once: set[str] = set()  # paths answered 400 the next time they are asked
        self.tax_rates: dict[str, float] = {"DE": 19.0, "FR": 20.0, "US": 0.0}  # Stripe Tax's answer, per country
        self.calculations: dict[str, dict[str, Any]] = {}
        self.tax_transactions: dict[str, dict[str, Any]] = {}
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def _handle(self, method: str) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                path = urllib.parse.urlsplit(self.path).path
                key = self.headers.get("Idempotency-Key")
                with proxy.lock:
                    proxy.requests.append(
                        {
                            "method": method,
                            "path": path,
                            "params": dict(urllib.parse.parse_qsl(body.decode())),
                            "idempotency_key": key,
                        }
                    )
                    if path in proxy.fail_once:
                        proxy.fail_once.discard(path)
                        self._send(
                            400, json.dumps({"error": {"type": "invalid_request_error", "message": "no"}}).encode()
                        )
                        return
                    if key and key in proxy.by_key:
                        self._send(*proxy.by_key[key])
                        return
                    status, raw = proxy.answer(method, path, body, dict(self.headers)) if path.startswith(OWN) else (
                        proxy.forward(method, self.path, body, dict(self.headers))
                    )  # fmt: skip
                    if key and method == "POST" and status < 500:
                        proxy.by_key[key] = (status, raw)
                self._send(status, raw)

            def _send(self, status: int, raw: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def do_GET(self) -> None:
                self._handle("GET")

            def do_POST(self) -> None:
                self._handle("POST")

            def do_DELETE(self) -> None:
                self._handle("DELETE")

            def log_message(self, *_args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def forward(self, method: str, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        wanted = {k: v for k, v in headers.items() if k.lower() in ("authorization", "content-type", "stripe-version")}
        req = urllib.request.Request(self.upstream + path, data=body or None, method=method, headers=wanted)
        try:
            with _DIRECT.open(req, timeout=20) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def answer(self, method: str, path: str, body: bytes, _headers: dict[str, str]) -> tuple[int, bytes]:
        params = dict(urllib.parse.parse_qsl(body.decode()))
        parts = path.strip("/").split("/")  # v1, invoices, ID, action
        if parts[1] == "tax":
            return self._tax(method, parts[2:], params)
        if parts[1] == "invoiceitems" and method == "POST":
            item: dict[str, Any] = {"id": f"ii_{len(self.items) + 1}", "object": "invoiceitem", "invoice": None}
            item.update(params, amount=int(params["amount"]))
            self.items.append(item)
            return 200, json.dumps(item).encode()
        if parts[1] == "invoices" and len(parts) == 2 and method == "POST":
            return 200, json.dumps(self._create(params)).encode()
        invoice = self.invoices.get(parts[2]) if len(parts) > 2 else None
        if invoice is None:
            return 404, json.dumps({"error": {"type": "invalid_request_error", "message": "No such invoice"}}).encode()
        action = parts[3] if len(parts) > 3 else ""
        if action == "finalize":
            if invoice["status"] != "draft":  # as Stripe: a finalized invoice cannot be finalized again
                return 400, json.dumps({"error": {"type": "invalid_request_error", "message": "finalized"}}).encode()
            invoice["status"] = "open"
            invoice["number"] = f"INV-{len(self.invoices):04d}"
            invoice["hosted_invoice_url"] = f"{self.url}/i/{invoice['id']}"
            invoice["invoice_pdf"] = f"{self.url}/i/{invoice['id']}/pdf"
        elif action == "pay":
            invoice["status"] = "paid"
            invoice["paid_out_of_band"] = params.get("paid_out_of_band") == "true"
            invoice["amount_paid"] = invoice["amount_due"]
        elif action not in ("send", ""):
            return 400, json.dumps({"error": {"type": "invalid_request_error", "message": action}}).encode()
        return 200, json.dumps(invoice).encode()

    def _create(self, params: dict[str, str]) -> dict[str, Any]:
        number = len(self.invoices) + 1
        mine = [i for i in self.items if i["customer"] == params["customer"] and i["invoice"] is None]
        invoice = {
            "id": f"in_test_{number}",
            "object": "invoice",
            "status": "draft",
            "number": None,
            "customer": params["customer"],
            "collection_method": params.get("collection_method", "charge_automatically"),
            "amount_due": sum(i["amount"] for i in mine),
            "amount_paid": 0,
            "currency": mine[0]["currency"] if mine else "usd",
            "metadata": {k[9:-1]: v for k, v in params.items() if k.startswith("metadata[")},
            "custom_fields": [
                {"name": params[f"custom_fields[{n}][name]"], "value": params.get(f"custom_fields[{n}][value]")}
                for n in range(4)
                if f"custom_fields[{n}][name]" in params
            ],
            "lines": [i["description"] for i in mine],
            "hosted_invoice_url": None,
            "invoice_pdf": None,
        }
        for item in mine:
            item["invoice"] = invoice["id"]
        self.invoices[invoice["id"]] = invoice
        return invoice

    def _tax(self, method: str, parts: list[str], params: dict[str, str]) -> tuple[int, bytes]:
        """Stripe Tax, as its API reference shapes the objects (the fields the store reads and a few more)."""
        if method == "POST" and parts == ["calculations"]:
            country = params.get("customer_details[address][country]", "")
            postal = params.get("customer_details[address][postal_code]")
            if country not in self.tax_rates or (country == "US" and not postal):
                error = {"type": "invalid_request_error", "code": "customer_tax_location_invalid",
                         "message": "We could not determine the customer's tax location."}  # fmt: skip
                return 400, json.dumps({"error": error}).encode()
            rate = self.tax_rates[country]
            lines: list[dict[str, Any]] = []
            n = 0
            while f"line_items[{n}][amount]" in params:
                amount = int(params[f"line_items[{n}][amount]"])
                lines.append({"amount": amount, "amount_tax": round(amount * rate / 100),
                              "reference": params.get(f"line_items[{n}][reference]"),
                              "tax_behavior": params.get(f"line_items[{n}][tax_behavior]", "exclusive")})  # fmt: skip
                n += 1
            tax = sum(ln["amount_tax"] for ln in lines)
            calc: dict[str, Any] = {
                "id": f"taxcalc_test_{len(self.calculations) + 1}",
                "object": "tax.calculation",
                "currency": params["currency"],
                "amount_total": sum(ln["amount"] for ln in lines) + tax,
                "tax_amount_exclusive": tax,
                "tax_amount_inclusive": 0,
                "customer_details": {"address": {"country": country}, "address_source": "billing"},
                "line_items": {"object": "list", "data": lines},
                "tax_breakdown": [
                    {"amount": tax, "tax_rate_details": {"country": country, "percentage_decimal": f"{rate}"}}
                ],
            }
            self.calculations[calc["id"]] = calc
            return 200, json.dumps(calc).encode()
        if method == "POST" and parts == ["transactions", "create_from_calculation"]:
            found = self.calculations.get(params.get("calculation", ""))
            reference = params.get("reference", "")
            if found is None or any(t["reference"] == reference for t in self.tax_transactions.values()):
                error = {"type": "invalid_request_error", "message": "no such calculation, or the reference is taken"}
                return 400, json.dumps({"error": error}).encode()
            tx = {"id": f"tax_test_{len(self.tax_transactions) + 1}", "object": "tax.transaction",
                  "type": "transaction", "reference": reference, "calculation": found["id"],
                  "currency": found["currency"]}  # fmt: skip
            self.tax_transactions[tx["id"]] = tx
            return 200, json.dumps(tx).encode()
        if method == "POST" and parts == ["transactions", "create_reversal"]:
            original = self.tax_transactions.get(params.get("original_transaction", ""))
            reference = params.get("reference", "")
            flat = int(params.get("flat_amount", "0"))
            taken = any(t["reference"] == reference for t in self.tax_transactions.values())
            if original is None or taken or params.get("mode") != "partial" or flat >= 0:
                error = {"type": "invalid_request_error", "message": "a partial reversal needs a negative flat_amount"}
                return 400, json.dumps({"error": error}).encode()
            rev: dict[str, Any] = {"id": f"tax_test_{len(self.tax_transactions) + 1}", "object": "tax.transaction",
                   "type": "reversal", "reference": reference, "flat_amount": flat,
                   "reversal": {"original_transaction": original["id"]}}  # fmt: skip
            self.tax_transactions[rev["id"]] = rev
            return 200, json.dumps(rev).encode()
        return 404, json.dumps({"error": {"type": "invalid_request_error", "message": "unknown tax path"}}).encode()

    def posts(self, path: str) -> list[dict[str, Any]]:
        """The recorded POSTs to ``path`` (or below it with a trailing ``*``)."""
        if path.endswith("*"):
            return [r for r in self.requests if r["method"] == "POST" and r["path"].startswith(path[:-1])]
        return [r for r in self.requests if r["method"] == "POST" and r["path"] == path]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
