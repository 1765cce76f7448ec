"""The package's import layers, read from the source (ast), so a wrong-way import fails here.

core (pure: stdlib, cryptography, msgpack) <- clients <- agent <- adapters; the servers use core
and clients; web (the License page) uses core only; amqtt is imported by adapters/amqtt alone.
Imports inside ``if TYPE_CHECKING:`` count too: a layer should not even name what is above it.
"""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "mqtt_licensing"
CORE_THIRD_PARTY = {"cryptography", "msgpack"}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, module: str | None = None) -> set[str]:
    """Absolute names of every module ``path`` (named ``module``) imports, relative imports resolved."""
    module = module or _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            found.add(target)
            # "from . import x" names submodules: count them as imported
            found.update(f"{target}.{alias.name}" for alias in node.names if not node.module)
    return found


def modules(subpackage: str) -> list[Path]:
    root = PACKAGE / subpackage
    return sorted(root.rglob("*.py")) if root.is_dir() else [root.with_suffix(".py")]


def project_layer(name: str) -> str | None:
    parts = name.split(".")
    if parts[0] != "mqtt_licensing":
        return None
    if len(parts) == 1:
        return "package"
    return ".".join(parts[1:3]) if parts[1] == "adapters" and len(parts) > 2 else parts[1]


def bad_imports(
    files: list[tuple[Path, str]], allowed_project: set[str], allowed_third_party: set[str] | None = None
) -> list[str]:
    stdlib = set(sys.stdlib_module_names) | {"__future__"}
    bad = []
    for path, module in files:
        for name in sorted(imports_of(path, module)):
            layer = project_layer(name)
            if layer is not None:
                if layer not in allowed_project:
                    bad.append(f"{module}: imports {name}")
            elif allowed_third_party is not None and name.split(".")[0] not in stdlib | allowed_third_party:
                bad.append(f"{module}: imports {name}")
    return bad


def violations(subpackage: str, allowed_project: set[str], allowed_third_party: set[str] | None = None) -> list[str]:
    files = [(path, _module_name(path)) for path in modules(subpackage)]
    return bad_imports(files, allowed_project, allowed_third_party)


def test_core_imports_only_stdlib_cryptography_and_msgpack():
    assert violations("core", {"core", "_atomic"}, CORE_THIRD_PARTY) == []


def test_clients_import_only_core():
    assert violations("clients", {"core", "clients", "_atomic"}) == []


def test_web_imports_only_core():
    assert violations("web", {"core", "web", "_atomic"}) == []


def test_the_agent_imports_no_server_and_no_adapter():
    assert violations("agent", {"core", "clients", "agent", "web", "_atomic"}) == []


@pytest.mark.parametrize("subpackage", ["core", "clients", "agent", "servers", "web", "cli", "adapters", "_atomic"])
def test_only_the_amqtt_adapter_imports_amqtt(subpackage):
    importers = [
        str(path.relative_to(PACKAGE.parent))
        for path in modules(subpackage)
        if any(name.split(".")[0] == "amqtt" for name in imports_of(path))
        and not path.is_relative_to(PACKAGE / "adapters" / "amqtt")
    ]
    assert importers == []


def test_the_checker_sees_wrong_way_imports(tmp_path):
    """A core module reaching up (relative import) or out (a third-party package) is caught."""
    fake = tmp_path / "x.py"
    fake.write_text("from ..agent import LicensingAgent\nfrom . import errors\nimport amqtt.broker\n")
    assert bad_imports([(fake, "mqtt_licensing.core.x")], {"core", "_atomic"}, CORE_THIRD_PARTY) == [
        "mqtt_licensing.core.x: imports amqtt.broker",
        "mqtt_licensing.core.x: imports mqtt_licensing.agent",
    ]


def test_every_third_party_import_is_a_declared_dependency():
    project = tomllib.loads((PACKAGE.parent / "pyproject.toml").read_text())["project"]
    # an extra counts as declared: e.g. the store's dev servers (localstripe) come with [test]
    specs = project["dependencies"] + [s for extra in project["optional-dependencies"].values() for s in extra]
    declared = {re.split(r"[\[<>=!~; ]", spec, maxsplit=1)[0].lower().replace("_", "-") for spec in specs}
    distributions = importlib.metadata.packages_distributions()
    stdlib = set(sys.stdlib_module_names) | {"__future__"}
    undeclared = set()
    for path in sorted(PACKAGE.rglob("*.py")):
        for name in imports_of(path):
            top = name.split(".")[0]
            if top in stdlib or top == "mqtt_licensing":
                continue
            owners = {d.lower().replace("_", "-") for d in distributions.get(top, [top])}
            if not owners & declared:
                undeclared.add(f"{top} ({path.relative_to(PACKAGE.parent)})")
    assert sorted(undeclared) == []
