"""The portal-by-account queries (SQLAlchemy Core) on the store's tables, inside a transaction
opened by :meth:`.store.ShopStore.transaction` (``AccountTx(tx.conn)``).

Addresses are compared lower-cased: ``Buyer@Example.com`` at checkout and ``buyer@example.com``
at sign-in are one customer.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from .schema import account_codes, contacts, license_keys, orders, portal_events, portal_sessions
from .store import Order, order_of_row


class AccountTx:
    def __init__(self, conn: sa.Connection) -> None:
        self.conn = conn

    # -- codes and links ----------------------------------------------------------------
    def count_codes_since(self, since: int, *, email: str | None = None, client: str | None = None) -> int:
        c = account_codes.c
        query = sa.select(sa.func.count()).where(c.created_at >= since)
        if email is not None:
            query = query.where(c.email == email)
        if client is not None:
            query = query.where(c.client == client)
        return int(self.conn.execute(query).scalar_one())

    def insert_code(self, email: str, client: str, *, code_digest: str, link_digest: str, now: int, ttl: int) -> None:
        self.conn.execute(
            account_codes.insert().values(
                email=email,
                client=client,
                code_digest=code_digest,
                link_digest=link_digest,
                created_at=now,
                expires_at=now + ttl,
                attempts=0,
                used=False,
            )
        )

    def lock_codes(self, email: str) -> None:
        """Lock the address's code rows: concurrent guesses at one address count one after another."""
        self.conn.execute(sa.select(account_codes.c.id).where(account_codes.c.email == email).with_for_update()).all()

    def live_codes(self, email: str, now: int) -> list[tuple[int, str, int]]:
        """(id, code digest, attempts) of the address's unused, unexpired codes."""
        c = account_codes.c
        query = sa.select(c.id, c.code_digest, c.attempts).where(
            c.email == email, c.used.is_(False), c.expires_at > now
        )
        return [(int(r[0]), r[1], int(r[2])) for r in self.conn.execute(query)]

    def live_link(self, link_digest: str, now: int) -> tuple[int, str] | None:
        """(id, address) of the unused, unexpired code row the link belongs to."""
        c = account_codes.c
        query = (
            sa.select(c.id, c.email)
            .where(c.link_digest == link_digest, c.used.is_(False), c.expires_at > now)
            .with_for_update()
        )
        row = self.conn.execute(query).first()
        return (int(row[0]), str(row[1])) if row is not None else None

    def update_code(self, code_id: int, **values: Any) -> None:
        self.conn.execute(account_codes.update().where(account_codes.c.id == code_id).values(**values))

    def prune(self, now: int) -> None:
        # A day of rows is kept past expiry: the hourly limits count them.
        self.conn.execute(account_codes.delete().where(account_codes.c.expires_at <= now - 86400))

    # -- sessions -------------------------------------------------------------------------
    def insert_session(self, digest: str, email: str, csrf: str, expires_at: int) -> None:
        self.conn.execute(
            portal_sessions.insert().values(
                token_digest=digest, license_id=None, email=email, csrf=csrf, expires_at=expires_at
            )
        )

    def session(self, digest: str, now: int) -> tuple[str | None, str | None, str] | None:
        """(license id, address, csrf) of a live session: one of the first two is set."""
        c = portal_sessions.c
        query = sa.select(c.license_id, c.email, c.csrf).where(c.token_digest == digest, c.expires_at > now)
        row = self.conn.execute(query).first()
        return (row[0], row[1], row[2]) if row is not None else None

    # -- what an address owns -----------------------------------------------------------------
    def license_ids(self, email: str) -> list[str]:
        """Licenses bought with the address (orders) or whose contact it is, oldest first."""
        bought = sa.select(orders.c.license_id, sa.func.min(orders.c.created_at)).where(
            sa.func.lower(orders.c.email) == email, orders.c.license_id.is_not(None)
        )
        found: dict[str, int] = {
            str(lid): int(at) for lid, at in self.conn.execute(bought.group_by(orders.c.license_id))
        }
        contact = sa.select(contacts.c.license_id, contacts.c.created_at).where(
            sa.func.lower(contacts.c.email) == email
        )
        for lid, at in self.conn.execute(contact):
            found[str(lid)] = min(found.get(str(lid), int(at)), int(at))
        return sorted(found, key=lambda lid: (found[lid], lid))

    def orders_of(self, license_id: str) -> list[Order]:
        query = sa.select(orders).where(orders.c.license_id == license_id).order_by(orders.c.created_at)
        return [order_of_row(r) for r in self.conn.execute(query)]

    # -- keys and what was done with them ------------------------------------------------------
    def keep_key(self, license_id: str, sealed: tuple[int, bytes, bytes], now: int) -> None:
        c = license_keys.c
        if self.conn.execute(sa.select(c.license_id).where(c.license_id == license_id)).first() is None:
            self.conn.execute(
                license_keys.insert().values(
                    license_id=license_id, format=sealed[0], nonce=sealed[1], sealed=sealed[2], created_at=now
                )
            )

    def kept_key(self, license_id: str) -> tuple[int, bytes, bytes] | None:
        c = license_keys.c
        row = self.conn.execute(sa.select(c.format, c.nonce, c.sealed).where(c.license_id == license_id)).first()
        return (int(row[0]), bytes(row[1]), bytes(row[2])) if row is not None else None

    def log_event(self, license_id: str, order_id: str | None, kind: str, *, actor: str, client: str, now: int) -> None:
        self.conn.execute(
            portal_events.insert().values(
                license_id=license_id, order_id=order_id, kind=kind, actor=actor[:254], client=client[:64], at=now
            )
        )

    def events_of(self, license_id: str, limit: int = 20) -> list[dict[str, Any]]:
        c = portal_events.c
        query = sa.select(c.kind, c.actor, c.client, c.at, c.order_id).where(c.license_id == license_id)
        rows = self.conn.execute(query.order_by(c.at.desc(), c.id.desc()).limit(limit))
        return [dict(r._mapping) for r in rows]  # noqa: SLF001 - SQLAlchemy's public Row mapping


__all__ = ["AccountTx"]
