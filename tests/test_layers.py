"""The import graph: data flows one way, and the low layers know no Flask."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).parent.parent / "flask_lockout"
#: Policy, storage, engines and errors: usable without a Flask app.
LOW = ["policy", "limits", "errors", "lockout", "throttle", "ratelimit", "tokens"]
LOW_PACKAGES = ["storage"]
FLASK_LAYER = ("flask", "click", "werkzeug", "jinja2", "itsdangerous", "markupsafe")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """Absolute names of every module ``path`` imports, TYPE_CHECKING aside."""
    tree = ast.parse(path.read_text())
    skipped = {
        id(node)
        for block in ast.walk(tree)
        if isinstance(block, ast.If) and "TYPE_CHECKING" in ast.unparse(block.test)
        for node in ast.walk(block)
    }
    package = module_name(path)
    if path.name != "__init__.py":
        package = package.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
                found.add(target)
                found |= {f"{target}.{alias.name}" for alias in node.names}
            elif node.module:
                found.add(node.module)
    return found


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}


def package_graph() -> dict[str, set[str]]:
    graph = {}
    for name, path in MODULES.items():
        deps = {m for m in imports(path) if m in MODULES and m != "flask_lockout"}
        # A submodule also depends on its parent packages being imported.
        for dep in list(deps):
            parts = dep.split(".")
            deps |= {".".join(parts[:i]) for i in range(2, len(parts))}
        graph[name] = deps - {name}
    return graph


def reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for dep in graph[todo.pop()]:
            if dep not in seen:
                seen.add(dep)
                todo.append(dep)
    return seen


def test_no_import_circle() -> None:
    graph = package_graph()
    circles = [name for name in graph if name in reachable(graph, name)]
    assert circles == []


def low_modules() -> list[str]:
    names = [f"flask_lockout.{m}" for m in LOW]
    names += [m for m in MODULES if m.split(".")[1:2] == LOW_PACKAGES]
    return sorted(names)


@pytest.mark.parametrize("name", low_modules())
def test_low_layers_reach_no_flask(name: str) -> None:
    graph = package_graph()
    reached = {name} | reachable(graph, name)
    outside = {
        imported
        for module in reached
        for imported in imports(MODULES[module])
        if imported.split(".")[0] in FLASK_LAYER and imported != "werkzeug.exceptions"
    }
    assert outside == set(), f"{name} reaches {outside}"


@pytest.mark.parametrize("name", sorted(MODULES))
def test_each_module_imports_on_its_own(name: str) -> None:
    result = subprocess.run(
        [sys.executable, "-c", f"import {name}"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr


#: Packages whose private names are promises nobody made to us.
DEPENDENCIES = ("flask", "werkzeug", "redis", "valkey")


def private_names_used(path: Path) -> list[str]:
    """``_private`` names ``path`` imports from a dependency, or reaches as
    an attribute of a dependency's module (``flask.globals._cv_app``)."""
    tree = ast.parse(path.read_text())
    modules = set()
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and not node.level:
            top = node.module.split(".")[0]
            if top in DEPENDENCIES:
                parts = [*node.module.split("."), *(a.name for a in node.names)]
                found += [node.module for part in parts if part.startswith("_")]
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in DEPENDENCIES:
                    modules.add((alias.asname or alias.name).split(".")[0])
                    if any(p.startswith("_") for p in alias.name.split(".")):
                        found.append(alias.name)
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr.startswith("_"):
            chain = ast.unparse(node)
            if chain.split(".")[0] in modules:
                found.append(chain)
    return found


@pytest.mark.parametrize(
    "path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.relative_to(PACKAGE))
)
def test_no_private_name_of_a_dependency_is_used(path: Path) -> None:
    assert private_names_used(path) == []


def test_the_private_name_check_finds_what_it_looks_for(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text(
        "import flask.globals\n"
        "from flask.globals import _cv_request\n"
        "from redis._parsers import Encoder\n"
        "x = flask.globals._cv_app\n"
        "from flask import request\n"
    )
    assert private_names_used(sample) == [
        "flask.globals",
        "redis._parsers",
        "flask.globals._cv_app",
    ]
