"""The sparsity engine: masks zero weights and optimizer state, density is held, rewiring moves."""
import math

import pytest
import torch

from esl_deploy.models import ModelSpec, build_model
from esl_deploy.train.losses import compute_loss
from esl_deploy.train.masking import METHODS, MaskEngine, SparsityConfig
from esl_deploy.train.pq_index import PQConfig
from esl_deploy.train.rewire import grow_by_score, prune_magnitude
from esl_deploy.train.schedule import RewireSchedule


def _setup(method, optimizer="adam", density=0.2, t_iter=3, total=30, **kw):
    torch.manual_seed(0)
    model = build_model(ModelSpec("mlp", (1, 8, 8), 10, width=0.1))
    opt = (torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9) if optimizer == "sgd"
           else torch.optim.Adam(model.parameters(), lr=0.01))
    eng = MaskEngine(model, opt, SparsityConfig(method=method, density=density, t_iter=t_iter, **kw),
                     total_steps=total, seed=1)
    return model, opt, eng


def _step(model, opt, eng, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(4, 8, 1, 8, 8, generator=g)
    y = torch.randint(0, 10, (8,), generator=g)
    opt.zero_grad(set_to_none=True)
    compute_loss("ce", model(x), y).backward()
    opt.step()
    return eng.step()


@pytest.mark.parametrize("method", ["static", "set", "rigl", "esl", "pq", "magnitude"])
@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_masked_weights_and_optimizer_state_are_zero_after_every_step(method, optimizer):
    model, opt, eng = _setup(method, optimizer)
    for s in range(20):
        _step(model, opt, eng, s)
        for name, p in eng.params.items():
            off = ~eng.masks[name]
            assert torch.all(p[off] == 0)
            states = [v for v in opt.state[p].values() if torch.is_tensor(v) and v.shape == p.shape]
            assert states, "optimizer state was not found"
            for v in states:
                assert torch.all(v[off] == 0)


@pytest.mark.parametrize("method", ["set", "rigl", "esl"])
def test_density_after_each_rewiring_equals_target_within_one_connection(method):
    model, opt, eng = _setup(method, density=0.1, t_iter=2, total=40)
    targets = {n: eng.target_density[n] * m.numel() for n, m in eng.masks.items()}
    before = {n: m.clone() for n, m in eng.masks.items()}
    rewirings = 0
    for s in range(30):
        if _step(model, opt, eng, s):
            rewirings += 1
            for n, m in eng.masks.items():
                assert abs(int(m.sum()) - targets[n]) <= 1
    assert rewirings >= 5
    assert any(not torch.equal(before[n], eng.masks[n]) for n in before), "rewiring never moved a connection"


def test_esl_rewires_the_cosine_fraction():
    model, opt, eng = _setup("esl", density=0.2, t_iter=5, total=100, alpha=0.3, t_end=0.75)
    nnz = sum(eng.nnz().values())
    moved = [(s + 1, _step(model, opt, eng, s)) for s in range(10)]
    t5 = dict(moved)[5]
    f = 0.3 / 2 * (1 + math.cos(math.pi * 5 / 75))
    expected = sum(math.floor(f * n) for n in eng.nnz().values())
    assert t5 == expected and 0 < t5 < nnz


def test_pq_lowers_density_and_magnitude_prunes_once_to_target():
    model, opt, eng = _setup("pq", density=1.0, t_iter=2, total=40, pq=PQConfig(rho=0.5))
    for s in range(30):
        _step(model, opt, eng, s)
    assert eng.density() < 0.95
    model, opt, eng = _setup("magnitude", density=0.25, total=20, prune_at=0.5)
    for s in range(9):
        _step(model, opt, eng, s)
    assert eng.density() == 1.0 and not eng.structure_final
    _step(model, opt, eng, 9)
    for n, m in eng.masks.items():
        assert int(m.sum()) == round(eng.target_density[n] * m.numel())
    assert eng.structure_final


def test_prune_magnitude_removes_the_smallest_active_weights():
    w = torch.tensor([[0.5, -0.1, 0.3, 0.05, -2.0]])
    mask = torch.tensor([[True, True, True, False, True]])
    new = prune_magnitude(w, mask, torch.tensor([2]))
    assert new.tolist() == [[True, False, False, False, True]]


def test_grow_prefers_fresh_candidates_then_just_pruned():
    mask = torch.tensor([[True, False, False, False]])
    score = torch.tensor([[0.0, 5.0, 1.0, 9.0]])
    just = torch.tensor([[False, False, False, True]])
    new = grow_by_score(mask, score, torch.tensor([2]), just_pruned=just)
    assert new.tolist() == [[True, True, True, False]]
    new = grow_by_score(mask, score, torch.tensor([3]), just_pruned=just)
    assert new.tolist() == [[True, True, True, True]]
    allowed = torch.tensor([[True, False, True, True]])
    new = grow_by_score(mask, score, torch.tensor([1]), allowed=allowed)
    assert new.tolist() == [[True, False, False, True]]


def test_cosine_and_constant_schedules():
    cos = RewireSchedule("cosine", 0.3, 100)
    assert cos(0) == pytest.approx(0.3) and cos(50) == pytest.approx(0.15) and cos(100) == 0.0
    const = RewireSchedule("constant", 0.3, 100)
    assert const(99) == 0.3 and const(100) == 0.0
    restored = RewireSchedule()
    restored.load_state_dict(cos.state_dict())
    assert restored == cos


def test_engine_state_round_trip():
    model, opt, eng = _setup("esl", t_iter=2)
    for s in range(7):
        _step(model, opt, eng, s)
    state = eng.state_dict()
    model2, opt2, eng2 = _setup("esl", t_iter=2)
    eng2.load_state_dict(state)
    assert eng2.t == eng.t and eng2.rewired_total == eng.rewired_total
    for n in eng.masks:
        assert torch.equal(eng.masks[n], eng2.masks[n])
    assert torch.equal(eng.generator.get_state(), eng2.generator.get_state())


def test_registry_and_config_validation():
    assert set(METHODS) == {"dense", "static", "set", "rigl", "esl", "pq", "magnitude"}
    for kw in (dict(method="nope"), dict(density=0.0), dict(density=1.2), dict(t_iter=0), dict(grow="x")):
        with pytest.raises(ValueError):
            SparsityConfig(**kw)
    cfg = SparsityConfig(method="pq", density=0.8, pq=PQConfig(scope="neuron"))
    assert SparsityConfig.from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize("method", ["esl", "pq"])
def test_core_aware_rewiring_stays_inside_core_groups(method):
    torch.manual_seed(0)
    model = build_model(ModelSpec("mlp", (1, 28, 28), 10, width=0.5))  # 784-400-10: 4 axon blocks
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    cfg = SparsityConfig(method=method, density=0.1 if method == "esl" else 0.3, t_iter=2, core_aware="truenorth")
    eng = MaskEngine(model, opt, cfg, total_steps=30, seed=1)
    fc1 = "layers.1.weight"
    assert not bool(eng.allowed[fc1].all()), "784 inputs need more than one axon block"
    for s in range(12):
        g = torch.Generator().manual_seed(s)
        opt.zero_grad()
        compute_loss("ce", model(torch.rand(4, 6, 1, 28, 28, generator=g)), torch.randint(0, 10, (6,), generator=g)).backward()
        opt.step()
        eng.step()
        for n, m in eng.masks.items():
            assert not bool((m & ~eng.allowed[n]).any()), f"{n} grew outside its core group"
    assert eng.rewired_total > 0


def test_gradient_hook_follows_the_mask_through_rewirings_and_in_place_edits():
    """The hook's cached 0./1. mask is the current bool mask: after rewirings (new mask tensors) and an
    in-place edit, every masked gradient equals grad * mask, and grad_seen is a bool view of the steps."""
    model, opt, eng = _setup("esl", t_iter=2, total=40)
    name, p = next(iter(eng.params.items()))
    seen = torch.zeros_like(eng.masks[name])
    for s in range(9):
        if s == 5:
            eng.masks[name][0].logical_not_()  # an in-place edit bumps the version
        mask = eng.masks[name].clone()  # the mask of this backward pass (a rewiring in step() comes after)
        _step(model, opt, eng, s)
        assert torch.equal(p.grad, eng.dense_grad[name] * mask)
        seen |= eng.dense_grad[name] != 0
        if eng.t % eng.t_iter == 0:
            seen.zero_()  # a rewiring resets what was seen
        assert eng.grad_seen[name].dtype == torch.bool
        assert torch.equal(eng.grad_seen[name], seen)
    state = eng.state_dict()
    assert state["grad_seen"][name].dtype == torch.bool
