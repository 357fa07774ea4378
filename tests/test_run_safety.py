"""Run-folder safety: a failed --force keeps the good run, a second run into a locked folder is
refused, divergence stops with one line and keeps the last good checkpoint."""
import threading

import pytest

from esl_deploy.errors import EslError
from helpers import assert_user_error, run_cli
from esl_deploy.train.config import TrainConfig
from esl_deploy.train.masking import SparsityConfig
from esl_deploy.train.trainer import LOCK_FILE, lock_run_folder, train


@pytest.fixture()
def good_run(tmp_path, capsys):
    out = tmp_path / "run"
    code, _, err = run_cli(capsys, "train", "--epochs", "1", "--out", out, "--no-progress")
    assert code == 0, err
    return out, {p.name: p.read_bytes() for p in out.iterdir() if p.name != LOCK_FILE}


@pytest.mark.parametrize("bad", [["--device", "tpu9"], ["--dataset", "mnist", "--data-dir", "/nonexistent/x"],
                                 ["--model", "vggsnn"]])
def test_failed_force_keeps_the_good_run(good_run, capsys, bad):
    out, files = good_run
    code, _, err = run_cli(capsys, "train", "--epochs", "1", "--out", out, "--force", "--no-progress", *bad)
    assert_user_error(code, err)
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.name != LOCK_FILE} == files


def test_second_run_into_a_locked_folder_is_refused(tmp_path, capsys):
    out = tmp_path / "run"
    holder = lock_run_folder(out)  # as a running `esl train` holds it
    try:
        code, _, err = run_cli(capsys, "train", "--epochs", "1", "--out", out, "--force", "--no-progress")
        assert_user_error(code, err, "in use")
        assert [p.name for p in out.iterdir()] == [LOCK_FILE]
    finally:
        holder.close()
    code, _, err = run_cli(capsys, "train", "--epochs", "1", "--out", out, "--no-progress")
    assert code == 0, err  # a leftover lock file of a finished run does not block


@pytest.mark.parametrize("opt", [["--lr", "inf"], ["--lr", "nan"], ["--seed", "-1"], ["--seed", str(2 ** 70)],
                                 ["--width", "inf"]])
def test_non_finite_or_out_of_range_options_are_one_line(tmp_path, capsys, opt):
    code, _, err = run_cli(capsys, "train", "--epochs", "1", "--out", tmp_path / "r", "--no-progress", *opt)
    assert_user_error(code, err)


def test_divergence_stops_with_one_line_and_keeps_the_last_checkpoint(tmp_path, monkeypatch):
    import esl_deploy.train.trainer as trainer
    out = tmp_path / "run"
    real = trainer.compute_loss
    calls = {"n": 0}

    def loss_then_nan(*a, **k):  # a loss that becomes NaN in the second epoch (13 steps per epoch)
        calls["n"] += 1
        value = real(*a, **k)
        return value * float("nan") if calls["n"] > 20 else value
    monkeypatch.setattr(trainer, "compute_loss", loss_then_nan)
    with pytest.raises(EslError, match=r"diverged: loss is nan at epoch 2.*epoch 1"):
        train(TrainConfig(epochs=3, sparsity=SparsityConfig(method="esl")), out, progress=False)
    from esl_deploy.checkpoint import read_checkpoint
    assert read_checkpoint(out / "checkpoint.pt")["epoch"] == 1


@pytest.mark.parametrize("const", ["truenorth.axons_per_core=1", "truenorth.neurons_per_core=1"])
def test_energy_core_of_fan_one_is_refused_at_once(tmp_path, capsys, const):
    import time
    out = tmp_path / "run"
    code, _, err = run_cli(capsys, "train", "--epochs", "1", "--out", out, "--no-progress")
    assert code == 0, err
    t0 = time.perf_counter()
    code, _, err = run_cli(capsys, "energy", out / "checkpoint.pt", "--dataset", "digits", "--const", const)
    assert_user_error(code, err, "at least 2")
    assert time.perf_counter() - t0 < 60


