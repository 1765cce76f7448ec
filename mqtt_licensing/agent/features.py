"""What a license's features mean on this broker: the mismatches an operator should hear about.

The vendor defines features; each broker's config names client classes. When the two do not
meet (a class needs a feature the license lacks, or the license grants a client-class feature
no class on this broker uses), the license and the config disagree about what is sold here.
"""

from __future__ import annotations

from collections.abc import Mapping

from ..core.state import Evaluation


def mismatches(classes: Mapping[str, frozenset[str]], evaluation: Evaluation) -> list[str]:
    """One sentence per mismatch, in a stable order (empty on trial: nothing is licensed yet)."""
    if evaluation.model in (None, "trial") or not evaluation.serving:
        return []
    granted = set(evaluation.features)
    lines = [
        f"client class {name} needs feature(s) {', '.join(sorted(needs - granted))} which the license lacks: "
        "its clients are refused"
        for name, needs in sorted(classes.items())
        if needs - granted
    ]
    used = set().union(*classes.values()) if classes else set()
    lines += [
        f"the license grants {d.name} ({d.title}) but no client class on this broker refers to it: it unlocks "
        f"nothing here (add client_classes.{d.name})"
        for d in evaluation.definitions
        if d.gates == "class" and d.name not in used
    ]
    return lines
