"""PQ index and prune count: hand-computed values and the sanity values of the papers."""
import math

import pytest
import torch

from esl_deploy.train.pq_index import PQConfig, pq_index, prune_count, retained_bound


def test_equal_magnitudes_give_zero():
    w = torch.tensor([0.3, -0.3, 0.3, -0.3, 0.3])
    assert float(pq_index(w)) == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("d", [2, 10, 1000])
def test_one_hot_gives_one_minus_one_over_d(d):
    w = torch.zeros(d)
    w[3 % d] = -2.5
    assert float(pq_index(w, p=0.5, q=1.0)) == pytest.approx(1 - 1 / d, rel=1e-9)


def test_hand_computed_two_weights():
    # ||w||_0.5 = (1 + 2)^2 = 9, ||w||_1 = 5, d^(1/q - 1/p) = 2^-1  ->  I = 1 - 9/10 = 0.1
    assert float(pq_index(torch.tensor([1.0, 4.0]))) == pytest.approx(0.1, abs=1e-12)


def test_mask_restricts_to_active_weights():
    w = torch.tensor([1.0, 4.0, 100.0])
    mask = torch.tensor([True, True, False])
    assert float(pq_index(w, mask)) == pytest.approx(0.1, abs=1e-12)


def test_neuron_scope_gives_one_index_per_row():
    w = torch.tensor([[1.0, 1.0, 1.0], [0.0, 0.0, 5.0]])
    idx = pq_index(w, dim=1)
    assert idx.shape == (2,)
    assert float(idx[0]) == pytest.approx(0.0, abs=1e-12)
    assert float(idx[1]) == pytest.approx(1 - 1 / 3, rel=1e-9)


def test_gaussian_prune_fraction_is_near_fifteen_percent():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(200_000, generator=g)
    cfg = PQConfig()  # p=.5, q=1, eta=.001, gamma=1, beta=.9
    index = pq_index(w, p=cfg.p, q=cfg.q)
    # E|w|^.5 and E|w| of a standard normal give I = 1 - (E sqrt|w|)^2 / E|w| = 0.1527
    assert float(index) == pytest.approx(0.1527, abs=0.003)
    c = prune_count(index, torch.tensor(float(w.numel())), cfg)
    assert float(c) / w.numel() == pytest.approx(0.154, abs=0.004)


def test_equal_magnitudes_prune_about_point_one_percent_and_one_hot_is_clamped_to_beta():
    cfg = PQConfig()
    d = torch.tensor(10_000.0)
    c_equal = prune_count(torch.tensor(0.0), d, cfg)
    # r = ceil(10000 / 1.001^2) = 9981 -> c = 19
    assert int(c_equal) == 10_000 - math.ceil(10_000 / 1.001 ** 2)
    c_onehot = prune_count(torch.tensor(1 - 1 / 10_000), d, cfg)
    assert int(c_onehot) == 9000


def test_retained_bound_formula_for_general_p_q():
    index, d = torch.tensor(0.3), torch.tensor(100.0)
    p, q, eta = 0.4, 1.5, 0.01
    expected = math.ceil(100 * (1 + eta) ** (-q / (q - p)) * (1 - 0.3) ** (q * p / (q - p)))
    assert float(retained_bound(index, d, p, q, eta)) == expected


@pytest.mark.parametrize("kw", [dict(p=1.0, q=0.5), dict(beta=1.5), dict(scope="row"), dict(rho=2)])
def test_config_rejects_bad_values(kw):
    with pytest.raises(ValueError):
        PQConfig(**kw)
