"""benchmarks/digits_budget.py: the gap to dense on validation and test, per training budget."""
import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import digits_budget as B  # noqa: E402


def test_the_budgets_share_the_digits_tables_runs(tmp_path):
    assert B.D.folder(tmp_path, "esl", B.D.EPOCHS, 2) == tmp_path / "esl_s2"
    assert B.D.folder(tmp_path, "esl", 300, 2) == tmp_path / "esl_e300_s2"
    assert (B.D.results_name(B.D.EPOCHS), B.D.results_name(300)) == ("digits", "digits_e300")


def test_short_budgets_report_paired_gaps_on_both_splits(tmp_path, capsys):
    res = B.main(["--budgets", "1", "2", "--methods", "dense", "esl", "--seeds", "0", "1",
                  "--out", str(tmp_path / "runs"), "--results", str(tmp_path / "results"), "--json"])
    assert list(res["budgets"]) == ["1", "2"] and res["n_val"] == 144 and res["n_test"] == 360
    for epochs in ("1", "2"):
        dense, esl = res["budgets"][epochs]["dense"], res["budgets"][epochs]["esl"]
        assert "val_vs_dense" not in dense
        for split, n in (("val", 144), ("test", 360)):
            c = esl[f"{split}_vs_dense"]
            diffs = [e[f"{split}_acc"] - d[f"{split}_acc"] for e, d in zip(esl["runs"], dense["runs"])]
            assert c["diffs"] == pytest.approx(diffs) and c["n_test"] == n
            for r in esl["runs"]:  # accuracies are counts of images of that split
                assert r[f"{split}_acc"] * n == pytest.approx(round(r[f"{split}_acc"] * n))
        # each run trained for its own budget, into its own folder
        s = json.loads((tmp_path / "runs" / f"esl_e{epochs}_s1" / "summary.json").read_text())
        assert s["epochs"] == int(epochs) and s["best_val_acc"] == esl["runs"][1]["val_acc"]
    for ext in ("md", "json", "png"):
        assert (tmp_path / "results" / f"digits_budget.{ext}").is_file()
    md = (tmp_path / "results" / "digits_budget.md").read_text()
    assert "| 2 | esl |" in md and "validation: Δ vs dense" in md


@pytest.mark.parametrize("argv, word", [(["--budgets", "0"], "--budgets"), (["--budgets", "x"], "invalid int"),
                                        (["--methods", "nope"], "invalid choice")])
def test_bad_options_are_one_line_and_exit_2(capsys, argv, word):
    with pytest.raises(SystemExit) as e:
        B.main(argv)
    lines = [l for l in capsys.readouterr().err.splitlines() if l.strip()]
    assert e.value.code == 2 and len(lines) == 1 and word in lines[0] and "Traceback" not in lines[0]
