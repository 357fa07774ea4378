"""What a data set gives the trainer, the fixed train/validation split, and spike encoding.

Static images (digits, MNIST, CIFAR) are float tensors in [0, 1] of shape (C, H, W), encoded over T
time steps at batch time by :func:`encode`. Event data sets (tonic) already give frames of shape
(T, P, H, W) per sample (``temporal=True``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Tuple

import torch
from torch.utils.data import Dataset, Subset

ENCODINGS = ("direct", "rate")
SPLIT_SEED = 0  # the train/validation split is fixed, whatever the training seed


@dataclass
class DataSplits:
    """Train, validation and test sets of one data set, and the shape of one time step of input."""

    train: Dataset
    val: Dataset
    test: Dataset
    input_shape: Tuple[int, ...]
    num_classes: int
    temporal: bool = False

    def __post_init__(self):
        self.input_shape = tuple(int(s) for s in self.input_shape)
        if self.num_classes < 2:
            raise ValueError(f"num_classes must be at least 2, got {self.num_classes}")


def split_train_val(train: Dataset, val_fraction: float = 0.1, seed: int = SPLIT_SEED) -> Tuple[Subset, Subset]:
    """Hold out ``val_fraction`` of ``train`` (at random, fixed seed) as the validation set, as in the paper."""
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must lie in (0, 1), got {val_fraction}")
    n = len(train)
    n_val = max(1, int(round(val_fraction * n)))
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    return Subset(train, perm[n_val:]), Subset(train, perm[:n_val])


def encode(x: torch.Tensor, T: int, mode: str, generator: torch.Generator | None = None,
           rows: Tuple[int, int] | None = None) -> torch.Tensor:
    """Turn a batch of static inputs (B, ...) in [0, 1] into T time steps (T, B, ...).

    - ``direct``: the analog value is presented at every step, x_t = x (the first layer then does MACs).
    - ``rate``: Bernoulli spikes, x_t ~ Bernoulli(clamp(x, 0, 1)), independent over t (binary input).

    ``rows = (start, total)``: ``x`` is rows ``start .. start + B`` of a batch of ``total`` (one process's
    shard, see :mod:`train.distributed`); the uniform draws are made for the whole batch and this part is
    used, so the shards together get exactly the encoding of the whole batch.
    """
    if T < 1:
        raise ValueError(f"T must be at least 1, got {T}")
    if mode == "direct":
        return x.unsqueeze(0).expand(T, *x.shape).contiguous()
    if mode == "rate":
        p = x.clamp(0.0, 1.0).unsqueeze(0).expand(T, *x.shape)
        if rows is None:
            u = torch.rand(p.shape, generator=generator, device="cpu")
        else:
            start, total = rows
            u = torch.rand((T, total) + tuple(x.shape[1:]), generator=generator, device="cpu")[:, start:start + len(x)]
        u = u.to(p.device)
        return (u < p).to(x.dtype)
    raise ValueError(f"unknown encoding {mode!r}; choose one of: {', '.join(ENCODINGS)}")


def to_time_major(x: torch.Tensor, T: int, mode: str, temporal: bool,
                  generator: torch.Generator | None = None, rows: Tuple[int, int] | None = None) -> torch.Tensor:
    """A collated batch -> (T, B, ...): encode static input, or transpose event frames (B, T, ...)."""
    if temporal:
        if x.shape[1] != T:
            raise ValueError(f"event frames have {x.shape[1]} time bins but T={T}")
        return x.transpose(0, 1).float()
    return encode(x.float(), T, mode, generator, rows)
