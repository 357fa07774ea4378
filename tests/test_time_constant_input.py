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
