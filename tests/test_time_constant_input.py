"""A time-constant input (direct encoding) given once with T runs the same network as T copies."""
import pytest
import torch

from esl_deploy.models import ModelSpec, build_model


@pytest.mark.parametrize("name,shape", [("mlp", (1, 8, 8)), ("mlp2", (1, 8, 8)), ("convnet", (1, 8, 8))])
@pytest.mark.parametrize("readout", ["spikes", "membrane"])
def test_once_and_broadcast_equals_step_by_step(name, shape, readout):
    torch.manual_seed(0)
    model = build_model(ModelSpec(name, shape, 10, width=0.25, readout=readout))
    x = torch.rand(6, *shape) * 3
    full = x.unsqueeze(0).expand(8, *x.shape).contiguous()
    a = model(full)
    grads_a = torch.autograd.grad(a.square().sum(), list(model.parameters()), allow_unused=True)
    b = model(x, T=8)
    grads_b = torch.autograd.grad(b.square().sum(), list(model.parameters()), allow_unused=True)
    assert torch.equal(a, b)
    for ga, gb in zip(grads_a, grads_b):
        if ga is not None:
            assert torch.allclose(ga, gb, rtol=1e-5, atol=1e-6)


def test_batchnorm_in_training_ends_the_shared_prefix():
    torch.manual_seed(0)
    model = build_model(ModelSpec("vggsnn", (2, 16, 16), 10, width=0.05)).train()
    x = torch.rand(3, 2, 16, 16)
    a = model(x.unsqueeze(0).expand(4, *x.shape).contiguous())
    b = model(x, T=4)
    assert torch.allclose(a, b)


@pytest.mark.parametrize("shape", [(800,), (4, 5, 5)])
def test_fused_lif_is_bit_identical_to_snntorch_leaky(shape):
    from esl_deploy.neurons import LIF
    torch.manual_seed(0)
    fused, plain = LIF(shape, beta=0.9, fused=True), LIF(shape, beta=0.9, fused=False)
    x = (torch.randn(8, 16, *shape) * 1.5).requires_grad_()
    (s1, m1), (s2, m2) = fused.run(x), plain.run(x)
    assert torch.equal(s1, s2) and torch.equal(m1, m2)
    w, w2 = torch.randn_like(s1), torch.randn_like(m1)
    g1, = torch.autograd.grad((s1 * w).sum() + (m1 * w2).sum(), x)
    g2, = torch.autograd.grad((s2 * w).sum() + (m2 * w2).sum(), x)
    assert torch.equal(g1, g2)
