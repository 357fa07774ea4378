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
    args = ["--dataset", "digits", "--densities", "0.1", "--key-seeds", "0", "--epochs", "1", "--no-lava", "--lrs",
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


def test_learning_rate_is_chosen_on_validation_and_used_by_the_grid(tmp_path):
    args = ["--dataset", "digits", "--methods", "dense", "static", "--densities", "0.1", "--key-seeds", "0",
            "--epochs", "2", "--no-lava", "--lrs", "0.01", "0.002", "--out", str(tmp_path / "runs"),
            "--results", str(tmp_path / "res"), "--", "--width", "0.1", "--T", "2"]
    res = S.main(args)
    sel = res["lr_select"]
    for m in ("dense", "esl"):
        cands = sel[m]["candidates"]
        assert [c["lr"] for c in cands] == [0.01, 0.002]
        best = max(c["best_val_acc"] for c in cands)
        assert sel[m]["lr"] == next(c["lr"] for c in cands if c["best_val_acc"] == best)
        for c in cands:  # each candidate is a real run with that learning rate
            toml = (tmp_path / "runs" / "lr_select" / f"{m}_lr{c['lr']:g}" / "config.toml").read_text()
            assert f"lr = {c['lr']}" in toml
    by = {r["method"]: r for r in res["runs"]}
    assert by["dense"]["lr"] == sel["dense"]["lr"] and by["static"]["lr"] == sel["esl"]["lr"]
    toml = (tmp_path / "runs" / "dense_d1_s0" / "config.toml").read_text()
    assert f"lr = {sel['dense']['lr']}" in toml
