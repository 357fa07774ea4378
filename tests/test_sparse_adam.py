"""MaskedAdam: the bits of torch's Adam, computed on the masks' entries only."""
import pytest
import torch

from esl_deploy.train.sparse_adam import MaskedAdam


def _pair(mask_density, **kw):
    torch.manual_seed(0)
    w = torch.randn(60, 50)
    mask = torch.rand(60, 50) < mask_density
    a = torch.nn.Parameter((w * mask).clone())
    b = torch.nn.Parameter((w * mask).clone())
    bias_a, bias_b = torch.nn.Parameter(torch.randn(60)), None
    bias_b = torch.nn.Parameter(bias_a.detach().clone())
    ref = torch.optim.Adam([a, bias_a], lr=0.01, foreach=True, **kw)
    ours = MaskedAdam([b, bias_b], lr=0.01, foreach=True, **kw)
    masks = {id(b): mask}
    ours.use_masks(lambda p: masks.get(id(p)))
    return a, bias_a, ref, b, bias_b, ours, mask, masks


@pytest.mark.parametrize("density", [0.1, 0.4, 0.9])
def test_same_bits_as_torch_adam_through_a_mask_change(density):
    a, ba, ref, b, bb, ours, mask, masks = _pair(density)
    for step in range(30):
        if step == 15:  # a rewiring: a new mask object, pruned entries and their state zeroed by the engine
            new = mask.clone()
            new.view(-1)[:40] = ~new.view(-1)[:40]
            for p, opt in ((a, ref), (b, ours)):
                with torch.no_grad():
                    p.mul_(new)
                    for v in opt.state[p].values():
                        if v.shape == p.shape:
                            v.mul_(new)
            mask = masks[id(b)] = new
        g = torch.randn(60, 50) * mask
        gb = torch.randn(60)
        a.grad, b.grad, ba.grad, bb.grad = g.clone(), g.clone(), gb.clone(), gb.clone()
        ref.step()
        ours.step()
        assert torch.equal(a, b) and torch.equal(ba, bb)
    sa, sb = ref.state_dict()["state"], ours.state_dict()["state"]
    assert all(torch.equal(sa[i][k], sb[i][k]) for i in sa for k in sa[i])  # Adam's state format, same values
    assert b.grad is not None  # gradients are left in place


def test_settings_it_does_not_cover_take_torchs_path():
    a, ba, ref, b, bb, ours, mask, _ = _pair(0.1, weight_decay=0.1)
    for _ in range(5):
        g = torch.randn(60, 50) * mask
        a.grad, b.grad = g.clone(), g.clone()
        ba.grad = bb.grad = None
        ref.step()
        ours.step()
    assert torch.equal(a, b)
