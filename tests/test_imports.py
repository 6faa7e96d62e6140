"""No import circle in the package, imports inside functions included (issue #29).

import-linter (tests/test_layout.py) checks the layers, but an import placed inside a function
hides a circle from a reader and from the import-time check alike. This graph is built from the
source's syntax tree: every ``import`` and ``from ... import`` anywhere in a module (at the top,
in a function, in a method) is an edge; only those under ``if TYPE_CHECKING:``, which never run,
are left out."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "depthlab"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _runs(node: ast.AST) -> bool:
    """False for an ``if TYPE_CHECKING:`` block (imports for annotations only)."""
    test = getattr(node, "test", None)
    return not (
        isinstance(node, ast.If)
        and (getattr(test, "id", None) == "TYPE_CHECKING" or getattr(test, "attr", None) == "TYPE_CHECKING")
    )


def _walk(node: ast.AST):
    for child in ast.iter_child_nodes(node):
        if _runs(child):
            yield child
            yield from _walk(child)


def imported_modules(path: Path, modules: set[str]) -> set[str]:
    """The package's modules that ``path`` imports, wherever in it the import statement is."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in _walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            # `from pkg import sub` imports the submodule; `from pkg import name`, the package
            targets = [
                f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names
            ]
        else:
            continue
        found |= {t for t in targets if t in modules and t != name}
    return found


def import_graph() -> dict[str, set[str]]:
    paths = sorted(PACKAGE.rglob("*.py"))
    modules = {module_name(p) for p in paths}
    return {module_name(p): imported_modules(p, modules) for p in paths}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_graph_sees_imports_inside_functions_and_relative_ones():
    """The check itself: a lazy import (inside a function) is an edge; TYPE_CHECKING ones are not."""
    graph = import_graph()
    assert "depthlab.sweep.driver" in graph["depthlab.sweep.session"]
    assert "depthlab.sweep.session" in graph["depthlab.cli.app"]  # inside trial_runner
    assert "depthlab.depth_frontier.outputs" in graph["depthlab.depth_frontier.results"]  # inside a method
    assert "depthlab.cli.cifar" in graph["depthlab.cli.experiments"]  # `from . import cifar as _cifar`
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_module_imports_itself_back_through_a_circle():
    found = cycles(import_graph())
    assert not found, "import circles (lazy imports counted): " + "; ".join(" <-> ".join(c) for c in found)
