"""The tables of the README and of the documentation site are copies of the results files: write them in,
or check that they still are.

    .venv/bin/python benchmarks/readme_tables.py --write    # replace every results block by its file
    .venv/bin/python benchmarks/readme_tables.py --check    # exit 1 naming the blocks that differ

A results block is everything between ``<!-- results:NAME -->`` and ``<!-- /results:NAME -->``; its
content is ``results/NAME.md`` (written by a benchmark, see ``benchmarks/_common.write_results``). The
blocks live in README.md and in the pages of the ``docs/`` folder beside it (the site's results pages,
``docs/results/*.md``); one name may be shown on several pages. ``--check`` reports a block whose
content differs from its file, a block whose file is missing, and a results file that no block, in the
README or in any page, shows.
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Dict, List, NamedTuple

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
RESULTS = ROOT / "results"
DOCS = "docs"  # the documentation pages: this folder beside the README

OPEN = re.compile(r"<!-- results:([A-Za-z0-9_.-]+) -->")
CLOSE = "<!-- /results:{} -->"


class MarkerError(ValueError):
    """A results marker without its partner, or a name used for two blocks."""


def blocks(text: str) -> Dict[str, tuple]:
    """NAME -> (start, end) offsets of each block's content (between its two markers)."""
    out = {}
    for m in OPEN.finditer(text):
        name = m.group(1)
        if name in out:
            raise MarkerError(f"results block {name!r} appears twice")
        end = text.find(CLOSE.format(name), m.end())
        if end < 0:
            raise MarkerError(f"results block {name!r} has no closing marker {CLOSE.format(name)}")
        nested = OPEN.search(text, m.end(), end)
        if nested:
            raise MarkerError(f"results block {nested.group(1)!r} opens inside block {name!r}")
        out[name] = (m.end(), end)
    for m in re.finditer(r"<!-- /results:([A-Za-z0-9_.-]+) -->", text):
        if m.group(1) not in out:
            raise MarkerError(f"closing marker of results block {m.group(1)!r} without its opening marker")
    return out


def _norm(s: str) -> str:
    return s.strip("\n").rstrip() + "\n" if s.strip() else ""


def results_files(results: Path) -> Dict[str, Path]:
    return {p.stem: p for p in sorted(Path(results).glob("*.md"))}


class Problem(NamedTuple):
    kind: str  # "differs": block != file; "missing": block without file; "orphan": file without block
    name: str
    message: str

    def __str__(self) -> str:
        return self.message


def check(readme_text: str, results: Path = RESULTS, *, where: str = "README", orphans: bool = True) -> List[Problem]:
    """The problems of one text (empty: every block equals its results file and, with ``orphans``, every
    results file has a block in it). ``where`` names the text in the messages."""
    found = blocks(readme_text)
    files = results_files(results)
    problems = []
    for name, (a, b) in found.items():
        if name not in files:
            problems.append(Problem("missing", name, f"{name}: {where} block without results/{name}.md "
                                                     f"(run `make results`)"))
        elif _norm(readme_text[a:b]) != _norm(files[name].read_text(encoding="utf-8")):
            problems.append(Problem("differs", name, f"{name}: {where} block differs from results/{name}.md "
                                                     f"(run `benchmarks/readme_tables.py --write`)"))
    if orphans:
        for name in files:
            if name not in found:
                problems.append(Problem("orphan", name, f"{name}: results/{name}.md has no {where} block "
                                                        f"(<!-- results:{name} --> ... <!-- /results:{name} -->)"))
    return problems


def pages(readme: Path = README) -> List[Path]:
    """The README and every Markdown page under the ``docs/`` folder beside it that holds a results block."""
    docs = Path(readme).parent / DOCS
    found = sorted(p for p in docs.rglob("*.md") if OPEN.search(p.read_text(encoding="utf-8"))) \
        if docs.is_dir() else []
    return ([Path(readme)] if Path(readme).is_file() else []) + found


def _where(path: Path, readme: Path) -> str:
    return "README" if path == Path(readme) else str(path.relative_to(Path(readme).parent))


def check_pages(readme: Path = README, results: Path = RESULTS) -> List[Problem]:
    """:func:`check` over the README and the docs pages: each page's blocks against their files, and the
    results files that no page shows (``orphan``)."""
    problems, shown = [], set()
    for path in pages(readme):
        text = path.read_text(encoding="utf-8")
        shown |= set(blocks(text))
        problems += check(text, results, where=_where(path, readme), orphans=False)
    for name in results_files(results):
        if name not in shown:
            problems.append(Problem("orphan", name, f"{name}: results/{name}.md has no block in the README or "
                                                    f"the docs pages (<!-- results:{name} --> ... "
                                                    f"<!-- /results:{name} -->)"))
    return problems


def write(readme_text: str, results: Path = RESULTS) -> str:
    """The text (the README or a docs page) with every block whose results file exists replaced by that file."""
    files = results_files(results)
    out, pos = [], 0
    for name, (a, b) in sorted(blocks(readme_text).items(), key=lambda kv: kv[1]):
        if name not in files:
            continue
        out += [readme_text[pos:a], "\n", _norm(files[name].read_text(encoding="utf-8"))]
        pos = b
    out.append(readme_text[pos:])
    return "".join(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = ap.add_mutually_exclusive_group(required=True)
    mode.add_argument("--write", action="store_true", help="copy every results file into its blocks")
    mode.add_argument("--check", action="store_true", help="exit 1 if a block differs from its results file")
    ap.add_argument("--readme", type=Path, default=README, help="the README; the docs/ folder beside it too")
    ap.add_argument("--results", type=Path, default=RESULTS)
    a = ap.parse_args(argv)
    path = a.readme
    try:
        targets = pages(a.readme)
        written = 0
        for path in targets:
            text = path.read_text(encoding="utf-8")
            if a.write:
                new = write(text, a.results)
                if new != text:
                    sys.path.insert(0, str(ROOT))
                    from esl_deploy.atomic import atomic_write_text

                    atomic_write_text(path, new)
                written += len(blocks(new))
        problems = check_pages(a.readme, a.results)
    except MarkerError as e:
        print(f"{path}: {e}", file=sys.stderr)
        return 1
    for p in problems:
        print(p, file=sys.stderr)
    if a.write:
        names = ", ".join(_where(p, a.readme) for p in targets)
        print(f"{written} results blocks written in {len(targets)} files ({names})"
              + (f"; {len(problems)} problems" if problems else ""), file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
