"""Every module of the library, the Ray runtime and the sweeps imports on its own,
whatever is imported first (catches circular imports that only bite when a user
imports a submodule directly)."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = """
import importlib, pkgutil, sys
PACKAGES = ("fedsim", "actors", "sweeps")
names = []
for package in PACKAGES:
    root = importlib.import_module(package)
    names += [package] + sorted(m.name for m in pkgutil.walk_packages(root.__path__, package + ".")
                                if not m.name.endswith("__main__"))
failures = []
for name in names:
    for loaded in [m for m in sys.modules if m.split(".")[0] in PACKAGES]:
        del sys.modules[loaded]
    try:
        importlib.import_module(name)
    except Exception as error:  # report every failing module, not only the first
        failures.append(f"{name}: {type(error).__name__}: {error}")
print("\\n".join(failures))
print("MODULES", len(names))
sys.exit(1 if failures else 0)
"""


def test_each_module_imports_first():
    environment = {**os.environ, "PYTHONPATH": str(ROOT)}  # this checkout, not an installed copy
    result = subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, env=environment,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    count = int(result.stdout.strip().splitlines()[-1].split()[-1])
    assert count > 50  # the walk found the packages' modules


def test_library_has_no_ray_import():
    offenders = [str(path.relative_to(ROOT)) for path in (ROOT / "fedsim").rglob("*.py")
                 if any(line.strip().startswith(("import ray", "from ray"))
                        for line in path.read_text().splitlines())]
    assert offenders == []


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _module_level_imports(tree: ast.Module):
    """Import statements that run when the module is imported: top level, and inside
    top-level ``try``/``if``/``with`` blocks, but not in functions, classes' methods or
    ``if TYPE_CHECKING:`` blocks."""
    pending = list(tree.body)
    while pending:
        node = pending.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        elif isinstance(node, ast.If):
            pending += node.orelse if _is_type_checking(node.test) else node.body + node.orelse
        elif isinstance(node, ast.Try):
            pending += node.body + node.orelse + node.finalbody + [s for h in node.handlers for s in h.body]
        elif isinstance(node, (ast.With, ast.ClassDef)):
            pending += node.body


def import_graph(package: str = "fedsim") -> dict[str, set[str]]:
    """``{module: modules of package it imports at module level}`` (``from a import b``
    counts as an import of ``a.b`` when that is a module)."""
    paths = {_module_name(p): p for p in (ROOT / package).rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in paths.items():
        is_package = path.name == "__init__.py"
        edges: set[str] = set()
        for node in _module_level_imports(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                base = node.module or ""
                if node.level:
                    anchor = name.split(".")[: len(name.split(".")) - node.level + (1 if is_package else 0)]
                    base = ".".join(anchor + ([base] if base else []))
                targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in paths else base
                           for alias in node.names]
            edges.update(t for t in targets if t in paths and t != name)
        graph[name] = edges
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``graph`` as ``[a, b, ..., a]``, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: finished
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                return path[path.index(target):] + [target]
            if target not in state:
                found = visit(target)
                if found:
                    return found
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state:
            found = visit(start)
            if found:
                return found
    return None


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_the_graph_sees_module_level_imports_only(tmp_path, monkeypatch):
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from pkg import b\nfrom typing import TYPE_CHECKING\n"
                                  "if TYPE_CHECKING:\n    from pkg import c\n")
    (package / "b.py").write_text("from . import c\ndef f():\n    from pkg import a\n")
    (package / "c.py").write_text("try:\n    import pkg.a\nexcept ImportError:\n    pass\n")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    assert import_graph("pkg") == {"pkg": set(), "pkg.a": {"pkg.b"}, "pkg.b": {"pkg.c"}, "pkg.c": {"pkg.a"}}


def test_fedsim_has_no_import_cycle():
    graph = import_graph("fedsim")
    assert len(graph) > 50 and graph["fedsim.simulation"]  # the walk found the modules and their imports
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle among fedsim modules: " + " → ".join(cycle)