def test_trees_refuse_a_fan_of_one():
    from esl_deploy.hw_models.truenorth import adder_tree, splitter_tree
    import numpy as np
    with pytest.raises(ValueError):
        adder_tree(np.array([5]), 1)
    with pytest.raises(ValueError):
        splitter_tree(np.array([5]), 1)


def test_export_onto_its_own_source_is_refused_even_with_force(tmp_path, capsys):
    out = tmp_path / "run"
    code, _, err = run_cli(capsys, "train", "--epochs", "1", "--out", out, "--no-progress")
    assert code == 0, err
    ckpt = out / "checkpoint.pt"
    before = ckpt.read_bytes()
    code, _, err = run_cli(capsys, "export", ckpt, "--to", "nir", "-o", ckpt, "--force")
    assert_user_error(code, err, "source")
    assert ckpt.read_bytes() == before


def _flip_inside_best_weights(ckpt):
    import zipfile
    with zipfile.ZipFile(ckpt) as z:
        infos = sorted((i for i in z.infolist() if "/data/" in i.filename), key=lambda i: -i.file_size)
        target = infos[0]  # the largest tensor: a first-layer weight (model or best model)
    raw = bytearray(ckpt.read_bytes())
    start = target.header_offset + 30 + len(target.filename.encode()) + len(target.extra)
    mid = start + target.file_size // 2
    raw[mid:mid + 8] = bytes(b ^ 0xFF for b in raw[mid:mid + 8])
    ckpt.write_bytes(bytes(raw))


