"""The package's import graph: no cycles, counting imports inside functions too.

A cycle hidden by a function-level import works until someone moves the import, and it means two modules cannot be
understood (or tested) apart. The graph is read from the source with :mod:`ast`, so a lazy import counts like any
other; only :mod:`importlib` look-ups (the model-family registry's references, resolved on use) are not edges.
"""

from __future__ import annotations

import ast
from pathlib import Path

import fomm

PACKAGE = Path(fomm.__file__).parent


def _modules() -> dict[str, tuple[Path, bool]]:
    mods = {}
    for path in PACKAGE.rglob("*.py"):
        parts = ["fomm", *path.relative_to(PACKAGE).with_suffix("").parts]
        is_pkg = parts[-1] == "__init__"
        mods[".".join(parts[:-1] if is_pkg else parts)] = (path, is_pkg)
    return mods


def _targets(module: str, is_pkg: bool, node: ast.AST, mods: dict) -> list[str]:
    if isinstance(node, ast.Import):
        return [a.name for a in node.names if a.name.split(".")[0] == "fomm"]
    assert isinstance(node, ast.ImportFrom)
    if node.level:
        base = module.split(".") if is_pkg else module.split(".")[:-1]
        base = base[:len(base) - (node.level - 1)]
        target = ".".join(base + ([node.module] if node.module else []))
    else:
        target = node.module or ""
        if target.split(".")[0] != "fomm":
            return []
    # `from pkg import sub` depends on the submodule when it is one, else on the package itself.
    return [f"{target}.{a.name}" if f"{target}.{a.name}" in mods else target for a in node.names]


def import_graph() -> dict[str, set[str]]:
    """``module -> the fomm modules it imports`` (module level and inside functions)."""
    mods = _modules()
    graph: dict[str, set[str]] = {}
    for name, (path, is_pkg) in mods.items():
        edges = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                for target in _targets(name, is_pkg, node, mods):
                    while target not in mods and "." in target:
                        target = target.rsplit(".", 1)[0]
                    if target in mods and target != name:
                        edges.add(target)
        graph[name] = edges
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    counter = 0
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_the_graph_reader_sees_function_level_imports():
    graph = import_graph()
    # fomm.cli.animate imports the ONNX glue only inside main(); the reader must still see it.
    assert "fomm.cli.onnx" in graph["fomm.cli.animate"]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_anywhere_in_fomm():
    found = cycles(import_graph())
    assert not found, "import cycles: " + "; ".join(" <-> ".join(c) for c in found)


def test_the_engine_imports_no_backend_and_nothing_above_it():
    graph = import_graph()
    above = ("fomm.realtime", "fomm.eval", "fomm.train", "fomm.cli", "fomm.demo", "fomm.compositing")
    for module, edges in graph.items():
        if module.startswith("fomm.animate"):
            bad = sorted(e for e in edges if e.startswith(above))
            assert not bad, f"{module} imports {bad}"
    # Only the pipeline (and the package's re-exports) use the factory.
    users = sorted(m for m, e in graph.items() if "fomm.animate.factory" in e and m.startswith("fomm.animate"))
    assert users == ["fomm.animate", "fomm.animate.pipeline"]
