"""The vendor's product line as data: feature definitions and license templates (editions).

A feature row is a :class:`core.features.Feature` plus when it was retired: a retired feature
is hidden from sale and from new licenses but stays valid, with its definition, on every
license that has it. A template bundles features and terms; ``vendor issue --template``
starts from it and the flags given override it. The built-in three features are the
content a new database starts with (migration 0009).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from ...core.errors import ErrorCode, LicensingError
from ...core.features import Feature, check_name, check_requires, define, definitions_for
from ...core.timefmt import add_years
from .schema import features, templates
from .store import ActivationStore

# The terms a template may set, with what `vendor issue` calls them. valid_days and
# support_years become dates when a license is issued from the template.
TEMPLATE_TERMS = (
    "features",
    "model",
    "max_activations",
    "seats",
    "max_connections",
    "overage",
    "valid_days",
    "support_years",
    "clone_policy",
    "metering",
    "heartbeat_interval",
    "release_after",
)


@dataclass(frozen=True)
class CatalogueFeature:
    feature: Feature
    retired_at: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {**self.feature.to_body(), "requires": list(self.feature.requires), "retired_at": self.retired_at}


@dataclass(frozen=True)
class Template:
    name: str
    terms: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, **self.terms}


def _row_feature(row: Any) -> CatalogueFeature:
    feature = define(
        name=row.name, title=row.title, kind=row.kind, gates=row.gates, unit=row.unit, requires=row.requires or ()
    )
    return CatalogueFeature(feature, row.retired_at)


class CatalogueQueries:
    """The catalogue's queries inside one open transaction (``store.transaction()``'s connection)."""

    def __init__(self, conn: sa.Connection) -> None:
        self.conn = conn

    def all_features(self) -> dict[str, CatalogueFeature]:
        rows = self.conn.execute(sa.select(features).order_by(features.c.name))
        return {row.name: _row_feature(row) for row in rows}

    def get_feature(self, name: str) -> CatalogueFeature | None:
        row = self.conn.execute(sa.select(features).where(features.c.name == name)).first()
        return _row_feature(row) if row is not None else None

    def definitions_of(self, names: tuple[str, ...]) -> tuple[dict[str, Any], ...]:
        """The signed form of these features' definitions (retired ones too: they stay valid where
        granted), for a certificate: one small SELECT in the caller's transaction."""
        if not names:
            return ()
        rows = self.conn.execute(sa.select(features).where(features.c.name.in_(names)).order_by(features.c.name))
        # Rows were checked by define() when written; Feature.to_body's shape without checking
        # again (that doubled the cost of this read on every check-in).
        out = []
        for row in rows:
            body: dict[str, Any] = {"name": row.name, "title": row.title, "kind": row.kind, "gates": row.gates}
            if row.unit is not None:
                body["unit"] = row.unit
            if row.requires:
                body["requires"] = sorted(row.requires)
            out.append(body)
        return tuple(out)

    def put_feature(self, feature: Feature, now: int, *, new: bool) -> None:
        values = {
            "title": feature.title,
            "kind": feature.kind,
            "gates": feature.gates,
            "unit": feature.unit,
            "requires": list(feature.requires),
            "updated_at": now,
        }
        if new:
            self.conn.execute(sa.insert(features).values(name=feature.name, created_at=now, **values))
        else:
            self.conn.execute(sa.update(features).where(features.c.name == feature.name).values(**values))

    def retire_feature(self, name: str, now: int) -> None:
        self.conn.execute(sa.update(features).where(features.c.name == name).values(retired_at=now, updated_at=now))

    def all_templates(self) -> dict[str, Template]:
        rows = self.conn.execute(sa.select(templates).order_by(templates.c.name))
        return {row.name: Template(row.name, dict(row.terms)) for row in rows}

    def put_template(self, template: Template, now: int, *, new: bool) -> None:
        terms = dict(template.terms)
        if new:
            self.conn.execute(
                sa.insert(templates).values(name=template.name, terms=terms, created_at=now, updated_at=now)
            )
        else:
            self.conn.execute(
                sa.update(templates).where(templates.c.name == template.name).values(terms=terms, updated_at=now)
            )

    def delete_template(self, name: str) -> bool:
        return bool(self.conn.execute(sa.delete(templates).where(templates.c.name == name)).rowcount)


def table_of(rows: Mapping[str, CatalogueFeature]) -> dict[str, Feature]:
    """Every definition, retired ones included: they stay valid on the licenses that have them."""
    return {name: row.feature for name, row in rows.items()}


