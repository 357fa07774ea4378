"""MkDocs hooks of the documentation site (``mkdocs.yml``: ``hooks: [docs/hooks.py]``).

- **API reference**: installed, ``train/``, ``export/`` and ``hw_models/`` are ``esl_deploy.train``,
  ``esl_deploy.export`` and ``esl_deploy.hw_models`` (pyproject's ``package-dir``), a layout griffe cannot
  find from the source tree. Before the build, a folder of symbolic links in the installed layout is made
  in a temporary directory and given to mkdocstrings as its search path, so ``::: esl_deploy.train.masking``
  is read from the source files themselves (static analysis, nothing imported).
- **CLI reference**: ``reference/cli.md`` is generated from the click group at build time: the ``--help``
  of ``esl`` and of every command, as ``esl CMD --help`` prints it.
- **Constants**: the marker ``<!-- energy-constants -->`` on a page becomes the table of every hardware
  constant of ``esl_deploy.hw_models.energy.CONSTANTS`` with its unit and source (what
  ``esl energy --list-constants`` prints), so the cost-model page shows the numbers the code uses.
- **Plots**: the results pages (``docs/results/*.md``) hold copies of ``results/NAME.md``, whose images
  link to ``results/NAME.png`` (relative to the README); every ``results/*.png`` is added to the site at
  ``results/results/NAME.png`` so those links resolve from the pages in ``docs/results/``.
- **Docstrings** use reST roles (``:class:`~esl_deploy.models.SpikingNet```) and literal-block markers
  (``::``); the rendered pages show the roles as code (``SpikingNet``) and the markers as one colon.
"""
from __future__ import annotations

import os
import re
import shutil
import tempfile
import tomllib
from pathlib import Path

import mkdocs.plugins
from mkdocs.structure.files import File

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "results"
CLI_PAGE = "reference/cli.md"
PLOT_DIR = "results/results"  # results/NAME.png as seen from docs/results/PAGE.md

_tree: str | None = None


def installed_layout(dest: Path) -> Path:
    """``dest/esl_deploy``: symbolic links that lay the source tree out as it is installed."""
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]
    package_dir = setuptools.get("package-dir", {})
    pkg = dest / "esl_deploy"
    pkg.mkdir(parents=True)
    for entry in (ROOT / "esl_deploy").iterdir():
        if entry.name != "__pycache__":
            os.symlink(entry, pkg / entry.name)
    for name, folder in package_dir.items():
        parts = name.split(".")
        if parts[0] != "esl_deploy" or len(parts) != 2:
            raise ValueError(f"pyproject package-dir {name!r} -> {folder!r}: the docs' layout expects "
                             f"esl_deploy.NAME -> folder")
        os.symlink(ROOT / folder, pkg / parts[1])
    return dest


@mkdocs.plugins.event_priority(100)  # before mkdocstrings reads its handler's paths
def on_config(config, **kwargs):
    global _tree
    _tree = tempfile.mkdtemp(prefix="esl-docs-src-")
    installed_layout(Path(_tree))
    python = config["plugins"]["mkdocstrings"].config["handlers"].setdefault("python", {})
    python["paths"] = [_tree]
    return config


def on_post_build(config, **kwargs):
    global _tree
    if _tree:
        shutil.rmtree(_tree, ignore_errors=True)
        _tree = None


def cli_reference() -> str:
    """The CLI reference page: ``esl --help`` and ``esl CMD --help`` for every command of the click group."""
    import click

    from esl_deploy import cli

    cli._register_commands()  # what cli.main() does before it runs the group
    group = cli.esl
    root = click.Context(group, info_name="esl", terminal_width=100, max_content_width=100)
    out = ["# Command line reference", "",
           "Generated when the site is built, from the click group `esl_deploy.cli.esl`: each section is what "
           "`esl COMMAND --help` prints. Every option parses into the same records the library API takes "
           "(see [the API reference](api.md)).", "",
           "## esl", "", "```text", group.get_help(root), "```", ""]
    for name in sorted(group.commands):
        cmd = group.commands[name]
        ctx = click.Context(cmd, info_name=name, parent=root, terminal_width=100, max_content_width=100)
        out += [f"## esl {name}", "", "```text", cmd.get_help(ctx), "```", ""]
    return "\n".join(out)


def on_files(files, config, **kwargs):
    files.append(File.generated(config, CLI_PAGE, content=cli_reference()))
    for png in sorted(RESULTS.glob("*.png")):
        files.append(File.generated(config, f"{PLOT_DIR}/{png.name}", abs_src_path=str(png)))
    return files


CONSTANTS_MARKER = "<!-- energy-constants -->"


def constants_table() -> str:
    """Every hardware constant the cost models use, with its unit and source."""
    from esl_deploy.hw_models.energy import CONSTANTS

    rows = ["| constant | value | unit | source |", "|---|---|---|---|"]
    rows += [f"| `{c.name}` | {c.value:g} | {c.unit} | {c.source} |" for c in CONSTANTS]
    return "\n".join(rows)


def on_page_markdown(markdown, page, config, files):
    if CONSTANTS_MARKER in markdown:
        markdown = markdown.replace(CONSTANTS_MARKER, constants_table())
    return markdown


_ROLE = re.compile(r":(?:class|func|meth|mod|attr|data|exc|obj|const):<code>(~?)([^<]*)</code>")


def _role(m: re.Match) -> str:
    short, target = m.groups()
    return f"<code>{target.rsplit('.', 1)[-1] if short else target}</code>"


def on_page_content(html, page, config, files):
    html = _ROLE.sub(_role, html)
    # reST's literal-block marker: "text::" reads "text:", a paragraph of "::" alone goes
    return html.replace("<p>::</p>", "").replace("::</p>", ":</p>")
