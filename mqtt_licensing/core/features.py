"""Features as data: what a feature is called, what it unlocks, how it is counted.

The vendor owns its catalogue (stored by the activation server); certificates carry the
signed definitions of the features they grant, so a broker enforces, meters and shows a
feature its code never heard of. The three definitions below are the seed's product line:
the default content of a new catalogue, and what a certificate signed before definitions
travelled means (it names features only).

What a feature unlocks (``gates``):

* ``all``: every non-admin client needs it (``mqtt_server``: the broker may serve at all);
* ``class``: the clients of the broker's client class of the same name need it (a bridge);
* ``none``: nothing but a date or a term (support years).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from .errors import ErrorCode, LicensingError

FeatureKind = Literal["perpetual", "term", "metered"]
Unit = Literal["messages", "bytes", "client_hours"]
Gates = Literal["all", "class", "none"]

KINDS: tuple[FeatureKind, ...] = get_args(FeatureKind)
UNITS: tuple[Unit, ...] = get_args(Unit)
GATES: tuple[Gates, ...] = get_args(Gates)

# Names travel in topics, metrics labels, config keys and URLs: keep them plain.
_NAME = re.compile(r"[a-z][a-z0-9_]{0,63}")
TITLE_MAX = 80


@dataclass(frozen=True)
class Feature:
    """One feature's definition. ``requires`` names features a license must also have
    (support and the bridge require ``mqtt_server``)."""

    name: str
    title: str
    kind: FeatureKind
    gates: Gates = "none"
    unit: Unit | None = None
    requires: tuple[str, ...] = field(default_factory=tuple)

    @property
    def gates_connections(self) -> bool:
        return self.gates != "none"

    @property
    def metered(self) -> bool:
        return self.kind == "metered"

    def to_body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"name": self.name, "title": self.title, "kind": self.kind, "gates": self.gates}
        if self.unit is not None:
            body["unit"] = self.unit
        if self.requires:
            body["requires"] = list(self.requires)
        return body

    @classmethod
    def from_body(cls, body: object) -> Feature:
        """Read a definition (from a certificate, the database or a request); every field checked."""
        if not isinstance(body, Mapping):
            raise LicensingError(ErrorCode.WRONG_DOCUMENT, "a feature definition must be a map")
        requires = body.get("requires", ())
        if not isinstance(requires, (list, tuple)):
            raise LicensingError(ErrorCode.WRONG_DOCUMENT, "a feature definition's requires must be a list")
        return define(
            name=body.get("name"),
            title=body.get("title"),
            kind=body.get("kind"),
            gates=body.get("gates", "none"),
            unit=body.get("unit"),
            requires=requires,
        )


def check_name(name: object) -> str:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise LicensingError(
            ErrorCode.INVALID_FIELD,
            f"feature name {name!r} must be 1-64 lowercase letters, digits or _, starting with a letter",
        )
    return name


def define(
    *,
    name: object,
    title: object,
    kind: object,
    gates: object = "none",
    unit: object = None,
    requires: Iterable[object] = (),
) -> Feature:
    """Build a checked definition: one message naming the field that is wrong."""
    name = check_name(name)
    if not isinstance(title, str) or not title.strip() or len(title) > TITLE_MAX:
        raise LicensingError(ErrorCode.INVALID_FIELD, f"feature {name}: title must be 1-{TITLE_MAX} characters")
    if any(ord(c) < 32 or ord(c) == 127 for c in title):
        raise LicensingError(ErrorCode.INVALID_FIELD, f"feature {name}: title must not hold control characters")
    if kind not in KINDS:
        raise LicensingError(ErrorCode.INVALID_FIELD, f"feature {name}: kind must be one of {', '.join(KINDS)}")
    if gates not in GATES:
        raise LicensingError(ErrorCode.INVALID_FIELD, f"feature {name}: gates must be one of {', '.join(GATES)}")
    if kind == "metered":
        if unit not in UNITS:
            raise LicensingError(
                ErrorCode.INVALID_FIELD, f"feature {name}: a metered feature needs a unit ({', '.join(UNITS)})"
            )
    elif unit is not None:
        raise LicensingError(ErrorCode.INVALID_FIELD, f"feature {name}: only a metered feature has a unit")
    needs = tuple(sorted({check_name(r) for r in requires}))
    if name in needs:
        raise LicensingError(ErrorCode.INVALID_FIELD, f"feature {name} cannot require itself")
    return Feature(name, title.strip(), kind, gates, unit, needs)


MQTT_SERVER = "mqtt_server"
MQTT_SERVER_SUPPORT = "mqtt_server_support"
IOT_BRIDGE_SNOWFLAKE = "iot_bridge_snowflake"

BUILTIN: dict[str, Feature] = {
    f.name: f
    for f in (
        Feature(MQTT_SERVER, "MQTT Server", "perpetual", gates="all"),
        Feature(MQTT_SERVER_SUPPORT, "MQTT Server Support", "term", requires=(MQTT_SERVER,)),
        Feature(
            IOT_BRIDGE_SNOWFLAKE,
            "IoT Bridge for Snowflake",
            "metered",
            gates="class",
            unit="messages",
            requires=(MQTT_SERVER,),
        ),
    )
}
# The name the rest of the code used before the catalogue was data.
CATALOGUE = BUILTIN


def validate_features(names: object, known: Mapping[str, Feature] | None = None) -> tuple[str, ...]:
    """Return the names sorted and de-duplicated, or raise for a malformed or unknown one.

    ``known`` is the catalogue to check against (the vendor's); None checks the name only,
    which is all a broker can do for a feature its code never heard of."""
    if isinstance(names, str):
        names = [n for n in (part.strip() for part in names.split(",")) if n]
    if not isinstance(names, (list, tuple, set, frozenset)):
        raise LicensingError(ErrorCode.INVALID_FIELD, "features must be a list of feature names")
    out = set()
    for name in names:
        if known is not None and (not isinstance(name, str) or name not in known):
            raise LicensingError(
                ErrorCode.INVALID_FIELD, f"unknown feature {name!r} (known: {', '.join(sorted(known))})"
            )
        out.add(check_name(name))
    return tuple(sorted(out))


def check_requires(features: Iterable[str], catalogue: Mapping[str, Feature]) -> None:
    """Refuse a set of features that breaks the catalogue's rules, naming the missing one."""
    granted = set(features)
    for name in sorted(granted):
        definition = catalogue.get(name)
        if definition is None:
            continue
        missing = [r for r in definition.requires if r not in granted]
        if missing:
            raise LicensingError(
                ErrorCode.INVALID_FIELD,
                f"feature {name} requires {', '.join(missing)}: add it to the license",
            )


def definitions_for(features: Iterable[str], catalogue: Mapping[str, Feature]) -> tuple[dict[str, Any], ...]:
    """The signed form of the definitions a certificate grants (sorted by name)."""
    return tuple(catalogue[name].to_body() for name in sorted(set(features)) if name in catalogue)


def resolve(features: Iterable[str], definitions: Iterable[object]) -> dict[str, Feature]:
    """The definitions of a certificate's features. A certificate from before definitions
    travelled carries none and means the built-in three; a feature with no definition at all
    is refused rather than guessed at."""
    carried = [Feature.from_body(body) for body in definitions]
    table = {d.name: d for d in carried} if carried else dict(BUILTIN)
    out: dict[str, Feature] = {}
    for name in features:
        definition = table.get(name) or BUILTIN.get(name)
        if definition is None:
            raise LicensingError(
                ErrorCode.FEATURE_UNDEFINED,
                f"the certificate grants feature {name!r} without its definition: ask the vendor to re-issue it",
            )
        out[name] = definition
    return out


def baseline(definitions: Mapping[str, Feature]) -> frozenset[str]:
    """What every non-admin client needs: the features that gate all clients, the built-in
    ``mqtt_server`` always among them (a broker serves no one without it)."""
    return frozenset({MQTT_SERVER} | {d.name for d in definitions.values() if d.gates == "all"})


def serves_clients(features: Iterable[str], definitions: Mapping[str, Feature]) -> bool:
    """Whether a license with these features lets any non-admin client connect."""
    return baseline(definitions) <= set(features)