@pytest.mark.parametrize("damage", ["flip", "truncate"])
def test_corrupt_checkpoints_are_named_corrupt(tmp_path, capsys, damage):
    out = tmp_path / "run"
    code, _, err = run_cli(capsys, "train", "--epochs", "1", "--out", out, "--no-progress")
    assert code == 0, err
    ckpt = out / "checkpoint.pt"
    if damage == "flip":
        _flip_inside_best_weights(ckpt)
    else:
        ckpt.write_bytes(ckpt.read_bytes()[: ckpt.stat().st_size // 2])
    for cmd in (["export", ckpt, "--to", "nir", "-o", tmp_path / "m.nir"],
                ["simulate", ckpt, "--backend", "snntorch", "--dataset", "digits"]):
        code, _, err = run_cli(capsys, *cmd)
        assert_user_error(code, err, "corrupt")
    assert not (tmp_path / "m.nir").exists()


@pytest.fixture(scope="module")
def trained_ckpt(tmp_path_factory):
    out = tmp_path_factory.mktemp("wr") / "run"
    train(TrainConfig(epochs=1), out, progress=False)
    return out / "checkpoint.pt"


def _erofs(*a, **k):
    import errno
    raise OSError(errno.EROFS, "Read-only file system")


@pytest.mark.parametrize("cmd", ["export", "energy-plot", "train"])
def test_read_only_file_system_is_one_line(tmp_path, capsys, monkeypatch, trained_ckpt, cmd):
    import esl_deploy.atomic as atomic
    monkeypatch.setattr(atomic.os, "replace", _erofs)
    args = {"export": ["export", trained_ckpt, "--to", "nir", "-o", tmp_path / "m.nir"],
            "energy-plot": ["energy", trained_ckpt, "--dataset", "digits", "--plot", tmp_path / "e.png"],
            "train": ["train", "--epochs", "1", "--out", tmp_path / "r", "--no-progress"]}[cmd]
    code, _, err = run_cli(capsys, *args)
    assert_user_error(code, err, "Read-only file system")
    assert not any(p.suffix in (".nir", ".png") for p in tmp_path.iterdir())
    assert not list(tmp_path.glob(".*.tmp"))  # no temporary file left behind


def test_full_disk_in_torch_save_is_one_line(tmp_path, capsys, monkeypatch):
    import torch

    def full(*a, **k):
        raise RuntimeError("[enforce fail at inline_container.cc:595] . unexpected pos 64 vs 0\n"
                           "PytorchStreamWriter failed writing file data/0: file write failed")
    monkeypatch.setattr(torch, "save", full)
    code, _, err = run_cli(capsys, "train", "--epochs", "1", "--out", tmp_path / "r", "--no-progress")
    assert_user_error(code, err, "cannot write", "disk full")


def test_name_too_long_is_one_line(tmp_path, capsys, trained_ckpt):
    code, _, err = run_cli(capsys, "export", trained_ckpt, "--to", "nir", "-o", tmp_path / ("x" * 300 + ".nir"))
    assert_user_error(code, err, "too long")


def test_netx_on_a_full_disk_is_refused_before_h5py(tmp_path, capsys, monkeypatch, trained_ckpt):
    import shutil
    from collections import namedtuple
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage(10 << 20, 10 << 20, 4096))
    code, _, err = run_cli(capsys, "export", trained_ckpt, "--to", "netx", "-o", tmp_path / "m.h5")
    assert_user_error(code, err, "not enough free space")
    assert not (tmp_path / "m.h5").exists()


def test_folder_left_by_a_kill_during_the_first_checkpoint_write_needs_no_force(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / ".checkpoint.pt.abc123.tmp").write_bytes(b"PK\x03\x04 half a checkpoint")
    (out / LOCK_FILE).write_text("pid 1\n")
    code, _, err = run_cli(capsys, "train", "--epochs", "1", "--out", out, "--no-progress")
    assert code == 0, err
    assert not list(out.glob(".*.tmp"))  # the dead writer's temporary file is gone


def test_state_dict_mismatch_says_what_mismatched(tmp_path, capsys, trained_ckpt):
    import torch
    state = torch.load(trained_ckpt, weights_only=True)
    state["best"]["model"]["layers.1.weight"] = torch.zeros(3, 3)
    bad = tmp_path / "bad.pt"
    torch.save(state, bad)
    code, _, err = run_cli(capsys, "export", bad, "--to", "nir", "-o", tmp_path / "m.nir")
    assert_user_error(code, err, "layers.1.weight")


def test_data_dir_for_the_embedded_digits_is_refused(tmp_path, capsys):
    code, _, err = run_cli(capsys, "train", "--epochs", "1", "--out", tmp_path / "r", "--data-dir", tmp_path)
    assert_user_error(code, err, "embedded")


def test_ctrl_c_points_to_resume(monkeypatch, capsys, tmp_path):
    import esl_deploy.train.trainer as trainer

    def interrupted(*a, **k):
        raise KeyboardInterrupt
    monkeypatch.setattr(trainer, "_train_epoch", interrupted)
    code, _, err = run_cli(capsys, "train", "--epochs", "1", "--out", tmp_path / "r", "--no-progress")
    assert_user_error(code, err, "--resume")


@pytest.mark.parametrize("to", ["nir", "netx", "onnx"])
def test_non_finite_weights_are_refused_on_export(tmp_path, capsys, trained_ckpt, to):
    import torch
    state = torch.load(trained_ckpt, weights_only=True)
    w = state["best"]["model"]["layers.1.weight"]
    w[w != 0] = w[w != 0].clone().fill_(float("nan"))[0]
    bad = tmp_path / "nan.pt"
    torch.save(state, bad)
    code, _, err = run_cli(capsys, "export", bad, "--to", to, "-o", tmp_path / f"m.{to}")
    assert_user_error(code, err, "NaN")
    code, _, err = run_cli(capsys, "simulate", bad, "--backend", "snntorch", "--dataset", "digits")
    assert_user_error(code, err, "NaN")


def test_magnitude_pruning_is_correct_under_nan_weights():
    import torch
    from esl_deploy.train.rewire import prune_magnitude
    w = torch.tensor([[0.5, float("nan"), -0.1, 2.0, float("nan"), 0.3]])
    mask = torch.ones_like(w, dtype=torch.bool)
    kept = prune_magnitude(w, mask, torch.tensor([3]))
    assert int(kept.sum()) == 3  # exactly k pruned, whatever the values
    assert not kept[0, 1] and not kept[0, 4]  # NaN weights go first: they are not a learned magnitude


@pytest.mark.parametrize("opt", [["--T", "100000"], ["--width", "1e6"], ["--batch-size", "100000000"]])
def test_training_that_cannot_fit_in_memory_is_refused_up_front(tmp_path, capsys, opt):
    code, _, err = run_cli(capsys, "train", "--epochs", "1", "--out", tmp_path / "r", "--no-progress", *opt)
    assert_user_error(code, err, "GiB")
    assert not (tmp_path / "r" / "checkpoint.pt").exists()


def test_onnx_unrolled_beyond_memory_is_refused(tmp_path, capsys, trained_ckpt):
    code, _, err = run_cli(capsys, "export", trained_ckpt, "--to", "onnx", "-T", "100000000", "-o", tmp_path / "m.onnx")
    assert_user_error(code, err, "GiB")


@pytest.mark.parametrize("device", ["mps", "cuda:7", "meta"])
def test_devices_that_cannot_train_are_one_line(tmp_path, capsys, device):
    code, _, err = run_cli(capsys, "train", "--epochs", "1", "--out", tmp_path / "r", "--device", device)
    assert_user_error(code, err)


def test_empty_out_is_not_the_current_directory(capsys):
    code, _, err = run_cli(capsys, "train", "--epochs", "1", "--out", "")
    assert_user_error(code, err, "--out")


def test_resume_on_a_read_only_folder_fails_before_training(tmp_path, capsys, monkeypatch):
    import errno
    import os
    import esl_deploy.train.trainer as trainer
    out = tmp_path / "run"
    code, _, err = run_cli(capsys, "train", "--epochs", "2", "--out", out, "--no-progress")
    assert code == 0, err
    state_before = (out / "checkpoint.pt").read_bytes()

    real_open = os.open

    def read_only(path, *a, **k):  # the lock file is the first write
        if str(path).endswith(trainer.LOCK_FILE):
            raise OSError(errno.EROFS, "Read-only file system", str(path))
        return real_open(path, *a, **k)
    monkeypatch.setattr(os, "open", read_only)
    epochs = []
    monkeypatch.setattr(trainer, "_train_epoch", lambda *a, **k: epochs.append(1))
    code, _, err = run_cli(capsys, "train", "--epochs", "3", "--out", out, "--resume", "--no-progress")
    assert_user_error(code, err, "Read-only")
    assert epochs == [] and (out / "checkpoint.pt").read_bytes() == state_before


def test_energy_plot_has_ordinary_permissions(tmp_path, capsys, trained_ckpt):
    import os
    import stat
    png = tmp_path / "e.png"
    old = os.umask(0o022)
    try:
        code, _, err = run_cli(capsys, "energy", trained_ckpt, "--dataset", "digits", "--plot", png)
    finally:
        os.umask(old)
    assert code == 0, err
    assert stat.S_IMODE(png.stat().st_mode) == 0o644  # 0666 less the umask, as open() gives (not mkstemp's 0600)


def test_the_memory_estimate_does_not_move_the_seeded_initialisation():
    import torch
    from esl_deploy.models import ModelSpec, build_model
    from esl_deploy.train.trainer import estimate_train_bytes
    spec = ModelSpec("mlp", (1, 8, 8), 10)
    torch.manual_seed(0)
    estimate_train_bytes(spec, TrainConfig())
    a = build_model(spec).state_dict()
    torch.manual_seed(0)
    b = build_model(spec).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
