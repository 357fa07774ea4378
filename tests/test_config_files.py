"""``esl train --config FILE.toml`` and the papers' settings in configs/."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from helpers import assert_user_error, run_cli
from test_datasets_files import REAL_MNIST, make_mnist

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted((ROOT / "configs").glob("*.toml"))
# input shape and classes of each data set the configs name (frames: the config's frame_size)
SHAPES = {"mnist": ((1, 28, 28), 10), "cifar10": ((3, 32, 32), 10), "cifar100": ((3, 32, 32), 100)}
EVENTS = {"cifar10dvs": (2, 10)}


def _parse(*args):
    from esl_deploy.train.cli import options_to_config, train_cmd
    ctx = train_cmd.make_context("train", [str(a) for a in args])
    return ctx.params, options_to_config(ctx.params)


def _weights(run: Path) -> dict:
    return torch.load(run / "checkpoint.pt", weights_only=False)["model"]


def test_the_papers_settings_are_all_there():
    names = {p.stem for p in CONFIGS}
    assert {f"{d}_{m}" for d in ("mnist", "cifar10_resnet19", "cifar100_resnet19", "cifar10dvs_vggsnn")
            for m in ("esl", "pq")} <= names


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_each_config_loads_builds_and_takes_one_optimisation_step(path, tmp_path):
    from esl_deploy.models import ModelSpec, build_model
    from esl_deploy.train.losses import compute_loss
    from esl_deploy.train.masking import MaskEngine
    from esl_deploy.train.trainer import make_optimizer, run_model

    o, cfg = _parse("--config", path, "--device", "cpu", "--out", tmp_path / "r")
    if cfg.dataset in EVENTS:
        channels, classes = EVENTS[cfg.dataset]
        shape, temporal = (channels, cfg.frame_size, cfg.frame_size), True
    else:
        (shape, classes), temporal = SHAPES[cfg.dataset], False
    torch.manual_seed(0)
    model = build_model(ModelSpec(cfg.model, shape, classes, width=cfg.width, beta=cfg.beta,
                                  threshold=cfg.threshold, readout=cfg.readout))
    opt = make_optimizer(model, cfg)
    engine = MaskEngine(model, opt, cfg.sparsity, total_steps=1000, seed=1, steps_per_epoch=100)
    assert abs(engine.density() - cfg.sparsity.density) < 0.02  # the masks hold the config's density
    x = torch.rand(2, cfg.T, *shape) if temporal else torch.rand(2, *shape)  # as the loaders collate
    y = torch.tensor([0, classes - 1])
    trained = engine.params or dict(model.named_parameters())  # a dense config has no sparse layer
    before = {n: p.detach().clone() for n, p in trained.items()}
    out = run_model(model, x, cfg, temporal, torch.Generator().manual_seed(0), torch.device("cpu"))
    assert out.shape == (cfg.T, 2, classes)
    loss = compute_loss(cfg.loss, out, y, cfg.tet_lambda, readout=cfg.readout)
    assert torch.isfinite(loss)
    loss.backward()
    opt.step()
    engine.step()
    moved = [n for n, p in trained.items() if not torch.equal(p.detach(), before[n])]
    assert moved, "one optimisation step changed no weight"
    for n, p in engine.params.items():  # masked weights stay 0
        assert not p.detach()[~engine.masks[n]].any()


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA; the check is for machines without")
def test_a_cuda_config_without_cuda_is_one_clear_line(capsys, tmp_path):
    code, _, err = run_cli(capsys, "train", "--config", ROOT / "configs" / "cifar10_resnet19_esl.toml",
                           "--data-dir", tmp_path, "--out", tmp_path / "r")
    assert_user_error(code, err, "cuda", "no CUDA device")
    assert not (tmp_path / "r" / "checkpoint.pt").exists()


def test_command_line_overrides_the_file_and_tables_prefix_their_keys(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text('method = "pq"\nepochs = 7\nbatch-size = 50\nkeep_dead_inputs = true\n[pq]\np = 0.4\nscope = "neuron"\n')
    o, cfg = _parse("--config", f, "--epochs", "3", "--out", tmp_path / "r")
    assert (cfg.epochs, cfg.batch_size, cfg.sparsity.method) == (3, 50, "pq")
    assert (cfg.sparsity.pq.p, cfg.sparsity.pq.scope, cfg.sparsity.exclude_dead_inputs) == (0.4, "neuron", False)
    o, cfg = _parse("--out", tmp_path / "r")  # without the file: the built-in defaults
    assert (cfg.epochs, cfg.batch_size, cfg.sparsity.method) == (40, 100, "esl")


@pytest.mark.parametrize("text,words", [
    ("bogus = 1\n", ["unknown option", "bogus"]),
    ("[pq]\nzeta = 1\n", ["unknown option", "pq_zeta"]),
    ("epochs = \"many\"\n", ["epochs", "takes an integer"]),
    ("method = \"lottery\"\n", ["method", "lottery"]),
    ("keep_dead_inputs = 1\n", ["keep_dead_inputs"]),
    ("density = [0.1]\n", ["density", "not a valid value"]),
    ("epochs = \n", ["not valid TOML"]),
    ("force = true\n", ["unknown option", "force"]),
    ("density = 1.5\n", ["density", "(0, 1]"]),
])
def test_bad_config_files_are_one_line(capsys, tmp_path, text, words):
    f = tmp_path / "c.toml"
    f.write_text(text)
    code, _, err = run_cli(capsys, "train", "--config", f, "--out", tmp_path / "r", "--no-progress")
    assert_user_error(code, err, *words)
    assert not (tmp_path / "r").exists() or not any((tmp_path / "r").glob("*.pt"))


def test_a_missing_config_file_is_one_line(capsys, tmp_path):
    code, _, err = run_cli(capsys, "train", "--config", tmp_path / "nope.toml", "--out", tmp_path / "r")
    assert_user_error(code, err, "config file not found")


# Options a test run changes from configs/mnist_esl.toml (small and fast); everything else from the file.
SMALL = ["--epochs", "1", "--width", "0.05", "--T", "2", "--no-progress"]
MNIST_ESL_CLI = ["--model", "mlp", "--dataset", "mnist", "--method", "esl", "--density", "0.1", "--batch-size", "100",
                 "--optimizer", "adam", "--lr", "0.01", "--lr-end", "0.0001", "--t-iter", "1000"]


def _same_run_from_file_and_command_line(capsys, tmp_path, data_dir, extra=()):
    a, b = tmp_path / "from_file", tmp_path / "from_cli"
    assert run_cli(capsys, "train", "--config", ROOT / "configs" / "mnist_esl.toml", "--data-dir", data_dir,
                   *SMALL, *extra, "--out", a)[0] == 0
    assert run_cli(capsys, "train", *MNIST_ESL_CLI, "--data-dir", data_dir, *SMALL, *extra, "--out", b)[0] == 0
    wa, wb = _weights(a), _weights(b)
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    assert (a / "config.toml").read_text() == (b / "config.toml").read_text()
    # the recorded options read back give the same run again
    c = tmp_path / "from_record"
    assert run_cli(capsys, "train", "--config", a / "config.toml", "--no-progress", "--out", c)[0] == 0
    assert all(torch.equal(wa[k], _weights(c)[k]) for k in wa)


def test_mnist_config_is_the_same_run_as_its_command_line(capsys, tmp_path):
    make_mnist(tmp_path / "mnist", n_train=300, n_test=20, gz=True)
    _same_run_from_file_and_command_line(capsys, tmp_path, tmp_path / "mnist", ["--t-iter", "2"])


@pytest.mark.skipif(not (REAL_MNIST / "train-images-idx3-ubyte.gz").is_file(),
                    reason=f"real MNIST files not found at {REAL_MNIST} (a benchmark fixture of this project)")
def test_mnist_config_on_real_mnist_is_the_same_run_as_its_command_line(capsys, tmp_path):
    _same_run_from_file_and_command_line(capsys, tmp_path, REAL_MNIST)
