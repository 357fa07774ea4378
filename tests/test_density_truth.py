"""Densities that are true: the kept model, its masks and every report agree on the nonzero weights;
rewiring waits for the epoch boundary; SET as published; inputs that are always 0 hold no budget."""
import json

import pytest
import torch

import esl_deploy
from esl_deploy.checkpoint import read_checkpoint
from esl_deploy.models import ModelSpec, build_model
from esl_deploy.train.config import TrainConfig
from esl_deploy.train.losses import compute_loss
from esl_deploy.train.masking import MaskEngine, SparsityConfig
from esl_deploy.train.trainer import train


def _engine(method, density=0.2, t_iter=3, total=60, spe=None, feasible=None, **kw):
    torch.manual_seed(0)
    model = build_model(ModelSpec("mlp", (1, 8, 8), 10, width=0.1))
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    eng = MaskEngine(model, opt, SparsityConfig(method=method, density=density, t_iter=t_iter, **kw),
                     total_steps=total, seed=1, steps_per_epoch=spe, feasible=feasible)
    return model, opt, eng


def _step(model, opt, eng, seed, epoch_start=None):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(4, 16, 1, 8, 8, generator=g) + 0.05  # every input active: every position can learn
    y = torch.randint(0, 10, (16,), generator=g)
    opt.zero_grad(set_to_none=True)
    compute_loss("ce", model(x), y).backward()
    opt.step()
    return eng.step(epoch_start=epoch_start)


@pytest.fixture(scope="module")
def short_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    out = {}
    for method in ("esl", "set", "pq"):
        cfg = TrainConfig(epochs=4, seed=0, sparsity=SparsityConfig(method=method, density=0.1))
        out[method] = (root / method, train(cfg, root / method, progress=False))
    return out


@pytest.mark.parametrize("method", ["esl", "set", "pq"])
def test_kept_model_has_no_zero_weight_inside_its_mask(short_runs, method):
    folder, summary = short_runs[method]
    best = read_checkpoint(folder / "checkpoint.pt")["best"]
    nnz = total = 0
    for name, mask in best["masks"].items():
        w = best["model"][name]
        assert not torch.any((w == 0) & mask), f"{name}: zero weights inside the kept mask"
        assert not torch.any((w != 0) & ~mask), f"{name}: nonzero weights outside the kept mask"
        nnz += int(mask.sum())
        total += mask.numel()
    assert summary["density"] == pytest.approx(nnz / total, abs=1e-12)
    assert summary["density"] <= summary["mask_density"] + 1e-12
    loaded = esl_deploy.load(folder / "checkpoint.pt")
    assert loaded.meta["density"] == pytest.approx(nnz / total, abs=1e-12)


def test_summary_records_environment_and_excluded_inputs(short_runs):
    _, summary = short_runs["esl"]
    env = summary["environment"]
    assert env["torch"]["num_threads"] >= 1 and env["torch"]["cpu_capability"]
    # digits: some pixels (corners) are 0 in every training image
    assert summary["dead_inputs_excluded"] > 0
    json.dumps(summary)


def test_no_mask_entry_on_an_input_that_is_always_zero(short_runs):
    folder, _ = short_runs["esl"]
    best = read_checkpoint(folder / "checkpoint.pt")["best"]
    from esl_deploy.datasets import load_dataset
    data = load_dataset("digits")
    active = torch.zeros(64, dtype=torch.bool)
    for i in range(len(data.train)):
        active |= data.train[i][0].reshape(-1) != 0
    first = best["masks"]["layers.1.weight"]
    assert int((~active).sum()) > 0
    assert not first[:, ~active].any()


def test_rewiring_due_mid_epoch_waits_for_the_next_epoch_start():
    model, opt, eng = _engine("esl", t_iter=3, total=60)
    before = {n: m.clone() for n, m in eng.masks.items()}
    for s in range(1, 6):  # steps 1..5 of an epoch of 5: due at 3, nothing moves
        assert _step(model, opt, eng, s, epoch_start=(s == 1)) == 0
    assert all(torch.equal(before[n], eng.masks[n]) for n in before)
    assert eng.pending == 3
    assert _step(model, opt, eng, 6, epoch_start=True) > 0  # first step of the next epoch
    assert eng.pending == 0


