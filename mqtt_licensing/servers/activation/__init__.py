"""The vendor's activation server: ``store`` (SQL tables and queries), ``service`` (domain
logic, no HTTP; one facade over ``licenses``, ``instances`` and ``codes``) and ``app`` (thin
Starlette routes)."""

from .app import create_app
from .service import ActivationService

__all__ = ["ActivationService", "create_app"]
