"""training/ imports in one direction: its modules' import graph, read from the source, has no loop."""

from __future__ import annotations

import ast
from pathlib import Path

import training

ROOT = Path(training.__file__).parent


def module_names(root: Path = ROOT) -> dict[str, Path]:
    """`training.x.y` -> its file, for every module and package under `root`."""
    names = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    return names


def _package_of(module: str, path: Path) -> str:
    return module if path.name == "__init__.py" else module.rpartition(".")[0]


def import_graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    """Every import of one of `modules` by another: at the top, inside functions and under TYPE_CHECKING
    alike (a loop a function-level import hides is still a loop for the reader)."""
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative: from the package this module is in
                    package = _package_of(name, path).split(".")
                    base = ".".join(package[:len(package) - node.level + 1] + ([base] if base else []))
                # `from training.x import y`: y is a module, or a name defined in training.x
                targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                           for alias in node.names]
            graph[name].update(t for t in targets if t in modules and t != name)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import loop as [a, b, ..., a], or None."""
    done: set[str] = set()
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        if node in path:
            return [*path[path.index(node):], node]
        if node in done:
            return None
        path.append(node)
        for nxt in sorted(graph[node]):
            if (loop := visit(nxt)) is not None:
                return loop
        path.pop()
        done.add(node)
        return None

    for start in sorted(graph):
        if (loop := visit(start)) is not None:
            return loop
    return None


def test_training_has_no_import_loop():
    graph = import_graph(module_names())
    assert "training.errors" in graph and "training.realhands.scenes" in graph
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph) or [])


def test_the_graph_sees_function_level_imports_and_finds_a_loop(tmp_path):
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from pkg.sub import b\n")
    (pkg / "sub" / "b.py").write_text("def f():\n    from ..a import X\n")
    (pkg / "c.py").write_text("import pkg.a\n")
    graph = import_graph(module_names(pkg))
    assert graph["pkg.a"] == {"pkg.sub.b"} and graph["pkg.sub.b"] == {"pkg.a"} and graph["pkg.c"] == {"pkg.a"}
    assert find_cycle(graph) == ["pkg.a", "pkg.sub.b", "pkg.a"]
    (pkg / "sub" / "b.py").write_text("X = 1\n")
    assert find_cycle(import_graph(module_names(pkg))) is None
