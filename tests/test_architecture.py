"""Imports point one way: core and inspect import only the standard library (DESIGN.md §2)."""

import ast
import pathlib
import sys

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "ckptlab"
PURE = {
    "core": {"ckptlab.core", "ckptlab.errors"},
    "inspect": {"ckptlab.core", "ckptlab.errors", "ckptlab.inspect"},
}


def imported_modules(path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module


@pytest.mark.parametrize("layer", sorted(PURE))
def test_pure_layers_import_only_stdlib(layer):
    allowed = PURE[layer]
    bad = []
    for path in sorted((PACKAGE / layer).rglob("*.py")):
        for module in imported_modules(path):
            top = module.split(".")[0]
            if top == "__future__" or top in sys.stdlib_module_names:
                continue
            if any(module == a or module.startswith(a + ".") for a in allowed):
                continue
            bad.append(f"{path.relative_to(PACKAGE)} imports {module}")
    assert not bad, "\n".join(bad)


def test_errors_module_is_stdlib_only():
    modules = set(imported_modules(PACKAGE / "errors.py"))
    assert all(m.split(".")[0] in sys.stdlib_module_names or m == "__future__" for m in modules)


def test_only_the_executor_assigns_restored_values():
    """Restored values reach user objects only through the engine's executor and adapters."""
    offenders = [
        str(p.relative_to(PACKAGE))
        for p in PACKAGE.rglob("*.py")
        if "._value = " in p.read_text() and p.name != "_variable.py"
    ]
    assert offenders == []
