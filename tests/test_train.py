"""End-to-end training runs on digits (tiny width, few epochs): files, determinism, resume, load."""
import csv
import json

import pytest
import torch

import esl_deploy
from esl_deploy.checkpoint import read_checkpoint
from esl_deploy.train.config import TrainConfig
from esl_deploy.train.masking import SparsityConfig
from esl_deploy.train.trainer import train


def tiny(method="esl", epochs=3, **kw):
    return TrainConfig(epochs=epochs, width=0.05, T=4, batch_size=128,
                       sparsity=SparsityConfig(method=method, density=0.2, t_iter=3), **kw)


def _same_state(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_run_folder_contents_and_load(tmp_path):
    out = tmp_path / "run"
    summary = train(tiny(), out, progress=False)
    for name in ("checkpoint.pt", "metrics.csv", "summary.json", "curves.png"):
        assert (out / name).is_file()
    rows = list(csv.DictReader(open(out / "metrics.csv")))
    assert len(rows) == 3
    for key in ("loss", "train_acc", "val_acc", "density", "rewired", "density/layers.1.weight",
                "density/layers.3.weight"):
        assert key in rows[0]
    assert float(rows[-1]["density"]) == pytest.approx(0.2, abs=1e-3)
    saved = json.loads((out / "summary.json").read_text())
    assert saved["test_acc"] == summary["test_acc"] and 0.0 <= saved["test_acc"] <= 1.0
    assert set(saved["layer_density"]) == {"layers.1.weight", "layers.3.weight"}
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    model = esl_deploy.load(out / "checkpoint.pt")
    state = read_checkpoint(out / "checkpoint.pt")
    for name, mask in state["best"]["masks"].items():
        w = dict(model.named_parameters())[name]
        assert torch.all(w[~mask] == 0) and int((w != 0).sum()) <= int(mask.sum())
    assert model.meta["method"] == "esl" and model.meta["T"] == 4
    out_spikes = model(torch.rand(4, 2, 1, 8, 8))
    assert out_spikes.shape == (4, 2, 10) and set(out_spikes.unique().tolist()) <= {0.0, 1.0}


def test_same_seed_gives_identical_checkpoint(tmp_path):
    train(tiny(), tmp_path / "a", progress=False)
    train(tiny(), tmp_path / "b", progress=False)
    a, b = read_checkpoint(tmp_path / "a" / "checkpoint.pt"), read_checkpoint(tmp_path / "b" / "checkpoint.pt")
    _same_state(a["model"], b["model"])
    _same_state(a["engine"]["masks"], b["engine"]["masks"])
    _same_state(a["best"]["model"], b["best"]["model"])
    assert a["optimizer"]["state"].keys() == b["optimizer"]["state"].keys()
    for k in a["optimizer"]["state"]:
        _same_state(a["optimizer"]["state"][k], b["optimizer"]["state"][k])
    train(tiny(seed=1), tmp_path / "c", progress=False)
    c = read_checkpoint(tmp_path / "c" / "checkpoint.pt")
    assert not torch.equal(a["model"]["layers.1.weight"], c["model"]["layers.1.weight"])


@pytest.mark.parametrize("method", ["esl", "pq"])
def test_interrupted_and_resumed_run_ends_identical(tmp_path, method):
    cfg = tiny(method, epochs=4)
    train(cfg, tmp_path / "full", progress=False)

    def stop(epoch, row):
        if epoch == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(cfg, tmp_path / "cut", progress=False, on_epoch_end=stop)
    assert read_checkpoint(tmp_path / "cut" / "checkpoint.pt")["epoch"] == 2
    train(cfg, tmp_path / "cut", resume=True, progress=False)
    full = read_checkpoint(tmp_path / "full" / "checkpoint.pt")
    cut = read_checkpoint(tmp_path / "cut" / "checkpoint.pt")
    _same_state(full["model"], cut["model"])
    _same_state(full["engine"]["masks"], cut["engine"]["masks"])
    _same_state(full["best"]["model"], cut["best"]["model"])
    assert full["engine"]["t"] == cut["engine"]["t"]
    assert [r["val_acc"] for r in full["history"]] == [r["val_acc"] for r in cut["history"]]


def test_config_round_trip():
    cfg = tiny("pq", loss="tet")
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError):
        TrainConfig.from_dict({**cfg.to_dict(), "bogus": 1})
