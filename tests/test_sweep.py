"""The MNIST sweep's grid, Pareto front and resume (run on digits, tiny, through the real commands)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import mnist_sweep as S  # noqa: E402


def test_grid_runs_dense_once_and_the_key_density_with_more_seeds():
    runs = S.grid(["dense", "esl", "pq_layer"], [0.05, 0.1], seeds=[0], key_density=0.1, key_seeds=[0, 1])
    names = [r.name for r in runs]
    assert names == ["dense_d1_s0", "dense_d1_s1", "esl_d0.05_s0", "esl_d0.1_s0", "esl_d0.1_s1",
                     "pq_layer_d0.05_s0", "pq_layer_d0.1_s0", "pq_layer_d0.1_s1"]


def test_pareto_front_by_hand():
    pts = [(1.0, 0.90), (2.0, 0.95), (3.0, 0.94), (0.5, 0.80), (2.0, 0.93)]
    assert S.pareto(pts) == [0, 1, 3]


def test_a_second_sweep_skips_finished_runs(tmp_path):
    args = ["--dataset", "digits", "--densities", "0.1", "--key-seeds", "0", "--epochs", "1", "--no-lava",
            "--out", str(tmp_path / "runs"), "--results", str(tmp_path / "res"), "--", "--width", "0.05", "--T", "2"]
    first = S.main(["--methods", "esl", *args])
    ckpt = tmp_path / "runs" / "esl_d0.1_s0" / "checkpoint.pt"
    stamp = ckpt.stat().st_mtime_ns
    second = S.main(["--methods", "esl", "dense", *args])
    assert ckpt.stat().st_mtime_ns == stamp  # not trained again
    assert [r["run"] for r in second["runs"]] == ["esl_d0.1_s0", "dense_d1_s0"]
    assert second["runs"][0] == first["runs"][0]
    saved = json.loads((tmp_path / "res" / "mnist_sweep_digits.json").read_text())["data"]
    assert saved["runs"] == second["runs"]
    assert (tmp_path / "res" / "mnist_sweep_digits.png").is_file()
    assert (tmp_path / "res" / "mnist_sweep_digits.csv").read_text().count("\n") == 3
