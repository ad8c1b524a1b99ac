"""The layout's rules, checked on the source: no import cycles, imports only point down
(app -> callbacks -> components, core), core has no Dash, components no torch code (the environment
is read in app/settings.py alone: tests/test_settings.py)."""
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("app", "callbacks", "components", "core")


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


MODULES = _modules()


def _imports(path: Path) -> set[str]:
    """Project modules imported anywhere in the file (also inside functions)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        out.update(n for n in names if n in MODULES)
    return out


GRAPH = {name: _imports(path) - {name} for name, path in MODULES.items()}


def _cycle(graph) -> list[str] | None:
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        state[node] = "done"
        stack.pop()
        return None
    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def _is_package_parent(a: str, b: str) -> bool:
    """`from core.methods import registry` names the package core.methods too: not a real edge back."""
    return b.startswith(a + ".") or a.startswith(b + ".")


def test_no_import_cycles():
    graph = {a: {b for b in bs if not _is_package_parent(a, b) and not MODULES[b].name == "__init__.py"}
             for a, bs in GRAPH.items()}
    assert _cycle(graph) is None, f"import cycle: {' -> '.join(_cycle(graph))}"


def test_the_cycle_finder_finds_one():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_imports_point_down():
    rank = {"app": 3, "callbacks": 2, "components": 1, "core": 0}
    for name, imported in GRAPH.items():
        for other in imported:
            mine, theirs = rank[name.split(".")[0]], rank[other.split(".")[0]]
            assert theirs <= mine, f"{name} imports {other}: imports must point down (app -> callbacks -> core)"
            assert not (name.startswith("components") and other.startswith("callbacks")), (name, other)


def test_core_has_no_dash_and_components_no_torch_code():
    torch_free = {"core.params"}
    for name, path in MODULES.items():
        source = path.read_text()
        if name.startswith("core"):
            assert "import dash" not in source and "from dash" not in source, f"{name} imports Dash"
        if name.startswith("components"):
            assert all(o in torch_free for o in GRAPH[name] if o.startswith("core")), \
                f"{name} imports core's torch code: {GRAPH[name]}"
            assert "import torch" not in source, name
