"""Adam that updates a masked weight only where its mask holds a connection, with Adam's arithmetic.

A masked weight's gradient is 0 off the mask (the engine masks it as it arrives), so its Adam moments
stay 0 there and its update is ``-lr/bc1 * 0 / (0 + eps) = -0``: Adam computes nothing for ~90 % of a
10 %-dense layer. :class:`MaskedAdam` runs torch's own multi-tensor Adam on every other parameter and,
for a weight the :class:`~train.masking.MaskEngine` masks (on the CPU, plain Adam settings), the same
sequence of operations on the entries of its mask only (k = the active flat indices)::

    m_k <- lerp(m_k, g_k, 1 - beta1);  v_k <- beta2 v_k + (1 - beta2) g_k^2
    p_k <- p_k - (lr / (1 - beta1^t)) m_k / (sqrt(v_k) / sqrt(1 - beta2^t) + eps)

Each of these is an elementwise IEEE operation, so every entry gets the bits torch's
``_multi_tensor_adam`` (torch 2.3.1) gives it, and the entries off the mask keep theirs (0, moments 0):
the trained weights are identical, bit for bit (``tests/test_sparse_adam.py``; the digits ESL
checkpoint is unchanged). The state (``step``, ``exp_avg``, ``exp_avg_sq``, full-size tensors) is Adam's,
so checkpoints, resume and the engine's zeroing of pruned and regrown entries work as before.
Anything else (weight decay, amsgrad, maximize, a GPU tensor, a tensor learning rate) takes torch's path.
"""
from __future__ import annotations

import math
from typing import Callable, Dict, Optional, Tuple

import torch

SPARSE_BELOW = 0.5  # the masked path runs for masks holding at most this share of their weight
MaskOf = Callable[[torch.Tensor], Optional[torch.Tensor]]


class MaskedAdam(torch.optim.Adam):
    """``torch.optim.Adam`` (foreach) that skips the entries off each masked weight's mask; see module doc."""

    def __init__(self, params, **kwargs):
        super().__init__(params, **kwargs)
        self._mask_of: Optional[MaskOf] = None
        self._active: Dict[int, Tuple[torch.Tensor, int, torch.Tensor]] = {}  # id(p) -> (mask, version, flat idx)

    def use_masks(self, mask_of: MaskOf) -> None:
        """``mask_of(p)``: the bool mask of parameter ``p`` (same shape), or None for an unmasked one."""
        self._mask_of = mask_of
        self._active.clear()

    def _sparse_ok(self, group: dict, p: torch.Tensor) -> bool:
        return (p.device.type == "cpu" and p.is_contiguous() and not p.is_complex() and p.grad is not None and not p.grad.is_sparse
                and group["weight_decay"] == 0 and not group["amsgrad"] and not group["maximize"]
                and not group["capturable"] and not group["differentiable"] and not group.get("fused")
                and not torch.is_tensor(group["lr"]))

    def _indices(self, p: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        key = self._active.get(id(p))
        if key is None or key[0] is not mask or key[1] != mask._version:  # the mask itself is held: no id reuse
            idx = mask.reshape(-1).nonzero().squeeze(1)
            self._active[id(p)] = (mask, mask._version, idx)
            return idx
        return key[2]

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        sparse = []  # (group, param, grad, flat indices): hidden from torch's step, updated below
        if self._mask_of is not None:
            for group in self.param_groups:
                for p in group["params"]:
                    mask = self._mask_of(p)
                    if mask is None or not self._sparse_ok(group, p):
                        continue
                    idx = self._indices(p, mask)
                    if len(idx) <= SPARSE_BELOW * p.numel():  # a mostly dense mask: torch's path is faster
                        sparse.append((group, p, p.grad, idx))
                        p.grad = None
        try:
            super().step()
        finally:
            for group, p, g, idx in sparse:
                p.grad = g
        for group, p, g, idx in sparse:
            self._sparse_update(group, p, g, idx)
        return loss

    def _sparse_update(self, group: dict, p: torch.Tensor, g: torch.Tensor, idx: torch.Tensor) -> None:
        state = self.state[p]
        if len(state) == 0:  # as torch.optim.Adam._init_group (CPU, not capturable/fused)
            state["step"] = torch.tensor(0.0, dtype=torch.get_default_dtype())
            state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        beta1, beta2 = group["betas"]
        state["step"] += 1
        t = state["step"].item()
        flat_p, flat_m, flat_v = p.view(-1), state["exp_avg"].view(-1), state["exp_avg_sq"].view(-1)
        take = lambda flat: torch.index_select(flat, 0, idx)  # noqa: E731  (faster than flat[idx] on CPUs)
        gk = take(g.reshape(-1))
        m, v, pk = take(flat_m), take(flat_v), take(flat_p)
        m.lerp_(gk, 1 - beta1)
        v.mul_(beta2).addcmul_(gk, gk, value=1 - beta2)
        step_size = (group["lr"] / (1 - beta1 ** t)) * -1
        denom = v.sqrt().div_(math.sqrt(1 - beta2 ** t)).add_(group["eps"])
        pk.addcdiv_(m, denom, value=step_size)
        for flat, values in ((flat_m, m), (flat_v, v), (flat_p, pk)):
            flat.index_copy_(0, idx, values)
