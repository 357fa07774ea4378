"""The README's results blocks are copies of results/NAME.md (benchmarks/readme_tables.py)."""
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


# ----------------------------------------------------------------------------------------- the real README
def test_readme_tables_equal_their_results_files():
    problems = rt.check((ROOT / "README.md").read_text(encoding="utf-8"), ROOT / "results")
    bad = [str(p) for p in problems if p.kind != "missing"]
    assert not bad, "\n".join(bad)
    missing = [p.name for p in problems if p.kind == "missing"]
    if missing:  # a block whose benchmark has not been run into results/ yet
        pytest.skip(f"no results file yet for README blocks {', '.join(missing)}: run `make results`")
