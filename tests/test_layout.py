"""The package's shape: no import cycle (imports inside functions count), the web UI free of model libraries."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "lmdemo"
HEAVY = ("torch", "transformers", "peft", "bitsandbytes")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports(path: Path) -> set[str]:
    """Every module a file imports, anywhere in it (top level, functions, TYPE_CHECKING blocks excepted)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skip = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
            for child in node.body for n in ast.walk(child)}
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found.add(module)
            found.update(f"{module}.{a.name}" for a in node.names)  # `from pkg import submodule`
    return found


def graph() -> dict[str, set[str]]:
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    edges = {}
    for name, path in modules.items():
        # a module's own package __init__ is not an edge: importing a.b runs a/__init__ first anyway
        edges[name] = {m for m in imports(path) if m in modules and m != name and not name.startswith(m + ".")}
    return edges


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_no_import_cycle_in_lmdemo():
    cycle = find_cycle(graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_cycle_check_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_lmdemo_never_imports_gradio():
    for path in PACKAGE.rglob("*.py"):
        assert not any(m == "gradio" or m.startswith("gradio.") for m in imports(path)), path


def test_webui_imports_no_model_library():
    for path in (ROOT / "webui").rglob("*.py"):
        heavy = [m for m in imports(path) if m.split(".")[0] in HEAVY]
        assert not heavy, f"{path.name} imports {heavy}"


def test_layers_are_subpackages_one_level_deep():
    flat = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert flat == ["__init__.py", "__main__.py", "cli.py", "config.py", "errors.py"], flat
    for sub in ("models", "engine", "jobs", "train", "eval", "serve", "data"):
        assert (PACKAGE / sub / "__init__.py").is_file(), sub


def test_the_facade_is_lazy_and_every_public_name_resolves():
    import subprocess
    import sys

    code = ("import sys, lmdemo; assert 'torch' not in sys.modules, 'import lmdemo pulled in torch'; "
            "[getattr(lmdemo, n) for n in lmdemo.__all__]; print(len(lmdemo.__all__))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert out.returncode == 0, out.stderr
    assert int(out.stdout) >= 30
