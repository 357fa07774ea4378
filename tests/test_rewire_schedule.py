"""When rewiring happens: at epoch starts where that works, mid-epoch where the run is too short for it,
never so late that regrown weights cannot learn; and long runs keep the epoch-start schedule exactly."""
import json
import subprocess
import sys

import pytest
import torch
from torch import nn

from esl_deploy.train.losses import compute_loss
from esl_deploy.train.masking import MaskEngine, SparsityConfig
from esl_deploy.train.schedule import MIN_EVIDENCE_STEPS, rewire_timing

ESL = [sys.executable, "-m", "esl_deploy.cli"]


@pytest.mark.parametrize("total,first_due,t_end,spe,want", [
    (520, 26, 390, 13, "epoch"),      # make demo: 40 epochs of 13 steps, T_iter 26
    (1620, 81, 1215, 540, "epoch"),   # 3 MNIST epochs: rewires at the starts of epochs 2 and 3
    (42, 2, 31, 21, "epoch"),         # 2 epochs: the due step 2 waits for step 22
    (13, 2, 9, 13, "step"),           # 1 epoch: no later epoch start
    (40, 30, 35, 20, "step"),         # T_iter beyond the last epoch start (21)
    (13, 20, 9, 13, "epoch"),         # never due: nothing to time
    (100, 5, 75, None, "immediate"),  # no epochs known
])
def test_timing_follows_the_run_length(total, first_due, t_end, spe, want):
    assert rewire_timing(total, first_due, t_end, spe) == want


def test_t_iter_has_two_steps_of_evidence_and_keeps_long_runs():
    cfg = SparsityConfig(method="esl")
    assert cfg.effective_t_iter(13, 13) == MIN_EVIDENCE_STEPS == 2
    assert cfg.effective_t_iter(520, 13) == 26 and cfg.effective_t_iter(5400, 540) == 270
    assert SparsityConfig(method="esl", t_iter=1).effective_t_iter(13, 13) == 1


def _run(total, spe, method="esl", seed=0, **kw):
    """A Linear layer trained ``total`` steps with the trainer's epoch_start convention; the steps at
    which the engine rewired, and the engine."""
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(20, 16), nn.ReLU(), nn.Linear(16, 4))
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    eng = MaskEngine(model, opt, SparsityConfig(method=method, density=0.3, **kw), total_steps=total,
                     steps_per_epoch=spe, seed=1, layers=[("0.weight", model[0].weight), ("2.weight", model[2].weight)])
    g = torch.Generator().manual_seed(seed)
    for t in range(total):
        x = torch.rand(8, 20, generator=g)
        y = torch.randint(0, 4, (8,), generator=g)
        opt.zero_grad(set_to_none=True)
        compute_loss("ce", model(x)[None], y).backward()
        opt.step()
        eng.step(epoch_start=t % spe == 0)
    return [r["step"] for r in eng.rewire_log], eng


def test_long_run_rewires_at_the_epoch_starts_after_each_due_step():
    """The demo's schedule (13 steps per epoch, 40 epochs): due every 26 steps before step 390, each done on
    the next epoch's first step, 26k + 1, exactly as before."""
    steps, eng = _run(520, 13)
    assert eng.timing == "epoch" and eng.t_iter == 26 and eng.t_end == 390
    assert steps == [26 * k + 1 for k in range(1, 15)]
    assert [r["due_step"] for r in eng.rewire_log] == [26 * k for k in range(1, 15)]


def test_one_epoch_rewires_mid_epoch_and_never_in_the_last_quarter():
    steps, eng = _run(13, 13)
    assert eng.timing == "step" and eng.t_iter == 2
    assert steps == [2, 4, 6, 8]                 # due steps, at once; t_end = int(0.75 * 13) = 9
    assert all(13 - s >= 13 - eng.t_end for s in steps)
    assert eng.rewired_total > 0 and eng.density() == pytest.approx(0.3, abs=0.01)


def test_t_iter_beyond_the_last_epoch_start_rewires_mid_epoch():
    """Two epochs of 20 steps with T_iter 25: the due step 25 has no later epoch start, so it is done at once."""
    steps, eng = _run(40, 20, t_iter=25)
    assert eng.timing == "step" and steps == [25]


def test_magnitude_pruning_happens_in_a_one_epoch_run():
    """Magnitude pruning falls due at prune_at of the run; in one epoch it used to wait for an epoch start
    that never came, leaving the network dense."""
    steps, eng = _run(12, 12, method="magnitude")
    assert steps == [6] and eng.structure_final
    assert eng.density() == pytest.approx(0.3, abs=0.01)


def test_two_epochs_keep_the_epoch_start_rewiring():
    steps, eng = _run(42, 21)
    assert eng.timing == "epoch" and steps == [22]


def _esl_train(tmp_path, *args):
    r = subprocess.run(ESL + ["train", "--dataset", "digits", "--method", "esl", "--density", "0.1", "--epochs", "1",
                              "--seed", "0", "--out", str(tmp_path / "r"), "--json", *args],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout)
    assert json.loads((tmp_path / "r" / "summary.json").read_text())["rewired_total"] == s["rewired_total"]
    return s


@pytest.mark.parametrize("batch", [100, 32])
def test_one_epoch_esl_train_rewires_and_holds_the_target_density(tmp_path, batch):
    """esl train for one epoch: rewired connections in summary.json, and every kept connection trained
    (nonzero density = the 0.1 budget, nothing dropped for being still 0)."""
    s = _esl_train(tmp_path, "--model", "mlp", "--batch-size", str(batch))
    assert s["rewired_total"] > 0 and s["untrained_dropped"] == 0
    assert s["density"] == pytest.approx(0.1, abs=5e-5) and s["mask_density"] == pytest.approx(0.1, abs=5e-5)


def test_one_epoch_of_a_silent_network_regrows_nothing_that_cannot_learn(tmp_path):
    """A conv net that has not started to spike in 13 steps gets almost no gradient: mid-epoch rewiring
    regrows only positions that had one, so no kept connection is a weight still at 0."""
    s = _esl_train(tmp_path, "--model", "convnet", "--width", "0.5")
    assert s["untrained_dropped"] == 0 and s["density"] == pytest.approx(s["mask_density"])
