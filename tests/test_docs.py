"""The documentation site (``mkdocs.yml``, ``docs/``): ``mkdocs build --strict`` passes (broken links, missing
anchors, pages outside the nav and unresolved references fail it), every page the site promises is built,
the API reference renders every public name of ``esl_deploy`` and every module a ``:::`` directive names,
the CLI reference holds every command of the click group with every option, and each tutorial page shows
its script, which a test runs."""
from __future__ import annotations

import html
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
MKDOCS = Path(sys.executable).with_name("mkdocs")

PAGES = [
    "index.md", "getting-started.md",
    "tutorials/own-snntorch-model.md", "tutorials/mnist-benchmark.md", "tutorials/deploy-to-lava.md",
    "tutorials/truenorth-energy.md", "tutorials/foreign-nir.md", "tutorials/torchrun.md",
    "concepts/training.md", "concepts/library.md", "concepts/distributed.md", "concepts/cost-models.md",
    "concepts/fixed-point.md", "concepts/nir.md", "concepts/failure-behaviour.md", "concepts/environment.md",
    "results/index.md", "results/digits.md", "results/mnist.md", "results/lava.md", "results/energy.md",
    "results/nir.md", "results/speed.md",
    "reference/api.md", "reference/cli.md", "reference/models.md", "reference/training.md",
    "reference/export.md", "reference/hardware.md",
]


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site")
    r = subprocess.run([str(MKDOCS), "build", "--strict", "--config-file", str(ROOT / "mkdocs.yml"),
                        "--site-dir", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-6000:]
    return out


def page_html(site: Path, page: str) -> str:
    """The built HTML of a page given by its Markdown path (``reference/cli.md`` -> ``reference/cli/index.html``)."""
    stem = page[:-len(".md")]
    folder = stem[:-len("index")] if stem == "index" or stem.endswith("/index") else stem  # index.md: its folder
    path = site / folder / "index.html"
    return path.read_text(encoding="utf-8")


def page_text(site: Path, page: str) -> str:
    return html.unescape(re.sub(r"<[^>]+>", "", page_html(site, page)))


def ids(site: Path, page: str) -> set:
    return set(re.findall(r'id="([^"]+)"', page_html(site, page)))


def plain(docstring: str) -> str:
    """A reST docstring as the site shows it: roles as their (short) target, no backticks."""
    role = lambda m: m.group(2).rsplit(".", 1)[-1] if m.group(1) else m.group(2)  # noqa: E731
    return re.sub(r":\w+:`(~?)([^`]*)`", role, docstring).replace("`", "")


def section(site: Path, page: str, anchor: str) -> str:
    """The text of a page from the heading ``anchor`` to the next heading of its level or above."""
    doc = page_html(site, page)
    start = doc.index(f'id="{anchor}"')
    end = re.compile(r"<h[12][ >]").search(doc, start)
    return html.unescape(re.sub(r"<[^>]+>", "", doc[start:end.start() if end else len(doc)]))


def test_every_page_is_built_and_listed(site):
    for page in PAGES:
        assert (DOCS / page).is_file() or page == "reference/cli.md", page  # cli.md: made by docs/hooks.py
        assert len(page_text(site, page)) > 500, page
    # every Markdown page is one of them (the strict build also refuses a page missing from the nav)
    written = {str(p.relative_to(DOCS)) for p in DOCS.rglob("*.md")}
    assert written <= set(PAGES), sorted(written - set(PAGES))


def test_every_public_api_name_is_in_the_reference(site):
    import esl_deploy

    names = [n for n in esl_deploy.__all__ if not n.startswith("__")]
    assert {"load", "Sparsifier", "deployable", "to_nir", "export_network", "simulate", "energy"} <= set(names)
    found = ids(site, "reference/api.md")
    text = page_text(site, "reference/api.md")
    for name in names:
        obj = getattr(esl_deploy, name)
        anchor = f"{obj.__module__}.{obj.__qualname__}"
        assert anchor in found, f"{name}: no {anchor} in the API reference"
        first = " ".join(plain(obj.__doc__).split()[:6])  # its docstring, rendered
        assert first in " ".join(text.split()), f"{name}: docstring not rendered"
    for method in ("step", "state_dict", "load_state_dict", "density", "weight_density"):
        assert f"esl_deploy.train.sparsifier.Sparsifier.{method}" in found, method


def test_every_module_the_reference_names_is_rendered(site):
    for md in sorted((DOCS / "reference").glob("*.md")):
        page = f"reference/{md.name}"
        targets = re.findall(r"^::: ([\w.]+)", md.read_text(encoding="utf-8"), flags=re.M)
        assert targets or md.name == "cli.md", page
        found = ids(site, page)
        for target in targets:
            assert target in found, f"{page}: {target} not rendered"


def test_every_cli_command_and_option_is_in_the_reference(site):
    from esl_deploy import cli

    cli._register_commands()
    commands = cli.esl.commands
    assert set(commands) >= {"train", "inspect", "export", "simulate", "energy"}
    found = ids(site, "reference/cli.md")
    for name, cmd in commands.items():
        assert f"esl-{name}" in found, name
        text = section(site, "reference/cli.md", f"esl-{name}")
        assert f"Usage: esl {name}" in text, name
        for param in cmd.params:
            for opt in [*getattr(param, "opts", []), *getattr(param, "secondary_opts", [])]:
                if opt.startswith("-"):
                    assert re.search(rf"(?<![\w-]){re.escape(opt)}(?![\w-])", text), \
                        f"esl {name}: {opt} missing from the CLI reference"


def test_each_tutorial_page_shows_its_script_and_a_test_runs_it(site):
    scripts = sorted((DOCS / "tutorials").glob("*.py"))
    assert {s.stem for s in scripts} >= {"own_snntorch_model", "mnist_benchmark", "deploy_to_lava",
                                         "truenorth_energy", "foreign_nir", "torchrun_training"}
    tests = "\n".join(p.read_text(encoding="utf-8") for p in (ROOT / "tests").glob("test_*.py"))
    for script in scripts:
        pages = [p for p in (DOCS / "tutorials").glob("*.md")
                 if f'--8<-- "docs/tutorials/{script.name}"' in p.read_text(encoding="utf-8")]
        assert len(pages) == 1, f"{script.name}: included by {len(pages)} pages"
        text = page_text(site, f"tutorials/{pages[0].name}")
        lines = [line.strip() for line in script.read_text(encoding="utf-8").splitlines() if line.strip()]
        missing = [line for line in lines if line not in text]
        assert not missing, f"{script.name}: lines not on its page: {missing[:3]}"
        assert re.search(rf"\b{script.stem}\b", tests), f"{script.name}: no test runs it"


def test_the_cost_model_page_lists_every_constant_with_its_source(site):
    from esl_deploy.hw_models.energy import CONSTANTS

    text = " ".join(page_text(site, "concepts/cost-models.md").split())
    for c in CONSTANTS:
        assert f"{c.name} {c.value:g} {c.unit} {' '.join(c.source.split())}" in text, c.name


def test_results_pages_show_the_benchmarks_plots(site):
    for page in ("results/mnist.md",):
        images = re.findall(r'<img[^>]+src="([^"]+)"', page_html(site, page))
        assert len(images) >= 2, images  # the sweep's plot and the first layer's fan-out
        for src in images:
            assert (site / page[:-3] / src).resolve().is_file(), src


def test_the_readmes_links_into_the_docs_resolve(site):
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    links = [link for link in re.findall(r"\]\(([^)\s]+)\)", readme) if "://" not in link]
    assert sum(link.startswith("docs/") for link in links) >= 20, links
    for link in links:
        path, _, anchor = link.partition("#")
        assert (ROOT / path).is_file(), f"README links to {path}, which is no file"
        if anchor and path.startswith("docs/"):
            assert anchor in ids(site, path[len("docs/"):]), f"README links to {link}: no such anchor"


def test_make_docs_builds_strictly_into_site():
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    recipe = makefile.split("\ndocs:", 1)[1].split("\n\n", 1)[0]
    assert "mkdocs build --strict" in recipe and "site" in recipe
    assert "/site/" in (ROOT / ".gitignore").read_text(encoding="utf-8").split()
