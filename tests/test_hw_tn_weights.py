"""TrueNorth's weight rule: optimal 4 levels per neuron, 9-bit integers, one type per source in cluster mode."""
import itertools

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from torch import nn

from esl_deploy.hw_models.tn_weights import (WEIGHT_MAX, apply_truenorth_weights, cluster_columns, duplicate_rows,
                                  duplicated_mask, four_levels)


def _sse(x, levels):
    return float((np.min(np.abs(x[:, None] - np.asarray(levels)[None, :]), axis=1) ** 2).sum())


@pytest.mark.parametrize("seed", range(6))
def test_four_levels_is_the_optimal_1d_kmeans(seed):
    x = np.random.default_rng(seed).normal(size=9)
    xs = np.sort(x)
    best = min(_sse(x, [xs[a:b].mean() for a, b in zip((0,) + c, c + (9,))])
               for c in itertools.combinations(range(1, 9), 3))
    assert _sse(x, four_levels(x)) == pytest.approx(best)
    assert four_levels(np.array([2.0, -1.0, 2.0])).tolist() == [-1.0, 2.0]


def test_duplicate_rows_by_hand():
    w = np.array([[0.5, 0.0, -0.25, 1.0, 0.5, 2.0, 0.75], [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]])
    out, types = duplicate_rows(w)
    # row 0 has 5 distinct weights: the optimal 4 levels merge 0.75 and 1.0 (mean 0.875: squared error
    # 2 x 0.125^2 = 0.031, against 0.042 for merging 0.5, 0.5, 0.75); integers on the scale 2 / 255
    s = 2.0 / WEIGHT_MAX
    assert np.allclose(out[0, [2, 0, 4, 5]], [round(-0.25 / s) * s, round(0.5 / s) * s, round(0.5 / s) * s, 2.0])
    assert np.allclose(out[0, [3, 6]], round(0.875 / s) * s)
    assert (out[0] == 0).tolist() == (w[0] == 0).tolist() and not out[1].any()
    assert types[0].tolist() == [1, -1, 0, 2, 1, 3, 2] and (types[1] == -1).all()
    ints = out[0][w[0] != 0] / s
    assert np.allclose(ints, np.round(ints)) and np.abs(ints).max() <= WEIGHT_MAX


def test_cluster_gives_every_source_one_type():
    rng = np.random.default_rng(0)
    w = rng.normal(size=(20, 30)) * (rng.random((20, 30)) < 0.3)
    out, types = cluster_columns(w)
    assert not (out[w == 0]).any()  # a type whose mean rounds to 0 leaves its synapses at 0
    for j in range(30):
        assert np.unique(types[w[:, j] != 0, j]).size <= 1
    for n in range(20):
        assert np.unique(out[n][w[n] != 0]).size <= 4


def test_duplicated_mask_and_model_copy():
    m = sp.csr_matrix(np.array([[1, 1, 0], [0, 1, 1]], bool))
    t = np.array([[0, 3, -1], [-1, 3, 1]])
    d = duplicated_mask(m, t)
    assert d.shape == (2, 12) and sorted(zip(*d.nonzero())) == [(0, 0), (0, 7), (1, 7), (1, 9)]
    torch.manual_seed(0)
    lin = nn.Sequential(nn.Linear(6, 5))
    with torch.no_grad():
        lin[0].weight.mul_(torch.rand(5, 6) < 0.7)
    tn, stats, types = apply_truenorth_weights(lin, "duplicate")
    # no synapse appears (one may round to 0), at most 4 distinct weights per neuron, the original is kept
    assert not tn[0].weight[lin[0].weight == 0].any() and 0 < stats[0].rel_error < 0.2
    assert all(torch.unique(row[row != 0]).numel() <= 4 for row in tn[0].weight)
    assert stats[0].sources <= stats[0].duplicated_sources <= 4 * stats[0].sources and types["0"].shape == (5, 6)
    with pytest.raises(ValueError):
        apply_truenorth_weights(lin, "float")


def _digits_net():
    from esl_deploy.datasets import load_dataset
    from esl_deploy.models import ModelSpec, build_model

    torch.manual_seed(0)
    model = build_model(ModelSpec("mlp", (1, 8, 8), 10, width=0.2))
    with torch.no_grad():  # a sparse net: 30 % of the weights
        for m in model.modules():
            if isinstance(m, nn.Linear):
                m.weight.mul_(torch.rand(m.weight.shape) < 0.3).mul_(3.0)
    return model, load_dataset("digits", None, T=4)


def _train_loss(model, data, T=4):
    from esl_deploy.datasets import to_time_major

    x = torch.stack([data.train[i][0] for i in range(300)])
    y = torch.tensor([int(data.train[i][1]) for i in range(300)])
    with torch.no_grad():
        return float(nn.functional.cross_entropy(model(to_time_major(x, T, "direct", False)).sum(0), y))


def test_fine_tuned_levels_still_follow_the_rule_and_lower_the_training_loss():
    from esl_deploy.hw_models.tn_weights import finetune_levels, follows_rule

    model, data = _digits_net()
    tn, _, types = apply_truenorth_weights(model, "duplicate")
    names = [n for n, m in tn.named_modules() if isinstance(m, nn.Linear)]
    for n in names:
        w = dict(tn.named_modules())[n].weight
        assert follows_rule(w, types[n])
        assert not follows_rule(dict(model.named_modules())[n].weight, types[n])  # float weights do not
    start = {n: dict(tn.named_modules())[n].weight.detach().clone() for n in names}
    before = _train_loss(tn, data)
    finetune_levels(tn, types, None, data.train, T=4, encoding="direct", epochs=2, seed=0)
    for n in names:
        w = dict(tn.named_modules())[n].weight
        assert follows_rule(w, types[n]), n
        off = torch.from_numpy(types[n] < 0)
        assert not w.detach()[off].any()  # no synapse where the crossbar has none
        assert not torch.equal(w, start[n])
    assert _train_loss(tn, data) < before


def test_the_report_runs_the_fine_tuned_network():
    from esl_deploy.hw_models.tn_weights import truenorth_weights_report
    from esl_deploy.hw_models.unroll import synaptic_layers

    model, data = _digits_net()
    r = truenorth_weights_report(model, synaptic_layers(model), data.test, T=4, encoding="direct", packed_cores=1,
                                 finetune_epochs=1, train=data.train, limit=100)
    assert r.finetune_epochs == 1 and 0.0 <= r.accuracy_truenorth_finetuned <= 1.0
    assert r.to_dict()["accuracy_truenorth_finetuned"] == r.accuracy_truenorth_finetuned
    with pytest.raises(ValueError, match="duplicate"):
        truenorth_weights_report(model, synaptic_layers(model), data.test, mode="cluster", T=4, encoding="direct",
                                 packed_cores=1, finetune_epochs=1, train=data.train, limit=10)


def test_tn_finetune_without_duplicate_is_one_line(capsys):
    from helpers import assert_user_error, run_cli

    code, _, err = run_cli(capsys, "energy", "runs/none.pt", "--truenorth-weights", "cluster", "--tn-finetune", "1")
    assert_user_error(code, err, "--tn-finetune needs --truenorth-weights duplicate")
