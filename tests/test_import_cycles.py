"""Imports flow one way (esl_deploy <- train/export/hw_models <- cli.py) and no two project files import
each other, directly or around a longer loop. Imports are read from the source (``ast``): every
``import``/``from ... import`` of a project module anywhere in a file, inside functions and
``TYPE_CHECKING`` blocks included, since each is a dependency of that file."""
from __future__ import annotations

import ast
import functools
from pathlib import Path
from typing import Dict, List, Optional, Set


ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("esl_deploy", "train", "export", "hw_models")
# no cycle is tolerated (hw_models/core_aware.py <-> hw_models/truenorth.py was removed by issue 11:
# CoreSpec and axon_blocks live in hw_models/cores.py, core_aware imports truenorth and packing downward)
KNOWN_CYCLES: List[Set[str]] = []


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def project_files() -> Dict[str, Path]:
    files = {module_name(p): p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))}
    files["cli"] = ROOT / "cli.py"
    return files


def _resolve(name: str, modules: Set[str]) -> Optional[str]:
    """The project module a dotted name refers to (a module, or a name inside one), or None."""
    while name:
        if name in modules:
            return name
        name = name.rpartition(".")[0]
    return None


def imports_of(name: str, path: Path, modules: Set[str]) -> Set[str]:
    """Project modules that ``path`` (module ``name``) imports."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: Set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            targets = [f"{base}.{a.name}" for a in node.names] + [base]
        else:
            continue
        for t in targets:
            m = _resolve(t, modules)
            if m is not None and m != name:
                out.add(m)
    # importing a.b.c runs a/__init__ and a/b/__init__ too; those are not cycles of this file
    return {m for m in out if not name.startswith(m + ".")}


@functools.lru_cache(maxsize=1)
def graph() -> Dict[str, Set[str]]:
    files = project_files()
    return {n: imports_of(n, p, set(files)) for n, p in files.items()}


def cycles(g: Dict[str, Set[str]]) -> List[List[str]]:
    """Strongly connected components of more than one module (Tarjan), each sorted."""
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    stack: List[str] = []
    on: Set[str] = set()
    out: List[List[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(g.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(g):
        if v not in index:
            visit(v)
    return out


def test_the_reader_finds_imports_and_cycles():
    g = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(g) == [["a", "b", "c"]]
    files = project_files()
    deps = imports_of("export.lava.run", files["export.lava.run"], set(files))
    assert {"export.lava.convert", "export.lava.fixed", "esl_deploy.errors"} <= deps


def test_no_import_cycle_between_project_files():
    found = [c for c in cycles(graph()) if set(c) not in KNOWN_CYCLES]
    assert found == []


def test_no_known_cycle_is_left():
    assert cycles(graph()) == []


def test_the_ground_layer_imports_no_layer_above_it():
    above = ("train", "export", "hw_models", "cli")
    bad = {n: sorted(d for d in deps if d.split(".")[0] in above)
           for n, deps in graph().items() if n.split(".")[0] == "esl_deploy"}
    assert {n: d for n, d in bad.items() if d} == {}


def test_no_package_imports_the_command_line():
    assert [n for n, deps in graph().items() if "cli" in deps] == []
