"""The package's layering, read from the source: no import cycles, between modules or between
packages, and each layer imports only the layers below it (see the README's Development section)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"


def runtime_nodes(tree: ast.AST):
    """Every node of ``tree`` but those under ``if TYPE_CHECKING:`` (names for annotations, never imported)."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            continue
        yield node
        yield from runtime_nodes(node)


def module_imports() -> dict[str, set[str]]:
    """Every ``signlab`` module and the ``signlab`` modules it imports anywhere in its body when it runs."""
    graph: dict[str, set[str]] = {}
    for path in sorted((SRC / "signlab").rglob("*.py")):
        parts = path.relative_to(SRC).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        package = name if parts[-1] == "__init__" else name.rpartition(".")[0]
        found: set[tuple[str, ...]] = set()
        for node in runtime_nodes(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                found |= {(a.name,) for a in node.names}
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
                found |= {(f"{base}.{a.name}", base) for a in node.names}  # a module, else a name in `base`
        graph[name] = found
    return {m: {next((n for n in names if n in graph), "") for names in imports} - {"", m} for m, imports in graph.items()}


def layer(module: str) -> str:
    """``signlab.data.features`` -> ``data``; top-level modules are layers of their own."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "signlab"


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_no_module_imports_itself_through_others():
    assert find_cycle(module_imports()) is None


def test_no_package_imports_itself_through_others():
    graph: dict[str, set[str]] = {}
    for module, imports in module_imports().items():
        if module == "signlab":
            continue  # the package's own __init__ re-exports the public API
        graph.setdefault(layer(module), set()).update(layer(i) for i in imports if layer(i) != layer(module))
    assert find_cycle(graph) is None


ALLOWED = {  # what each package may import, besides itself and the leaf modules (signlab.errors, ...)
    "data": set(),
    "models": set(),
    "decoding": {"models"},
    "extract": {"data"},
    "corpora": {"data", "extract"},
    "inference": {"data", "models", "decoding", "extract"},
    "training": {"data", "models", "decoding", "inference"},
}


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_each_package_imports_only_the_layers_below_it(package):
    leaves = {m for m in module_imports() if m.count(".") == 1 and not (SRC / Path(*m.split("."))).is_dir()}
    leaf_names = {layer(m) for m in leaves}
    wrong = sorted(f"{m} imports {i}" for m, imports in module_imports().items() if layer(m) == package
                   for i in imports if layer(i) != package and layer(i) not in ALLOWED[package] | leaf_names)
    assert not wrong
