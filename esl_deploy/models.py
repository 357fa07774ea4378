"""Spiking network architectures, built from a small :class:`ModelSpec` through one registry.

Every network is a :class:`SpikingNet`: an ordered list of layers run in multi-step mode. Input is
``(T, B, *input_shape)``; stateless layers (Linear, Conv2d, AvgPool2d, Flatten, BatchNorm) see the
time steps folded into the batch, LIF layers loop over time. The output is the spike train of the last
LIF layer, ``(T, B, num_classes)``; the prediction is the class with most output spikes.

``ModelSpec.readout`` chooses the last layer: ``"spikes"`` (default) a LIF layer as above;
``"membrane"`` a non-spiking leaky integrator (:class:`esl_deploy.neurons.LI`) whose output is its
membrane potential at every step, the real-valued classifier output TET is defined on; the
prediction is then the class with the largest summed (equivalently mean) membrane potential. The
layer list is otherwise identical, so hidden layers keep their state-dict names.

Architectures (``width`` multiplies hidden sizes and channels):

- ``mlp``: input-800-classes (the ESL-SNNs paper's 784-800-10; 64-800-10 on 8x8 digits).
- ``mlp2``: input-800-800-classes; its 800x800 hidden layer spans several 256-axon cores, which is
  where ``--core-aware truenorth`` saves cores.
- ``convnet``: 16C3-AP2-32C3-AP2-FC, small enough to train on a CPU in minutes.
- ``vggsnn``: 64C3-128C3-AP2-256C3-256C3-AP2-512C3-512C3-AP2-512C3-512C3-AP2-FC with BatchNorm
  (Deng et al. 2022, TET), as used by ESL-SNNs on DVS-CIFAR10.
- ``resnet19``: 128C3, then residual stages of 3x128, 3x256 (stride 2), 2x512 (stride 2) basic blocks,
  global average pool, FC256, FC (Zheng et al. 2021 / Deng et al. 2022), as used on CIFAR.
"""
from __future__ import annotations

import importlib
import importlib.util
import os
import re
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn

from .neurons import LI, LIF

READOUTS = ("spikes", "membrane")
BN_EPS = 2.0 ** -17  # BatchNorm's eps (PyTorch's default is 1e-5): a power of two, so ``1 - eps`` is a float32 and
#                      ``(1 - eps) + eps == 1`` exactly; a BatchNorm holding a folded layer (train.quant.quantized_state:
#                      gamma 1, mean 0, var 1 - eps) is then exactly the identity plus its beta, in float32 and float64