def test_without_epoch_information_rewiring_happens_when_due():
    model, opt, eng = _engine("esl", t_iter=3, total=60)
    moved = [_step(model, opt, eng, s) for s in range(1, 4)]
    assert moved[:2] == [0, 0] and moved[2] > 0


def test_regrown_weights_are_trained_before_the_epoch_ends():
    """At every epoch end (what validation sees) a weight inside the mask is 0 only where no gradient
    reached it since the rewiring (e.g. a hidden neuron whose outgoing connections were all pruned):
    every regrown connection that could learn has learned."""
    model, opt, eng = _engine("esl", t_iter=4, total=80)
    spe, zeros, grown_total = 4, 0, 0
    for s in range(16):
        grown_total += _step(model, opt, eng, s, epoch_start=(s % spe == 0))
        if s % spe == spe - 1:
            for name, p in eng.params.items():
                zero = (p == 0) & eng.masks[name]
                assert not torch.any(zero & eng.grad_seen[name]), f"{name} at step {s}"
                zeros += int(zero.sum())
    assert grown_total > 0 and zeros < grown_total


def test_pq_pending_pruning_keeps_structure_not_final():
    model, opt, eng = _engine("pq", density=0.5, t_iter=2, total=8, t_end=0.5)
    # t_end = 4 steps: due at 2; at step 3 the pruning is still pending -> not final
    _step(model, opt, eng, 1, epoch_start=True)
    _step(model, opt, eng, 2, epoch_start=False)
    _step(model, opt, eng, 3, epoch_start=False)
    _step(model, opt, eng, 4, epoch_start=False)
    assert eng.t >= eng.t_end and eng.pending
    assert not eng.structure_final
    _step(model, opt, eng, 5, epoch_start=True)
    assert eng.structure_final


def test_set_prunes_by_sign_and_regrows_small_random_weights():
    model, opt, eng = _engine("set", density=0.5, t_iter=None, spe=1, total=10, alpha=0.3)
    assert eng.t_iter == 1 and eng.t_end == 10  # SET: every epoch, to the end
    name = "layers.1.weight"
    p = eng.params[name]
    mask = eng.masks[name]
    with torch.no_grad():  # weights with known order: positives 1..P, negatives -1..-N (scaled)
        idx = torch.nonzero(mask.reshape(-1)).reshape(-1)
        vals = torch.arange(1, len(idx) + 1, dtype=torch.float32)
        signs = torch.where(torch.arange(len(idx)) % 2 == 0, 1.0, -1.0)
        p.view(-1)[idx] = vals * signs * 1e-3
    w0, m0 = p.detach().clone(), mask.clone()
    pos, neg = m0 & (w0 > 0), m0 & (w0 < 0)
    moved = eng.method.rewire(eng, 1)
    m1, w1 = eng.masks[name], p.detach()
    kept = m0 & m1 & (w1 == w0)
    removed, grown = m0 & ~kept, m1 & ~kept
    k_pos, k_neg = int(0.3 * int(pos.sum())), int(0.3 * int(neg.sum()))
    assert int((removed & pos).sum()) == k_pos and int((removed & neg).sum()) == k_neg
    # exactly the smallest positive values and the negative values closest to zero
    assert w0[removed & pos].max() < w0[kept & pos].min()
    assert w0[removed & neg].min() > w0[kept & neg].max()
    assert int(m1.sum()) == int(m0.sum()) and int(grown.sum()) == k_pos + k_neg <= moved  # moved: all layers
    new_w = w1[grown]
    assert torch.all(new_w != 0)  # not 0: SET's small random weights, N(0, 0.1^2)
    assert 0.06 < float(new_w.std()) < 0.14 and abs(float(new_w.mean())) < 0.03
    for v in opt.state[p].values():
        if torch.is_tensor(v) and v.shape == p.shape:
            assert torch.all(v[grown] == 0)


def test_feasible_positions_bound_the_masks():
    feasible = {"layers.1.weight": torch.cat([torch.zeros(1, 8, dtype=torch.bool),
                                              torch.ones(1, 56, dtype=torch.bool)], 1)}
    model, opt, eng = _engine("esl", density=0.3, t_iter=2, total=40, feasible=feasible)
    for s in range(20):
        _step(model, opt, eng, s)
        assert not eng.masks["layers.1.weight"][:, :8].any()
