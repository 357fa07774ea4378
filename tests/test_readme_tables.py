"""The results blocks of the README and the docs pages are copies of results/NAME.md
(benchmarks/readme_tables.py); the README's headline table is made from the results files (benchmarks/headline.py)."""
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import readme_tables as rt  # noqa: E402

README = "intro\n<!-- results:a -->\n| x |\n|---|\n| 1 |\n<!-- /results:a -->\nmiddle\n<!-- results:b -->\nold\n<!-- /results:b -->\nend\n"


def _results(tmp_path, **files):
    for name, text in files.items():
        (tmp_path / f"{name}.md").write_text(text)
    return tmp_path


def test_blocks_are_found():
    found = rt.blocks(README)
    assert set(found) == {"a", "b"}
    a, b = found["b"]
    assert README[a:b].strip() == "old"


def test_check_passes_when_every_block_equals_its_file(tmp_path):
    res = _results(tmp_path, a="| x |\n|---|\n| 1 |\n", b="\nold\n\n")  # surrounding blank lines do not count
    assert rt.check(README, res) == []


def test_check_names_a_block_that_differs(tmp_path):
    res = _results(tmp_path, a="| x |\n|---|\n| 2 |\n", b="old\n")
    problems = rt.check(README, res)
    assert [(p.kind, p.name) for p in problems] == [("differs", "a")]
    assert "a" in str(problems[0]) and "differs" in str(problems[0])


def test_check_names_a_results_file_without_block_and_a_block_without_file(tmp_path):
    res = _results(tmp_path, a="| x |\n|---|\n| 1 |\n", c="new table\n")
    kinds = {(p.kind, p.name) for p in rt.check(README, res)}
    assert kinds == {("missing", "b"), ("orphan", "c")}


def test_write_replaces_blocks_and_then_check_passes(tmp_path):
    res = _results(tmp_path, a="| y |\n|---|\n| 3 |\n\n*made by `x` on y*\n", b="fresh\n")
    new = rt.write(README, res)
    assert new.startswith("intro\n<!-- results:a -->\n| y |") and new.endswith("middle\n<!-- results:b -->\nfresh\n"
                                                                              "<!-- /results:b -->\nend\n")
    assert rt.check(new, res) == []
    assert rt.write(new, res) == new  # idempotent


def test_write_leaves_a_block_without_file_alone(tmp_path):
    res = _results(tmp_path, a="| x |\n|---|\n| 1 |\n")
    assert rt.write(README, res) == README


@pytest.mark.parametrize("text", ["<!-- results:a -->\nno end\n",
                                  "<!-- /results:a -->\n",
                                  "<!-- results:a -->\n<!-- results:b -->\n<!-- /results:b -->\n<!-- /results:a -->\n",
                                  "<!-- results:a -->\n<!-- /results:a -->\n<!-- results:a -->\n<!-- /results:a -->\n"])
def test_broken_markers_are_errors(text):
    with pytest.raises(rt.MarkerError):
        rt.blocks(text)


def test_cli_check_exit_code(tmp_path, capsys):
    readme = tmp_path / "README.md"
    readme.write_text(README)
    (tmp_path / "res").mkdir()
    res = _results(tmp_path / "res", a="| x |\n|---|\n| 1 |\n", b="old\n")
    assert rt.main(["--check", "--readme", str(readme), "--results", str(res)]) == 0
    (res / "b.md").write_text("changed\n")
    assert rt.main(["--check", "--readme", str(readme), "--results", str(res)]) == 1
    assert "b: README block differs" in capsys.readouterr().err
    assert rt.main(["--write", "--readme", str(readme), "--results", str(res)]) == 0
    assert "changed" in readme.read_text()


# ------------------------------------------------------------------------ the README and the docs pages
def _site(tmp_path, readme=README, **pages):
    (tmp_path / "README.md").write_text(readme)
    for name, text in pages.items():
        page = tmp_path / "docs" / f"{name}.md"
        page.parent.mkdir(parents=True, exist_ok=True)
        page.write_text(text)
    (tmp_path / "docs" / "plain.md").write_text("# a page without results blocks\n")
    return tmp_path / "README.md"