def check_new_license(
    features_: tuple[str, ...], rows: Mapping[str, CatalogueFeature], *, keep: tuple[str, ...] = ()
) -> None:
    """A license's features must be in the catalogue, not retired (unless it had them), and follow its rules."""
    for name in features_:
        row = rows.get(name)
        if row is None:
            known = ", ".join(sorted(n for n, r in rows.items() if r.retired_at is None))
            raise LicensingError(ErrorCode.INVALID_FIELD, f"unknown feature {name!r} (known: {known})")
        if row.retired_at is not None and name not in keep:
            raise LicensingError(ErrorCode.INVALID_FIELD, f"feature {name} is retired: it is no longer sold")
    check_requires(features_, table_of(rows))


def definitions(features_: tuple[str, ...], rows: Mapping[str, CatalogueFeature]) -> tuple[dict[str, Any], ...]:
    return definitions_for(features_, table_of(rows))


def updated(feature: Feature, changes: Mapping[str, Any]) -> Feature:
    """A feature with some fields changed, checked as a whole (a kind change must bring its unit)."""
    body = {**feature.to_body(), "requires": list(feature.requires)}
    for key, value in changes.items():
        if key not in ("title", "kind", "gates", "unit", "requires"):
            raise LicensingError(ErrorCode.INVALID_FIELD, f"a feature has no field {key!r}")
        body[key] = value
    if body.get("kind") != "metered":
        body["unit"] = None if "unit" not in changes else body.get("unit")
    return define(**body)


def template_name(name: object) -> str:
    try:
        return check_name(name)
    except LicensingError:
        raise LicensingError(
            ErrorCode.INVALID_FIELD, f"template name {name!r} must be lowercase letters, digits or _"
        ) from None


