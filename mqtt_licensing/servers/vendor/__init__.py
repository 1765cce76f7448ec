"""The vendor activation server: ``store`` (SQL tables and queries), ``service``
(domain logic, no HTTP) and ``app`` (thin Starlette routes)."""

from .app import create_app
from .service import VendorService

__all__ = ["VendorService", "create_app"]
