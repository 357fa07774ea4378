"""Structure records and plots (``esl inspect``): hand-checked numbers, and a real run's records agree
with its saved masks."""
from __future__ import annotations

import json

import pytest
import torch

from helpers import assert_user_error, run_cli
from esl_deploy.train.masking import rewire_record
from esl_deploy.train.structure import degrees, fanout_image, rewiring_series

TINY = ["--width", "0.1", "--T", "4", "--epochs", "4", "--no-progress"]


def test_rewire_record_by_hand():
    before = torch.tensor([[1, 1, 0, 0], [1, 0, 1, 0]], dtype=torch.bool)
    after = torch.tensor([[1, 0, 1, 0], [0, 0, 1, 1]], dtype=torch.bool)
    rec, grown = rewire_record(before, after, None)
    assert (rec["pruned"], rec["grown"], rec["nnz"], rec["prev_grown"]) == (2, 2, 4, None)
    assert grown.tolist() == [[False, False, True, False], [False, False, False, True]]
    later = torch.tensor([[1, 0, 1, 0], [0, 1, 1, 0]], dtype=torch.bool)  # (1, 3) grown before is pruned now
    rec2, _ = rewire_record(after, later, grown)
    assert (rec2["prev_grown"], rec2["prev_grown_survived"]) == (2, 1)
    series = rewiring_series([{"step": 5, "layers": {"a": rec}}, {"step": 9, "layers": {"a": rec2}}])
    assert [r["survival"] for r in series["rewirings"]] == [None, 0.5]
    assert series["total_grown"] == 3


def test_degrees_and_fanout_by_hand():
    m = torch.tensor([[1, 0, 1, 1], [0, 0, 1, 0], [1, 0, 1, 0]], dtype=torch.bool)  # 3 neurons x 4 inputs
    fan_in, fan_out = degrees(m)
    assert fan_in == [3, 1, 2] and fan_out == [2, 0, 3, 1]
    assert fanout_image(m, (1, 2, 2)).tolist() == [[2, 0], [3, 1]]
    assert fanout_image(m, (1, 3, 3)) is None  # not a layer on the flattened input
    conv = torch.zeros(2, 3, 3, 3, dtype=torch.bool)
    conv[0, 1] = True
    assert degrees(conv) == ([9, 0], [0, 9, 0])


def test_a_run_writes_structure_plots_whose_numbers_match_its_masks(capsys, tmp_path):
    out = tmp_path / "run"
    assert run_cli(capsys, "train", "--method", "esl", *TINY, "--out", out)[0] == 0
    for name in ("structure_fanout.png", "structure_degrees.png", "structure_rewiring.png"):
        assert (out / name).stat().st_size > 10_000
    code, stdout, _ = run_cli(capsys, "inspect", out, "--json")
    assert code == 0
    rep = json.loads(stdout)
    ckpt = torch.load(out / "checkpoint.pt", weights_only=False)
    kept, init = ckpt["best"]["masks"], ckpt["engine"]["initial_masks"]
    for layer in rep["layers"]:
        name = layer["name"]
        assert layer["kept_nnz"] == int(kept[name].sum()) == int((ckpt["best"]["model"][name] != 0).sum())
        assert layer["initial_nnz"] == int(init[name].sum())
        assert sum(layer["kept_in_degree"]) == sum(layer["kept_out_degree"]) == layer["kept_nnz"]
        assert layer["kept_from_initial"] == int((kept[name] & init[name]).sum())
    first = rep["layers"][0]
    fan = torch.tensor(rep["fanout"]["kept"])
    assert fan.shape == (8, 8) and int(fan.sum()) == first["kept_nnz"]
    assert rep["fanout"]["inputs_used_start"] <= 64 - 1  # digits has always-0 pixels, kept out of the masks
    log = ckpt["engine"]["rewire_log"]
    assert len(rep["rewirings"]) == len(log) >= 2 and rep["total_grown"] == ckpt["engine"]["rewired_total"]
    for r in rep["rewirings"]:
        assert r["pruned"] == r["grown"]  # ESL keeps each layer's nnz
        assert r["survival"] is None or 0.0 <= r["survival"] <= 1.0


def test_core_aware_run_draws_its_core_groups(capsys, tmp_path):
    out = tmp_path / "run"
    assert run_cli(capsys, "train", "--method", "esl", "--core-aware", "truenorth", "--width", "0.5", "--T", "4",
                   "--epochs", "2", "--no-progress", "--out", out)[0] == 0
    assert (out / "structure_cores.png").stat().st_size > 10_000


def test_inspect_errors_are_one_line(capsys, tmp_path):
    assert_user_error(*run_cli(capsys, "inspect", tmp_path / "nope")[::2], "no run at")
    dense = tmp_path / "dense"
    assert run_cli(capsys, "train", "--method", "dense", "--width", "0.05", "--T", "2", "--epochs", "1",
                   "--no-progress", "--out", dense)[0] == 0
    assert not (dense / "structure_degrees.png").exists()
    assert_user_error(*run_cli(capsys, "inspect", dense)[::2], "no masks")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    assert_user_error(*run_cli(capsys, "inspect", tmp_path / "junk.pt")[::2], "not a checkpoint")


def test_a_checkpoint_from_before_structure_records_is_refused_with_a_reason(capsys, tmp_path):
    from esl_deploy.checkpoint import save_checkpoint
    out = tmp_path / "run"
    assert run_cli(capsys, "train", "--method", "esl", "--width", "0.05", "--T", "2", "--epochs", "1",
                   "--no-progress", "--out", out)[0] == 0
    ckpt = torch.load(out / "checkpoint.pt", weights_only=False)
    for key in ("initial_masks", "rewire_log", "last_grown"):
        del ckpt["engine"][key]
    save_checkpoint(out / "checkpoint.pt", ckpt)
    assert_user_error(*run_cli(capsys, "inspect", out)[::2], "retrain")