def template_terms(terms: Mapping[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(terms) - set(TEMPLATE_TERMS))
    if unknown:
        raise LicensingError(
            ErrorCode.INVALID_FIELD, f"a template has no term {unknown[0]!r} (terms: {', '.join(TEMPLATE_TERMS)})"
        )
    checked = {key: value for key, value in terms.items() if value is not None}
    for key, value in checked.items():
        _check_term(key, value)
    beat, release = checked.get("heartbeat_interval"), checked.get("release_after")
    if release is not None and (beat is None or release <= 2 * beat):
        raise LicensingError(
            ErrorCode.INVALID_FIELD,
            "template term release_after needs a heartbeat_interval and must be more than twice it",
        )
    return checked


_CHOICES = {
    "model": ("online", "offline", "floating"),
    "clone_policy": ("flag", "suspend"),
    "metering": ("best_effort", "required"),
}
_MINIMUM = {
    "max_activations": 1,
    "seats": 1,
    "max_connections": 0,
    "valid_days": 1,
    "support_years": 1,
    "heartbeat_interval": 1,
    "release_after": 1,
}


def _check_term(key: str, value: Any) -> None:
    """A template's term has the shape a license's has, so a mistake shows when it is defined,
    not when a license is first issued from it."""
    problem = None
    if key == "features":
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
            problem = "a list of feature names"
    elif key in _CHOICES:
        if value not in _CHOICES[key]:
            problem = f"one of {', '.join(_CHOICES[key])}"
    elif key in _MINIMUM:
        if isinstance(value, bool) or not isinstance(value, int) or not _MINIMUM[key] <= value < 2**62:
            problem = f"a whole number, at least {_MINIMUM[key]}"
    elif key == "overage" and (isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1):
        problem = "a number from 0 to 1"
    if problem is not None:
        raise LicensingError(ErrorCode.INVALID_FIELD, f"template term {key} must be {problem}")


# Template terms that are license terms as they are (the rest become dates at issue).
_AS_IS = (
    "features",
    "model",
    "max_activations",
    "seats",
    "max_connections",
    "overage",
    "clone_policy",
    "metering",
    "heartbeat_interval",
    "release_after",
)


def template_license_terms(template: Template, now: int) -> dict[str, Any]:
    """The terms of a license issued from ``template`` at ``now``: valid_days -> expires_at,
    support_years -> support_until in calendar years (2027-12-07 + 1 = 2028-12-07)."""
    terms = template.terms
    out = {name: terms[name] for name in _AS_IS if terms.get(name) is not None}
    for name in sorted(set(terms) - set(_AS_IS) - {"valid_days", "support_years"}):
        raise LicensingError(ErrorCode.INVALID_FIELD, f"template {template.name}: {name} is not a license term")
    for name in ("valid_days", "support_years"):
        value = terms.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise LicensingError(ErrorCode.INVALID_FIELD, f"template {template.name}: {name} must be 1 or more")
    if terms.get("valid_days") is not None:
        out["expires_at"] = now + int(terms["valid_days"]) * 86400
    if terms.get("support_years") is not None:
        out["support_until"] = add_years(now, int(terms["support_years"]))
    return out


class CatalogueAdmin:
    """The vendor's work on its product line, each change one transaction (CLI and admin API alike)."""

    def __init__(self, store: ActivationStore, clock: Callable[[], float]) -> None:
        self.store = store
        self.clock = clock

    def _now(self) -> int:
        return int(self.clock())

    def rows(self) -> dict[str, CatalogueFeature]:
        with self.store.transaction() as tx:
            return CatalogueQueries(tx.conn).all_features()

    def snapshot(self) -> tuple[dict[str, CatalogueFeature], dict[str, Template]]:
        """Every feature and template, read in one transaction (what the store sells from)."""
        with self.store.transaction() as tx:
            queries = CatalogueQueries(tx.conn)
            return queries.all_features(), queries.all_templates()

    def list_features(self, *, include_retired: bool = True) -> list[dict[str, Any]]:
        return [row.to_dict() for row in self.rows().values() if include_retired or row.retired_at is None]

    def add_feature(self, **fields: Any) -> dict[str, Any]:
        feature = define(**fields)
        with self.store.transaction() as tx:
            queries = CatalogueQueries(tx.conn)
            rows = queries.all_features()
            if feature.name in rows:
                raise LicensingError(ErrorCode.INVALID_FIELD, f"feature {feature.name} exists: use feature update")
            for needed in feature.requires:
                if needed not in rows:
                    raise LicensingError(ErrorCode.INVALID_FIELD, f"feature {feature.name} requires unknown {needed!r}")
            queries.put_feature(feature, self._now(), new=True)
        return CatalogueFeature(feature).to_dict()

    def update_feature(self, name: str, **changes: Any) -> dict[str, Any]:
        with self.store.transaction() as tx:
            queries = CatalogueQueries(tx.conn)
            row = queries.get_feature(name)
            if row is None:
                raise LicensingError(ErrorCode.NOT_FOUND, f"no feature {name!r} in the catalogue")
            feature = updated(row.feature, {k: v for k, v in changes.items() if v is not None})
            queries.put_feature(feature, self._now(), new=False)
        return CatalogueFeature(feature, row.retired_at).to_dict()

    def retire_feature(self, name: str) -> dict[str, Any]:
        with self.store.transaction() as tx:
            queries = CatalogueQueries(tx.conn)
            row = queries.get_feature(name)
            if row is None:
                raise LicensingError(ErrorCode.NOT_FOUND, f"no feature {name!r} in the catalogue")
            if row.retired_at is None:
                queries.retire_feature(name, self._now())
            row = queries.get_feature(name)
        assert row is not None
        return row.to_dict()

    def list_templates(self) -> list[dict[str, Any]]:
        with self.store.transaction() as tx:
            return [t.to_dict() for t in CatalogueQueries(tx.conn).all_templates().values()]

    def template(self, name: str) -> Template:
        with self.store.transaction() as tx:
            found = CatalogueQueries(tx.conn).all_templates().get(name)
        if found is None:
            raise LicensingError(ErrorCode.NOT_FOUND, f"no template {name!r}: see vendor template list")
        return found

    def add_template(self, name: str, terms: Mapping[str, Any], *, replace: bool = False) -> dict[str, Any]:
        name = template_name(name)
        checked = template_terms(terms)
        template_license_terms(Template(name, checked), self._now())  # its dates must make sense
        with self.store.transaction() as tx:
            queries = CatalogueQueries(tx.conn)
            if "features" in checked:
                check_new_license(tuple(checked["features"]), queries.all_features())
            exists = name in queries.all_templates()
            if exists and not replace:
                raise LicensingError(ErrorCode.INVALID_FIELD, f"template {name} exists")
            queries.put_template(Template(name, checked), self._now(), new=not exists)
        return Template(name, checked).to_dict()

    def remove_template(self, name: str) -> None:
        with self.store.transaction() as tx:
            if not CatalogueQueries(tx.conn).delete_template(name):
                raise LicensingError(ErrorCode.NOT_FOUND, f"no template {name!r}")
