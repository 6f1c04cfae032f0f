"""The library's layout (recbench/__init__.py): imports point one way.

The import graph is read from the source (every `import` and `from ... import`, inside
functions too), so a cycle fails here before it fails at run time."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "recbench"


def module_name(path: Path, package: Path = PACKAGE) -> str:
    parts = path.relative_to(package.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(package: Path = PACKAGE) -> dict[str, set[str]]:
    """{module: the recbench modules it imports} for every module of `package`."""
    modules = {module_name(p, package): p for p in package.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        found = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                # `from recbench.training import engine` imports the submodule engine
                targets = [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules
                           else node.module for a in node.names]
            else:
                continue
            found |= {t for t in targets if t in modules and t != name}
        graph[name] = found
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of `graph` as a path [a, b, ..., a], or None."""
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        state[node] = "done"
        stack.pop()
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def stage(module: str) -> str:
    """recbench.training.engine -> training; a shared top-level module -> its own name."""
    return module.split(".")[1] if module.count(".") else module


def stage_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    stages: dict[str, set[str]] = {}
    for module, targets in graph.items():
        stages.setdefault(stage(module), set()).update(
            stage(t) for t in targets if stage(t) != stage(module))
    return stages


def test_the_finder_sees_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_the_graph_reads_function_level_and_submodule_imports(tmp_path):
    pkg = tmp_path / "recbench"
    (pkg / "sub").mkdir(parents=True)
    for name in ("__init__.py", "sub/__init__.py", "sub/one.py"):
        (pkg / name).write_text("")
    (pkg / "top.py").write_text("def f():\n    from recbench.sub import one\n")
    (pkg / "sub" / "one.py").write_text("import recbench.top\n")
    graph = import_graph(pkg)
    assert graph["recbench.top"] == {"recbench.sub.one"}
    assert find_cycle(graph) == ["recbench.sub.one", "recbench.top", "recbench.sub.one"]


def test_no_module_import_cycle():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_no_cycle_between_stages():
    """Subpackages (and the shared top-level modules) import each other one way only."""
    cycle = find_cycle(stage_graph(import_graph()))
    assert cycle is None, "stages import each other: " + " -> ".join(cycle)


@pytest.mark.parametrize("module", sorted(m for m in import_graph()
                                          if stage(m) == "reporting"))
def test_reporting_reads_results_never_a_model_or_the_engine(module):
    """Tables and figures read only results files and paper_numbers.yaml (DESIGN.md)."""
    seen, todo = set(), [module]
    graph = import_graph()
    while todo:
        m = todo.pop()
        if m not in seen:
            seen.add(m)
            todo.extend(graph[m])
    assert not {m for m in seen if stage(m) == "training"}, module
    source = "\n".join((PACKAGE.parent / (m.replace(".", "/") + ".py")).read_text()
                       for m in seen if (PACKAGE.parent / (m.replace(".", "/") + ".py")).exists())
    assert "from models" not in source and "import models" not in source, module


def test_every_subpackage_says_its_role():
    """recbench/__init__.py lists every subpackage and shared module with its role."""
    layout = (PACKAGE / "__init__.py").read_text()
    names = {p.parent.name for p in PACKAGE.glob("*/__init__.py")}
    names |= {p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__"}
    missing = sorted(n for n in names if f"{n}/" not in layout and f"{n}.py" not in layout)
    assert not missing, f"recbench/__init__.py does not describe {missing}"
