"""Imports flow one way (the ground layer esl_deploy <- train/export/hw_models <- the command line and the
public library API on top) and no two project files import
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
# installed names: the folders train/, export/, hw_models/ are the subpackages esl_deploy.train, ...
INSTALLED = {"esl_deploy": "esl_deploy", "train": "esl_deploy.train", "export": "esl_deploy.export",
             "hw_models": "esl_deploy.hw_models"}
MIDDLE = ("esl_deploy.train", "esl_deploy.export", "esl_deploy.hw_models")
# the top layer: modules that may import every package (the click group, the public library API)
TOP = ("esl_deploy.cli", "esl_deploy.library")
# no cycle is tolerated (hw_models/core_aware.py <-> hw_models/truenorth.py was removed by issue 11:
# CoreSpec and axon_blocks live in hw_models/cores.py, core_aware imports truenorth and packing downward)
KNOWN_CYCLES: List[Set[str]] = []


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join([INSTALLED[parts[0]]] + parts[1:])


def project_files() -> Dict[str, Path]:
    return {module_name(p): p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))}


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
    deps = imports_of("esl_deploy.export.lava.run", files["esl_deploy.export.lava.run"], set(files))
    assert {"esl_deploy.export.lava.convert", "esl_deploy.export.lava.fixed", "esl_deploy.errors"} <= deps


def test_no_import_cycle_between_project_files():
    found = [c for c in cycles(graph()) if set(c) not in KNOWN_CYCLES]
    assert found == []


def test_no_known_cycle_is_left():
    assert cycles(graph()) == []


def _layer(name: str) -> int:
    """0 the ground layer (esl_deploy's own modules), 1 train/export/hw_models, 2 the command line and API."""
    if any(name == t or name.startswith(t + ".") for t in TOP):
        return 2
    return 1 if any(name == m or name.startswith(m + ".") for m in MIDDLE) else 0


def test_the_ground_layer_imports_no_layer_above_it():
    bad = {n: sorted(d for d in deps if _layer(d) > 0) for n, deps in graph().items() if _layer(n) == 0}
    # the package's __init__ may name the top-layer API lazily (PEP 562 __getattr__): that is its purpose
    bad.pop("esl_deploy", None)
    assert {n: d for n, d in bad.items() if d} == {}


def test_no_package_imports_the_top_layer():
    assert {n: sorted(d for d in deps if _layer(d) == 2) for n, deps in graph().items()
            if _layer(n) < 2 and n != "esl_deploy" and any(_layer(d) == 2 for d in deps)} == {}


def test_the_top_layer_exists():
    assert set(TOP) <= set(project_files()), "the layers above name modules that are gone"
