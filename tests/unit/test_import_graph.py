"""No import cycle between the sub-packages of ``cht_bridge``: each layer can be read, tested and
replaced without the ones above it. Imports are read with ``ast`` (nothing is imported), including
those inside functions, which run too; only ``if TYPE_CHECKING:`` blocks are left out."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "plugins" / "cht_bridge"


def unit(module: str) -> str | None:
    """The node a module belongs to: its sub-package, or the top-level module itself (``errors``)."""
    parts = module.split(".")
    if parts[0] != "cht_bridge" or len(parts) < 2:
        return None
    return parts[1]


def module_name(path: Path) -> str:
    relative = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(relative.parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imported(tree: ast.AST, module: str, is_package: bool) -> Iterator[str]:
    """Every module ``tree`` imports when it runs (relative imports resolved)."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _type_checking(node):
            stack.extend(node.orelse)
            continue
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".") if is_package else module.split(".")[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            yield base
            yield from (f"{base}.{alias.name}" for alias in node.names)  # ``from pkg import module``
        stack.extend(ast.iter_child_nodes(node))


def package_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        module = module_name(path)
        source = unit(module) if module != "cht_bridge" else None
        if source is None:
            continue
        graph.setdefault(source, set())
        for name in imported(ast.parse(path.read_text(), str(path)), module, path.name == "__init__.py"):
            target = unit(name)
            if target not in (None, source) and ((PACKAGE / target).is_dir() or (PACKAGE / f"{target}.py").exists()):
                graph[source].add(target)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle as ``[a, b, ..., a]``, or None when the graph is acyclic (depth-first search)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_the_sub_packages_import_each_other_without_a_cycle():
    graph = package_graph()
    assert {"http", "cht", "source", "destinations", "hooks"} <= set(graph)  # the walk saw the tree
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle between cht_bridge sub-packages: " + " -> ".join(cycle or [])


def test_the_http_layer_and_the_cht_client_stand_below_sources_and_destinations():
    graph = package_graph()
    assert not graph["http"] & {"source", "destinations", "cht", "hooks", "reverse", "sync", "operators"}
    assert not graph["cht"] & {"source", "destinations", "hooks", "reverse", "sync", "operators"}
    assert "destinations" not in graph["source"] and "source" not in graph["destinations"]


def test_find_cycle_names_the_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