@dataclass(frozen=True)
class ModelSpec:
    """What network to build. Validated when built; round-trips through :meth:`to_dict`."""

    name: str
    input_shape: Tuple[int, ...]
    num_classes: int
    width: float = 1.0
    beta: float = 0.9
    threshold: float = 1.0
    readout: str = "spikes"  # "spikes": last layer LIF; "membrane": last layer a leaky integrator (no spikes)
    factory_dir: Optional[str] = None  # user models: the folder their module was imported from

    def __post_init__(self):
        object.__setattr__(self, "input_shape", tuple(int(s) for s in self.input_shape))
        if is_factory(self.name):
            if self.readout != "spikes" or self.width != 1.0:
                raise ValueError(f"a user model ({self.name}) is built by its own code: width and readout do not apply")
        elif self.name not in MODELS:
            raise ValueError(f"unknown model {self.name!r}; choose one of: {', '.join(sorted(MODELS))}, "
                             "or module.path:factory for your own network")
        if not self.input_shape or any(s <= 0 for s in self.input_shape):
            raise ValueError(f"input_shape must be positive, got {self.input_shape}")
        if self.num_classes < 1:  # 1: a graph read from NIR with one output neuron (a detector, a regressor)
            raise ValueError(f"num_classes must be at least 1, got {self.num_classes}")
        if not self.width > 0:
            raise ValueError(f"width must be positive, got {self.width}")
        if not 0.0 <= self.beta <= 1.0:
            raise ValueError(f"beta must lie in [0, 1], got {self.beta}")
        if not self.threshold > 0:
            raise ValueError(f"threshold must be positive, got {self.threshold}")
        if self.readout not in READOUTS:
            raise ValueError(f"unknown readout {self.readout!r}; choose one of: {', '.join(READOUTS)}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ModelSpec":
        return cls(**{**d, "input_shape": tuple(d["input_shape"])})


class SpikingNet(nn.Module):
    """An ordered list of layers run in multi-step mode; see the module docstring."""

    def __init__(self, layers: Sequence[nn.Module], spec: ModelSpec):
        super().__init__()
        self.layers = nn.ModuleList(layers)
        self.spec = spec

    def forward(self, x: torch.Tensor, T: Optional[int] = None) -> torch.Tensor:
        """``x`` (T, B, *input_shape) -> output spikes, or membrane for ``readout="membrane"``, (T, B, num_classes).

        ``x`` (B, *input_shape) with ``T`` given is an input that is the same at every step (direct
        encoding): the stateless layers before the first neuron layer are computed once per sample and
        broadcast over the T steps, f(x) expanded to (T, B, ...), instead of T times on T copies. The
        values are those of the (T, B) call (each row of a matmul is the same dot product; they can
        differ in the last bit only where a BLAS kernel blocks a batch of B rows differently from T*B
        rows), and the backward pass sums the T steps' gradients before the weight gradient, one
        matmul instead of T. BatchNorm in training mode ends the shared prefix (its batch statistics
        would count T copies).
        """
        layers = list(self.layers)
        if T is not None:
            i = 0
            while i < len(layers) and not _stateful(layers[i]) and not (
                    self.training and isinstance(layers[i], nn.modules.batchnorm._BatchNorm)):
                x = layers[i](x)
                i += 1
            x = x.unsqueeze(0).expand(T, *x.shape)
            layers = layers[i:]
        for layer in layers:
            x = apply_layer(layer, x)
        return x

    def trace(self, x: torch.Tensor) -> List[Tuple[str, nn.Module, torch.Tensor, torch.Tensor]]:
        """Run and return ``(name, layer, input, output)`` of every top-level layer, all (T, B, ...)."""
        out = []
        for i, layer in enumerate(self.layers):
            y = apply_layer(layer, x)
            out.append((str(i), layer, x, y))
            x = y
        return out


def _stateful(layer: nn.Module) -> bool:
    """Neuron layers and multi-step blocks: they run over time and take the whole (T, B, ...) tensor."""
    return isinstance(layer, (LIF, LI, MultiStep))


def apply_layer(layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Apply one layer to a (T, B, ...) tensor: LIF/LI and multi-step blocks take it whole, others folded."""
    if _stateful(layer):
        return layer(x)
    T, B = x.shape[:2]
    y = layer(x.reshape(T * B, *x.shape[2:]))
    return y.reshape(T, B, *y.shape[1:])


class MultiStep(nn.Module):
    """Marker base class: a block that takes and returns whole (T, B, ...) tensors."""


class BasicBlock(MultiStep):
    """Spiking residual basic block: LIF(BN(conv(LIF(BN(conv(x))))) + shortcut(x))."""

    def __init__(self, in_ch: int, out_ch: int, stride: int, in_hw: Tuple[int, int], beta: float,
                 threshold: float):
        super().__init__()
        out_hw = (_conv_out(in_hw[0], 3, stride, 1), _conv_out(in_hw[1], 3, stride, 1))
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_ch, eps=BN_EPS)
        self.lif1 = LIF((out_ch, *out_hw), beta=beta, threshold=threshold)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch, eps=BN_EPS)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_ch != out_ch:
            self.shortcut = nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride, bias=False),
                                          nn.BatchNorm2d(out_ch, eps=BN_EPS))
        self.lif2 = LIF((out_ch, *out_hw), beta=beta, threshold=threshold)
        self.out_hw = out_hw

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = apply_layer(nn.Sequential(self.conv1, self.bn1), x)
        y = self.lif1(y)
        y = apply_layer(nn.Sequential(self.conv2, self.bn2), y)
        return self.lif2(y + apply_layer(self.shortcut, x))


def _conv_out(n: int, k: int, s: int, p: int) -> int:
    return (n + 2 * p - k) // s + 1


class _Builder:
    """Appends layers while tracking the per-sample shape, so each LIF gets its neuron shape."""

    def __init__(self, spec: ModelSpec):
        self.spec = spec
        self.shape: Tuple[int, ...] = spec.input_shape
        self.layers: List[nn.Module] = []

    def lif(self):
        self.layers.append(LIF(self.shape, beta=self.spec.beta, threshold=self.spec.threshold))

    def readout(self):
        """The output layer: LIF (``readout="spikes"``) or a non-spiking LI (``readout="membrane"``)."""
        if self.spec.readout == "membrane":
            self.layers.append(LI(self.shape, beta=self.spec.beta))
        else:
            self.lif()

    def flatten(self):
        if len(self.shape) > 1:
            self.layers.append(nn.Flatten())
            n = 1
            for s in self.shape:
                n *= s
            self.shape = (n,)

    def linear(self, out: int, bias: bool = True):
        self.flatten()
        self.layers.append(nn.Linear(self.shape[0], out, bias=bias))
        self.shape = (out,)

    def conv(self, out: int, k: int = 3, stride: int = 1, pad: int = 1, bn: bool = False):
        c, h, w = self._chw()
        self.layers.append(nn.Conv2d(c, out, k, stride, pad, bias=not bn))
        self.shape = (out, _conv_out(h, k, stride, pad), _conv_out(w, k, stride, pad))
        if bn:
            self.layers.append(nn.BatchNorm2d(out, eps=BN_EPS))

    def avgpool(self, k: int = 2):
        c, h, w = self._chw()
        if h < k or w < k:
            raise ValueError(f"input {self.spec.input_shape} is too small for this architecture")
        self.layers.append(nn.AvgPool2d(k))
        self.shape = (c, h // k, w // k)

    def _chw(self) -> Tuple[int, int, int]:
        if len(self.shape) != 3:
            raise ValueError(f"model {self.spec.name!r} needs image input (C, H, W), got {self.spec.input_shape}")
        return self.shape  # type: ignore[return-value]

    def build(self) -> SpikingNet:
        return SpikingNet(self.layers, self.spec)


def _w(spec: ModelSpec, n: int) -> int:
    return max(1, int(round(n * spec.width)))


def _mlp(spec: ModelSpec, hidden: int = 1) -> SpikingNet:
    b = _Builder(spec)
    for _ in range(hidden):
        b.linear(_w(spec, 800))
        b.lif()
    b.linear(spec.num_classes)
    b.readout()
    return b.build()


def _mlp2(spec: ModelSpec) -> SpikingNet:
    return _mlp(spec, hidden=2)


def _convnet(spec: ModelSpec) -> SpikingNet:
    b = _Builder(spec)
    b.conv(_w(spec, 16))
    b.lif()
    b.avgpool(2)
    b.conv(_w(spec, 32))
    b.lif()
    b.avgpool(2)
    b.linear(spec.num_classes)
    b.readout()
    return b.build()


def _vggsnn(spec: ModelSpec) -> SpikingNet:
    b = _Builder(spec)
    for item in (64, 128, "P", 256, 256, "P", 512, 512, "P", 512, 512, "P"):
        if item == "P":
            b.avgpool(2)
        else:
            b.conv(_w(spec, item), bn=True)
            b.lif()
    b.linear(spec.num_classes)
    b.readout()
    return b.build()


def _resnet19(spec: ModelSpec) -> SpikingNet:
    b = _Builder(spec)
    b.conv(_w(spec, 128), bn=True)
    b.lif()
    ch = _w(spec, 128)
    for out, n, stride in ((_w(spec, 128), 3, 1), (_w(spec, 256), 3, 2), (_w(spec, 512), 2, 2)):
        for i in range(n):
            _, h, w = b._chw()
            block = BasicBlock(ch, out, stride if i == 0 else 1, (h, w), spec.beta, spec.threshold)
            b.layers.append(block)
            b.shape = (out, *block.out_hw)
            ch = out
    _, h, w = b._chw()
    b.layers.append(nn.AdaptiveAvgPool2d(1))
    b.shape = (ch, 1, 1)
    b.linear(_w(spec, 256))
    b.lif()
    b.linear(spec.num_classes)
    b.readout()
    return b.build()


MODELS: Dict[str, Callable[[ModelSpec], SpikingNet]] = {
    "mlp": _mlp,
    "mlp2": _mlp2,
    "convnet": _convnet,
    "vggsnn": _vggsnn,
    "resnet19": _resnet19,
}


FACTORY_RE = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*$")


def is_factory(name: str) -> bool:
    """True for a user model named ``module.path:factory`` (a function returning the ``nn.Module``)."""
    return bool(FACTORY_RE.match(str(name)))


def factory_module_file(name: str, folder: str | os.PathLike) -> Optional[Path]:
    """The file of ``name``'s module inside ``folder`` (``a/b.py`` or ``a/b/__init__.py`` for ``a.b``), or None."""
    base = Path(folder).joinpath(*name.split(":")[0].split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def import_factory(name: str, folder: Optional[str | os.PathLike] = None) -> Callable[[], nn.Module]:
    """The factory function of a user model ``module.path:factory``.

    With ``folder`` (a recorded run: :attr:`ModelSpec.factory_dir`) the module is loaded from its file in that
    folder only, never from an installed package: a checkpoint can name user code next to the run's
    source, not any function of the Python installation. Without it (``esl train --model``, typed by the
    user) the current directory is searched first, then the installed packages, as ``python -m`` does.
    ValueError when it cannot be found.
    """
    if not is_factory(name):
        raise ValueError(f"{name!r} is not of the form module.path:factory")
    module_name, func = name.split(":")
    if folder is not None:
        path = factory_module_file(name, folder)
        if path is None:
            raise ValueError(f"the user model {name} was recorded from {folder}, where {module_name} is not found")
        spec = importlib.util.spec_from_file_location(f"esl_user_model_{module_name.replace('.', '_')}", path)
        module = importlib.util.module_from_spec(spec)
        try:
            spec.loader.exec_module(module)
        except Exception as e:
            raise ValueError(f"importing {path} failed: {type(e).__name__}: {e}") from None
    else:
        cwd = os.getcwd()
        added = cwd not in sys.path
        if added:
            sys.path.insert(0, cwd)
        try:
            module = importlib.import_module(module_name)
        except Exception as e:
            raise ValueError(f"cannot import {module_name} for --model {name}: {type(e).__name__}: {e}") from None
        finally:
            if added:
                sys.path.remove(cwd)
    factory = getattr(module, func, None)
    if not callable(factory):
        raise ValueError(f"{module_name} has no function {func!r}")
    return factory


def factory_dir_of(name: str) -> Optional[str]:
    """The folder from which ``module.path`` of ``name`` imports (recorded with the run), or None."""
    module = sys.modules.get(name.split(":")[0])
    file = getattr(module, "__file__", None)
    if file is None:
        return None
    path = Path(file).resolve()
    depth = name.split(":")[0].count(".") + (1 if path.name == "__init__.py" else 0)
    return str(path.parents[depth])


def build_model(spec: ModelSpec) -> nn.Module:
    """Build the network named by ``spec`` with freshly initialised weights: a :class:`SpikingNet`, or for a
    user model (``module.path:factory``) whatever its factory returns (an ``nn.Module``)."""
    if is_factory(spec.name):
        factory = import_factory(spec.name, spec.factory_dir)
        try:
            model = factory()
        except Exception as e:
            raise ValueError(f"{spec.name}() failed: {type(e).__name__}: {e}") from None
        if not isinstance(model, nn.Module):
            raise ValueError(f"{spec.name}() returned {type(model).__name__}, not a torch nn.Module")
        return model
    return MODELS[spec.name](spec)


def synapse_layers(model: nn.Module) -> List[Tuple[str, nn.Module]]:
    """All Linear and Conv2d modules, in forward order, with their qualified names."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