def test_pages_are_the_readme_and_the_docs_pages_with_blocks(tmp_path):
    readme = _site(tmp_path, **{"results/c": "<!-- results:c -->\nold\n<!-- /results:c -->\n"})
    assert rt.pages(readme) == [readme, tmp_path / "docs" / "results" / "c.md"]
    (tmp_path / "elsewhere").mkdir()
    lone = tmp_path / "elsewhere" / "README.md"
    lone.write_text(README)
    assert rt.pages(lone) == [lone]  # no docs/ beside it


def test_check_pages_covers_the_docs_pages_and_orphans_across_them(tmp_path):
    readme = _site(tmp_path, **{"results/c": "<!-- results:c -->\nold c\n<!-- /results:c -->\n"})
    (tmp_path / "res").mkdir()
    res = _results(tmp_path / "res", a="| x |\n|---|\n| 1 |\n", b="old\n", c="new c\n", d="shown nowhere\n")
    kinds = {(p.kind, p.name): str(p) for p in rt.check_pages(readme, res)}
    assert set(kinds) == {("differs", "c"), ("orphan", "d")}
    assert kinds["differs", "c"].startswith("c: docs/results/c.md block differs")
    # a results file shown only on a docs page is not an orphan, and a name may be shown on two pages
    (tmp_path / "docs" / "more.md").write_text("<!-- results:a -->\n<!-- /results:a -->\n<!-- results:d -->"
                                               "\n<!-- /results:d -->\n")
    assert rt.main(["--write", "--readme", str(readme), "--results", str(res)]) == 0
    assert rt.check_pages(readme, res) == []
    assert "new c" in (tmp_path / "docs" / "results" / "c.md").read_text()
    assert (tmp_path / "docs" / "more.md").read_text().startswith("<!-- results:a -->\n| x |")
    assert (tmp_path / "docs" / "plain.md").read_text() == "# a page without results blocks\n"


def test_readme_and_docs_tables_equal_their_results_files():
    problems = rt.check_pages(ROOT / "README.md", ROOT / "results")
    bad = [str(p) for p in problems if p.kind != "missing"]
    assert not bad, "\n".join(bad)
    assert len(rt.pages(ROOT / "README.md")) > 1  # the README and the docs' results pages
    missing = [p.name for p in problems if p.kind == "missing"]
    if missing:  # a block whose benchmark has not been run into results/ yet
        pytest.skip(f"no results file yet for blocks {', '.join(sorted(set(missing)))}: run `make results`")


def test_the_headline_table_is_made_from_the_results_files():
    import headline

    assert (ROOT / "results" / "headline.md").read_text(encoding="utf-8") == headline.build(ROOT / "results"), \
        "results/headline.md is stale: run `.venv/bin/python benchmarks/headline.py`"
    runs = json.loads((ROOT / "results" / "mnist_sweep.json").read_text(encoding="utf-8"))["data"]["runs"]
    sweep = {r["run"]: r for r in runs}
    table = headline.build(ROOT / "results")
    assert f"| {100 * sweep['esl_d0.1_s0']['test_acc']:.2f} / {100 * sweep['esl_d0.1_s1']['test_acc']:.2f} |" in table


def test_headline_figures_follow_their_files(tmp_path):
    import shutil

    import headline

    for name in headline.SOURCES:
        shutil.copy(ROOT / "results" / f"{name}.json", tmp_path / f"{name}.json")
    doc = json.loads((tmp_path / "mnist_sweep.json").read_text())
    for run in doc["data"]["runs"]:
        if run["run"] == "esl_d0.1_s0":
            run["cores_packed"], run["cores_lower_bound"] = 123, 45
    (tmp_path / "mnist_sweep.json").write_text(json.dumps(doc))
    assert "| 123 / 45 |" in headline.build(tmp_path)
