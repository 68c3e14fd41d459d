"""The shape of the house, read from the source: imports run one way, nothing imports in a loop, serving
shares only the version format (and the hand stage) with training, and backends are used through their
written contract (service/backends/base.py), never probed.

Every `import` counts, also those inside functions: a loop or an upward import there is the same tangle,
only deferred.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("service", "training", "version_format", "hands")
GENERATED = "service.grpc._generated"

# service/, lowest layer first: a module may import its own layer and the layers below it, never above
SERVICE_LAYERS: list[tuple[str, tuple[str, ...]]] = [
    # the code protoc generates from proto/ (imgclf's, KServe's, the vendored TF Serving protos) imports
    # nothing of the project: the bottom, read by runtimes (saved_model.pb, TF Serving) and transports alike
    ("protocols", (GENERATED, "service.tensors")),
    ("shared", ("service.errors", "service.settings", "service.metrics", "service.request_log", "service.heap",
                "service.priority", "service.images", "service.auth", "service.tls", "service.grpc_options",
                "service.quiet", "service.demo", "service.hand_reader")),
    ("runtimes", ("service.backends",)),
    ("registry", ("service.registry",)),
    ("core", ("service.core", "service.v2", "service.hand_tensors")),
    ("features", ("service.teach",)),
    ("transports", ("service.rest", "service.grpc", "service.server", "service.cli", "service.client")),
]
# the one place serving reaches into training outside the CLI: a version exported before every version
# carried its float LiteRT model (assets.extra/model.tflite) is converted at load, importing TensorFlow
# then and only then; `imgclf quantize` adds the file to such a version
SERVING_USES_TRAINING = {("service.backends.litert", "training.quantize")}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            if "_generated" not in path.parts:
                found[module_name(path)] = path
    # one module for all the generated code, so that importing it is not counted as importing service.grpc
    found[GENERATED] = ROOT / "service" / "grpc" / "_generated" / "__init__.py"
    return found


def imports_of(path: Path, modules: dict[str, Path]) -> set[str]:
    """The project modules `path` imports (a `from package import name` counts as the submodule when
    `name` is one), anywhere in the file."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules else node.module
                     for a in node.names]
        else:
            continue
        for name in names:
            while name and name not in modules:  # `import a.b.c` of a module `a.b`: the deepest known one
                name = name.rpartition(".")[0]
            if name:
                out.add(name)
    return out


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    modules = project_modules()
    return {name: imports_of(path, modules) - {name} for name, path in modules.items()}


def in_package(module: str, *packages: str) -> bool:
    return any(module == p or module.startswith(p + ".") for p in packages)


def find_loops(graph: dict[str, set[str]]) -> list[list[str]]:
    """The groups of modules that import each other, directly or not (Tarjan's strongly connected
    components with more than one module)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    loops: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                loops.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return loops


def test_no_import_loops(graph: dict[str, set[str]]) -> None:
    assert not find_loops(graph)


def test_the_loop_check_finds_a_loop() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set(), "e": {"d"}}
    assert find_loops(graph) == [["a", "b", "c"]]


def test_the_version_format_and_the_hand_stage_import_neither_side(graph: dict[str, set[str]]) -> None:
    for module, deps in graph.items():
        if in_package(module, "version_format"):
            assert not [d for d in deps if not in_package(d, "version_format")], module
        if in_package(module, "hands"):
            assert not [d for d in deps if in_package(d, "service", "training")], module
    for path in (ROOT / "version_format").rglob("*.py"):
        assert not re.search(r"^\s*(import|from) (tensorflow|keras)\b", path.read_text(), re.MULTILINE), path


def test_training_never_imports_serving(graph: dict[str, set[str]]) -> None:
    bad = {m: sorted(d for d in deps if in_package(d, "service"))
           for m, deps in graph.items() if in_package(m, "training")}
    assert not {m: d for m, d in bad.items() if d}


def test_serving_imports_training_only_in_the_cli(graph: dict[str, set[str]]) -> None:
    bad = {(m, d) for m, deps in graph.items() if in_package(m, "service") and m != "service.cli"
           for d in deps if in_package(d, "training")}
    assert bad == SERVING_USES_TRAINING, f"service -> training outside the CLI: {sorted(bad - SERVING_USES_TRAINING)}"


def layer_of(module: str) -> int:
    for rank, (_, prefixes) in enumerate(SERVICE_LAYERS):
        if in_package(module, *prefixes):
            return rank
    raise AssertionError(f"{module} is in no layer of SERVICE_LAYERS: place it")


def test_service_imports_run_one_way(graph: dict[str, set[str]]) -> None:
    upward = []
    for module, deps in graph.items():
        if not in_package(module, "service") or module == "service":
            continue
        for dep in deps:
            if in_package(dep, "service") and dep != "service" and layer_of(dep) > layer_of(module):
                upward.append(f"{module} ({SERVICE_LAYERS[layer_of(module)][0]}) -> {dep} "
                              f"({SERVICE_LAYERS[layer_of(dep)][0]})")
    assert not upward, "upward imports:\n" + "\n".join(sorted(upward))


def test_backends_and_runtimes_are_never_probed() -> None:
    # what a backend or a runtime offers is declared in service/backends/base.py and checked by mypy
    probes = []
    for path in (ROOT / "service").rglob("*.py"):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if re.search(r"\b(getattr|hasattr)\([^,]*\b(backend|model)\b", line):
                probes.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not probes, "\n".join(probes)
