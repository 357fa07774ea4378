"""ER / ERK layer densities, random masks and which layers are sparse."""
import pytest
import torch

from esl_deploy.masks import LayerShape, layer_densities, random_mask, sparsifiable
from esl_deploy.models import ModelSpec, build_model


def test_er_densities_of_the_digits_mlp_hand_computed():
    layers = [LayerShape("fc1", (800, 64)), LayerShape("fc2", (10, 800))]
    dens = layer_densities(layers, 0.1, "erk")
    # eps * (64 + 800) + eps * (800 + 10) = 0.1 * (51200 + 8000)  ->  eps = 5920 / 1674
    eps = 5920 / 1674
    assert dens["fc1"] == pytest.approx(eps * 864 / 51200)
    assert dens["fc2"] == pytest.approx(eps * 810 / 8000)
    assert (dens["fc1"] * 51200 + dens["fc2"] * 8000) / 59200 == pytest.approx(0.1)


def test_erk_density_of_conv_uses_kernel_size():
    layers = [LayerShape("c", (32, 16, 3, 3)), LayerShape("f", (10, 512))]
    dens = layer_densities(layers, 0.2, "erk")
    ratio = dens["c"] / dens["f"]
    assert ratio == pytest.approx(((32 + 16 + 3 + 3) / (32 * 16 * 9)) / ((10 + 512) / (10 * 512)))


def test_layers_over_one_are_capped_and_the_rest_redistributed():
    layers = [LayerShape("tiny", (2, 3)), LayerShape("big", (1000, 1000))]
    dens = layer_densities(layers, 0.05, "erk")
    assert dens["tiny"] == 1.0
    total = 6 + 1_000_000
    assert (6 * dens["tiny"] + 1_000_000 * dens["big"]) / total == pytest.approx(0.05)


def test_uniform_mode_and_bad_density():
    layers = [LayerShape("a", (4, 5)), LayerShape("b", (5, 6))]
    assert layer_densities(layers, 0.3, "uniform") == {"a": 0.3, "b": 0.3}
    for bad in (0.0, -0.1, 1.5):
        with pytest.raises(ValueError):
            layer_densities(layers, bad)


def test_random_mask_has_exact_count_and_is_seeded():
    m1 = random_mask((80, 64), 0.1, torch.Generator().manual_seed(3))
    m2 = random_mask((80, 64), 0.1, torch.Generator().manual_seed(3))
    assert m1.dtype == torch.bool and int(m1.sum()) == round(0.1 * 80 * 64)
    assert torch.equal(m1, m2)


def test_first_conv_stays_dense_and_mlp_is_fully_sparse():
    conv = build_model(ModelSpec("convnet", (1, 8, 8), 10))
    names = [n for n, _ in sparsifiable(conv)]
    assert names == ["layers.3.weight", "layers.7.weight"]  # conv(0) dense; conv(3), fc(7) sparse
    mlp = build_model(ModelSpec("mlp", (1, 8, 8), 10))
    assert [n for n, _ in sparsifiable(mlp)] == ["layers.1.weight", "layers.3.weight"]
