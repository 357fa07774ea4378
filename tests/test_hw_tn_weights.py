"""TrueNorth's weight rule: optimal 4 levels per neuron, 9-bit integers, one type per source in cluster mode."""
import itertools

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from torch import nn

from hw_models.tn_weights import (WEIGHT_MAX, apply_truenorth_weights, cluster_columns, duplicate_rows,
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
