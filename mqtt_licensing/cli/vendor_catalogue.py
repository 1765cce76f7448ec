"""``mqtt-licensing vendor feature ...`` and ``vendor template ...``: the product line as data.

A feature is defined once here (its title, kind, unit, what it unlocks, what it requires);
licenses, the store, certificates and every broker then take it from the catalogue, with no
release of this package."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import Any

from .serverdata import data_command


def _catalogue(open_service: Callable[..., Any], args: argparse.Namespace) -> tuple[Any, Any]:
    service = open_service(args)
    return service, service.catalogue


def _names(text: str | None) -> list[str] | None:
    return None if text is None else [n.strip() for n in text.split(",") if n.strip()]


def _feature_line(feature: dict[str, Any]) -> str:
    unlocks = {"all": "every client", "class": f"clients of class {feature['name']}", "none": "nothing"}[
        feature["gates"]
    ]
    kind = feature["kind"] + (f" ({feature['unit']})" if feature.get("unit") else "")
    needs = f"  requires {','.join(feature['requires'])}" if feature.get("requires") else ""
    retired = "  RETIRED" if feature.get("retired_at") else ""
    return f"{feature['name']:<24} {kind:<20} {feature['title']!r:<28} unlocks {unlocks}{needs}{retired}"


def _run(open_service: Callable[..., Any], action: Callable[[Any, argparse.Namespace], Any]) -> Callable[..., int]:
    def command(args: argparse.Namespace) -> int:
        service, catalogue = _catalogue(open_service, args)
        try:
            result = action(catalogue, args)
        finally:
            service.close()
        if getattr(args, "json", False):
            print(json.dumps(result, indent=2, sort_keys=True))
        elif isinstance(result, list):
            for item in result:
                print(_feature_line(item) if "kind" in item else json.dumps(item, sort_keys=True))
        elif isinstance(result, dict):
            print(_feature_line(result) if "kind" in result else json.dumps(result, sort_keys=True))
        return 0

    return command


def _gates(args: argparse.Namespace) -> str | None:
    if args.gates_all:
        return "all"
    if args.gates_clients is None:
        return None
    return "class" if args.gates_clients else "none"


def register(verbs: argparse._SubParsersAction[argparse.ArgumentParser], open_service: Callable[..., Any]) -> None:
    feature = verbs.add_parser("feature", help="the features you sell (the catalogue)", description=__doc__)
    fverbs = feature.add_subparsers(dest="feature_verb", required=True, metavar="<command>")

    def verb(
        group: argparse._SubParsersAction[argparse.ArgumentParser], name: str, help_text: str, action: Any
    ) -> argparse.ArgumentParser:
        return data_command(group, name, help_text, _run(open_service, action), kind="vendor", database="vendor.db")

    def definition_flags(p: argparse.ArgumentParser) -> None:
        p.add_argument("--unit", choices=("messages", "bytes", "client_hours"), help="what a metered feature counts")
        p.add_argument(
            "--gates-clients",
            action=argparse.BooleanOptionalAction,
            default=None,
            help="the broker's client class of the same name needs this feature",
        )
        p.add_argument("--gates-all", action="store_true", help="every non-admin client needs it (as mqtt_server)")
        p.add_argument("--requires", metavar="A,B", help="features a license must also have")

    p = verb(
        fverbs,
        "add",
        "define a new feature",
        lambda c, a: c.add_feature(
            name=a.name,
            title=a.title,
            kind=a.kind,
            unit=a.unit,
            gates=_gates(a) or "none",
            requires=_names(a.requires) or (),
        ),
    )
    p.add_argument("name")
    p.add_argument("--title", required=True)
    p.add_argument("--kind", required=True, choices=("perpetual", "term", "metered"))
    definition_flags(p)

    p = verb(
        fverbs,
        "update",
        "change a feature's definition (licenses get it at their next check-in or reactivate)",
        lambda c, a: c.update_feature(
            a.name,
            title=a.title,
            kind=a.kind,
            unit=a.unit,
            gates=_gates(a),
            requires=_names(a.requires),
        ),
    )
    p.add_argument("name")
    p.add_argument("--title")
    p.add_argument("--kind", choices=("perpetual", "term", "metered"))
    definition_flags(p)

    p = verb(
        fverbs, "retire", "stop selling a feature (it stays valid where granted)", lambda c, a: c.retire_feature(a.name)
    )
    p.add_argument("name")
    p = verb(fverbs, "list", "list the catalogue", lambda c, a: c.list_features())
    p.add_argument("--json", action="store_true")

    template = verbs.add_parser("template", help="license templates (editions)", description=__doc__)
    tverbs = template.add_subparsers(dest="template_verb", required=True, metavar="<command>")
    p = verb(tverbs, "add", "define (or with --replace, redefine) a template", _add_template)
    p.add_argument("name")
    p.add_argument("--features", required=True, metavar="A,B")
    p.add_argument("--model", choices=("online", "offline", "floating"))
    p.add_argument("--activations", dest="max_activations", type=int, metavar="N")
    p.add_argument("--seats", type=int, metavar="N")
    p.add_argument("--max-connections", type=int, metavar="N")
    p.add_argument("--overage", type=float, metavar="F")
    p.add_argument("--valid-days", type=int, metavar="N", help="the license expires N days after it is issued")
    p.add_argument("--support-years", type=int, metavar="N", help="support until N calendar years after issue")
    p.add_argument("--clone-policy", choices=("flag", "suspend"))
    p.add_argument("--metering", choices=("best_effort", "required"))
    p.add_argument("--heartbeat-interval", type=int, metavar="S", help="online instances heartbeat every S s")
    p.add_argument("--release-after", type=int, metavar="S", help="release an activation silent S s (> 2 x interval)")
    p.add_argument("--replace", action="store_true")
    p = verb(tverbs, "list", "list templates", lambda c, a: c.list_templates())
    p.add_argument("--json", action="store_true")
    p = verb(tverbs, "remove", "remove a template (licenses issued from it keep their terms)", _remove_template)
    p.add_argument("name")


_TERMS = (
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


def _add_template(catalogue: Any, args: argparse.Namespace) -> dict[str, Any]:
    terms = {name: getattr(args, name) for name in _TERMS}
    terms["features"] = _names(args.features)
    return dict(catalogue.add_template(args.name, terms, replace=args.replace))


def _remove_template(catalogue: Any, args: argparse.Namespace) -> dict[str, Any]:
    catalogue.remove_template(args.name)
    return {"removed": args.name}
