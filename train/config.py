"""The run configuration: one typed record, validated when built, saved in every checkpoint.

Defaults follow the ESL-SNNs paper where it gives a value (batch 100 and learning rate decaying
exponentially from 0.01 to 0.0001 for the MLP; T_iter = 1000) and state a documented convention where
it does not (Adam; beta = 0.9, threshold = 1; direct encoding). ``for_dataset`` fills in the values
that depend on the data set size (T, and T_iter scaled for tiny data sets).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Optional

from esl_deploy.datasets import ENCODINGS
from esl_deploy.models import MODELS, READOUTS, is_factory

from .losses import LOSSES
from .masking import SparsityConfig

OPTIMIZERS = ("adam", "sgd")
# Fields that may differ between an interrupted run and its resumption.
NOT_IDENTITY = ("device", "data_dir")


@dataclass(frozen=True)
class TrainConfig:
    model: str = "mlp"
    dataset: str = "digits"
    data_dir: Optional[str] = None
    epochs: int = 40
    seed: int = 0
    T: int = 8
    encoding: str = "direct"
    batch_size: int = 100
    optimizer: str = "adam"
    lr: float = 0.01
    lr_end: float = 0.0001
    momentum: float = 0.9
    weight_decay: float = 0.0
    loss: str = "ce"
    readout: str = "spikes"
    tet_lambda: float = 1e-3
    width: float = 1.0
    beta: float = 0.9
    threshold: float = 1.0
    sparsity: SparsityConfig = field(default_factory=SparsityConfig)
    frame_size: Optional[int] = None  # event data: frames of frame_size^2 (events pooled onto that grid)
    weight_bits: Optional[int] = None  # quantisation-aware training onto a 2^(b-1)-1 step grid (train/quant.py)
    device: str = "cpu"

    def __post_init__(self):
        if isinstance(self.sparsity, dict):
            object.__setattr__(self, "sparsity", SparsityConfig.from_dict(self.sparsity))
        if self.model not in MODELS and not is_factory(self.model):
            raise ValueError(f"unknown model {self.model!r}; choose one of: {', '.join(MODELS)}, or "
                             "module.path:factory (a function returning your nn.Module)")
        if is_factory(self.model):
            unused = [name for name, bad in (("width", self.width != 1.0), ("readout", self.readout != "spikes"),
                                             ("weight_bits", self.weight_bits is not None)) if bad]
            if unused:
                raise ValueError(f"--{unused[0].replace('_', '-')} does not apply to a user model ({self.model}): "
                                 "its own code builds the network")
        if self.epochs < 1:
            raise ValueError(f"epochs must be at least 1, got {self.epochs}")
        if self.T < 1:
            raise ValueError(f"T must be at least 1, got {self.T}")
        if self.encoding not in ENCODINGS:
            raise ValueError(f"unknown encoding {self.encoding!r}; choose one of: {', '.join(ENCODINGS)}")
        if self.batch_size < 1:
            raise ValueError(f"batch size must be at least 1, got {self.batch_size}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {self.optimizer!r}; choose one of: {', '.join(OPTIMIZERS)}")
        if not (0 < self.lr < math.inf and 0 < self.lr_end < math.inf):
            raise ValueError(f"learning rates must be positive finite numbers, got lr={self.lr}, lr_end={self.lr_end}")
        for name in ("momentum", "weight_decay", "width", "beta", "threshold"):
            if not math.isfinite(getattr(self, name)):
                raise ValueError(f"{name} must be a finite number, got {getattr(self, name)}")
        if not 0 <= self.seed < 2 ** 32:
            raise ValueError(f"seed must lie in 0 .. 2^32 - 1, got {self.seed}")
        if self.loss not in LOSSES:
            raise ValueError(f"unknown loss {self.loss!r}; choose one of: {', '.join(LOSSES)}")
        if self.readout not in READOUTS:
            raise ValueError(f"unknown readout {self.readout!r}; choose one of: {', '.join(READOUTS)}")
        if not 0 <= self.tet_lambda <= 1:
            raise ValueError(f"tet_lambda must lie in [0, 1], got {self.tet_lambda}")
        if self.frame_size is not None and self.frame_size < 1:
            raise ValueError(f"frame size must be at least 1, got {self.frame_size}")
        if self.weight_bits is not None and not 2 <= self.weight_bits <= 16:
            raise ValueError(f"weight bits must lie in 2..16, got {self.weight_bits}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown config keys: {', '.join(sorted(unknown))}")
        return cls(**d)

    def identity(self) -> dict:
        """The settings that define the run (everything a resumed run must share)."""
        d = self.to_dict()
        for key in NOT_IDENTITY:
            d.pop(key, None)
        return d

    def replace(self, **changes) -> "TrainConfig":
        return replace(self, **changes)


def config_diff(a: dict, b: dict, prefix: str = "") -> list:
    """Dotted names of the keys whose values differ between two nested config dicts."""
    out = []
    for key in sorted(set(a) | set(b)):
        va, vb = a.get(key), b.get(key)
        if isinstance(va, dict) and isinstance(vb, dict):
            out += config_diff(va, vb, f"{prefix}{key}.")
        elif va != vb:
            out.append(f"{prefix}{key}")
    return out
