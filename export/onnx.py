"""SpikingNet -> ONNX, unrolled over a fixed number of time steps with explicit membrane state.

ONNX has no spiking neuron and no state across calls, so the exported graph takes the whole input
window ``(T, B, *input_shape)`` (``B`` is a dynamic axis, ``T`` is fixed at export) and returns the
output spikes ``(T, B, num_classes)``. Stateless layers (Linear, Conv2d, pools, BatchNorm in eval
mode, Flatten) run once on the time steps folded into the batch, exactly as ``SpikingNet`` runs them;
each LIF layer is unrolled into T copies of the update (``esl_deploy.neurons``), with ``U[0] = 0``::

    U[t] = beta * U[t-1] + I[t]
    S[t] = (U[t] > theta)                 # float 0/1
    U[t] = U[t] * (1 - S[t])              # reset to zero

These are the same float32 operations snnTorch's ``Leaky(reset_mechanism="zero", reset_delay=False)``
performs (its ``mem - theta > 0`` equals ``mem > theta`` for finite floats, and its ``mem - S * mem``
equals ``mem * (1 - S)``), so the wrapper reproduces the model bit for bit in torch. A LIF layer with
another ``reset_mechanism``/``reset_delay`` (attributes of ``esl_deploy.neurons.LIF``; absent means
``"zero"``/False) is unrolled with snnTorch's own operations, in its order, from the reset signal
``r[t] = H(U[t-1] - theta)`` of the stored membrane (:func:`lif_unrolled`)::

    P[t] = (beta U[t-1] + I[t]) - r[t] theta     subtract
    P[t] = beta ((1 - r[t]) U[t-1]) + I[t]       zero
    P[t] = beta U[t-1] + I[t]                    none
    S[t] = H(P[t] - theta)
    U[t] = P[t]                                  reset_delay (and none)
    U[t] = P[t] - (S[t] - r[t]) theta            subtract, no delay
    U[t] = P[t] - (S[t] - r[t]) P[t]             zero, no delay

A membrane readout (``esl_deploy.neurons.LI``, ``readout="membrane"``) is unrolled the same way without the spike,
``U[t] = beta * U[t-1] + I[t]``, and the graph's output, named ``membrane`` instead of ``spikes``, is U
(T, B, num_classes). Residual
``BasicBlock``s (resnet19) are supported: ``S = LIF2(BN2(conv2(LIF1(BN1(conv1(x))))) + shortcut(x))``.
The ONNX model's metadata_props carry ``T``, ``producer``, ``esl_deploy_version`` and ``esl_meta``
(the training metadata as JSON).
"""
from __future__ import annotations

import copy
import json
import os
import warnings
from pathlib import Path
from typing import Optional, Union

import numpy as np
import onnx
import torch
from torch import nn

import esl_deploy
from esl_deploy.errors import EslError
from esl_deploy.models import BasicBlock, MultiStep, SpikingNet
from esl_deploy.neurons import LI, LIF

from esl_deploy.atomic import atomic_write
from esl_deploy.resources import check_memory

OPSET = 17


RESET_MECHANISMS = ("zero", "subtract", "none")  # snnTorch's names


def lif_unrolled(current: torch.Tensor, beta: torch.Tensor, threshold: torch.Tensor, reset_mechanism: str = "zero",
                 reset_delay: bool = False) -> torch.Tensor:
    """Spikes (T, B, *shape) of LIF neurons driven by ``current`` (T, B, *shape); see the module docstring.

    ``reset_mechanism``/``reset_delay`` are snnTorch's; ``beta`` is used as given (snnTorch clamps it to
    [0, 1], :class:`LIFStep` does so once)."""
    if reset_mechanism not in RESET_MECHANISMS:
        raise EslError(f"unknown reset_mechanism {reset_mechanism!r}; choose one of: {', '.join(RESET_MECHANISMS)}")
    u = torch.zeros_like(current[0])
    spikes = []
    if reset_mechanism == "zero" and not reset_delay:  # r = 0 always: the fused update, as before
        for t in range(current.shape[0]):
            u = beta * u + current[t]
            s = (u > threshold).to(current.dtype)
            u = u * (1.0 - s)
            spikes.append(s)
        return torch.stack(spikes)
    for t in range(current.shape[0]):
        r = (u - threshold > 0).to(current.dtype)
        if reset_mechanism == "zero":
            p = beta * ((1 - r) * u) + current[t]
        else:
            p = beta * u + current[t]
            if reset_mechanism == "subtract":
                p = p - r * threshold
        s = (p - threshold > 0).to(current.dtype)
        if reset_delay or reset_mechanism == "none":
            u = p
        elif reset_mechanism == "subtract":
            u = p - (s - r) * threshold
        else:
            u = p - (s - r) * p
        spikes.append(s)
    return torch.stack(spikes)


class LIFStep(nn.Module):
    """A LIF layer as plain tensor ops; ``beta`` and ``threshold`` are per-neuron buffers, the reset is
    the layer's ``reset_mechanism``/``reset_delay`` (``"zero"``/False where the layer has none)."""

    def __init__(self, lif: LIF):
        super().__init__()
        shape = tuple(lif.neuron_shape)
        self.reset_mechanism = str(getattr(lif, "reset_mechanism", "zero"))
        self.reset_delay = bool(getattr(lif, "reset_delay", False))
        if self.reset_mechanism not in RESET_MECHANISMS:
            raise EslError(f"LIF layer: unknown reset_mechanism {self.reset_mechanism!r}; ONNX export knows "
                           f"{', '.join(RESET_MECHANISMS)}")
        beta = lif.beta.detach().clone().float()
        if (self.reset_mechanism, self.reset_delay) != ("zero", False):
            beta = beta.clamp(0, 1)  # as snnTorch's Leaky does every step
        self.register_buffer("beta", beta.expand(shape).contiguous())
        self.register_buffer("threshold", lif.threshold.detach().clone().float().expand(shape).contiguous())

    def forward(self, current: torch.Tensor) -> torch.Tensor:
        return lif_unrolled(current, self.beta, self.threshold, self.reset_mechanism, self.reset_delay)


class LIStep(nn.Module):
    """A non-spiking LI readout as plain tensor ops: ``U[t] = beta * U[t-1] + I[t]``, output U (T, B, *shape)."""

    def __init__(self, li: LI):
        super().__init__()
        shape = tuple(li.neuron_shape)
        self.register_buffer("beta", li.beta.detach().clone().float().expand(shape).contiguous())

    def forward(self, current: torch.Tensor) -> torch.Tensor:
        u = torch.zeros_like(current[0])
        out = []
        for t in range(current.shape[0]):
            u = self.beta * u + current[t]
            out.append(u)
        return torch.stack(out)


class Folded(nn.Module):
    """A stateless layer applied to (T, B, ...) with time folded into the batch."""

    def __init__(self, layer: nn.Module):
        super().__init__()
        self.layer = layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.layer(x.flatten(0, 1))
        return y.reshape(x.shape[0], x.shape[1], *y.shape[1:])


class Residual(nn.Module):
    """A BasicBlock: ``LIF2(BN2(conv2(LIF1(BN1(conv1(x))))) + shortcut(x))``."""

    def __init__(self, block: BasicBlock):
        super().__init__()
        self.branch1 = Folded(copy.deepcopy(nn.Sequential(block.conv1, block.bn1)))
        self.lif1 = LIFStep(block.lif1)
        self.branch2 = Folded(copy.deepcopy(nn.Sequential(block.conv2, block.bn2)))
        self.shortcut = Folded(copy.deepcopy(block.shortcut))
        self.lif2 = LIFStep(block.lif2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.branch2(self.lif1(self.branch1(x)))
        return self.lif2(y + self.shortcut(x))


class UnrolledNet(nn.Module):
    """``forward(x)``: input (T, B, *input_shape) -> output spikes (T, B, num_classes).

    Holds copies of the model's layers and parameters (eval mode), so exporting never changes the model.
    """

    def __init__(self, model: SpikingNet):
        super().__init__()
        steps = []
        for i, layer in enumerate(model.layers):
            if isinstance(layer, LIF):
                steps.append(LIFStep(layer))
            elif isinstance(layer, LI):
                steps.append(LIStep(layer))
            elif isinstance(layer, BasicBlock):
                steps.append(Residual(layer))
            elif isinstance(layer, MultiStep):
                raise EslError(f"layer {i}: ONNX export not supported: {type(layer).__name__}")
            else:
                steps.append(Folded(copy.deepcopy(layer)))
        self.steps = nn.ModuleList(steps)
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for step in self.steps:
            x = step(x)
        return x


def to_onnx(model: SpikingNet, path: Union[str, os.PathLike], T: int, batch: int = 1,
            meta: Optional[dict] = None) -> Path:
    """Export ``model`` unrolled over ``T`` steps to ONNX (opset 17, dynamic batch axis) atomically.

    ``batch`` is the batch size of the tracing input only. The file passes ``onnx.checker`` before it
    replaces ``path``. ``meta`` defaults to ``model.meta``; it is stored as JSON in metadata_props.
    """
    if isinstance(T, bool) or not isinstance(T, (int, np.integer)) or T < 1:
        raise EslError(f"T (time steps) must be a positive integer, got {T!r}")
    if isinstance(batch, bool) or not isinstance(batch, (int, np.integer)) or batch < 1:
        raise EslError(f"batch must be a positive integer, got {batch!r}")
    if meta is None:
        meta = getattr(model, "meta", None) or {}
    wrapper = UnrolledNet(model).cpu()
    # the traced graph holds every step's nodes: ~40 KB per layer and step (measured: an MLP of 4 steps
    # took 15.8 GB at T = 100000), plus the weights a few times over
    params = sum(p.numel() for p in model.parameters())
    check_memory(int(T) * len(wrapper.steps) * 40_000 + 16 * params, f"ONNX export unrolled over T={T} steps",
                 hint="export fewer steps (-T)")
    dummy = torch.zeros(int(T), int(batch), *model.spec.input_shape)
    out_name = "membrane" if getattr(model.spec, "readout", "spikes") == "membrane" else "spikes"

    def write(tmp: Path) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # TracerWarnings about the unrolled Python loop over T
            torch.onnx.export(wrapper, (dummy,), str(tmp), opset_version=OPSET, input_names=["input"],
                              output_names=[out_name], dynamic_axes={"input": {1: "batch"}, out_name: {1: "batch"}})
        proto = onnx.load(str(tmp))
        props = {"T": str(int(T)), "producer": "esl_deploy", "esl_deploy_version": esl_deploy.__version__,
                 "esl_meta": json.dumps(meta, default=str, sort_keys=True)}
        onnx.helper.set_model_props(proto, props)
        onnx.checker.check_model(proto, full_check=True)
        onnx.save(proto, str(tmp))

    return atomic_write(path, write)


def run_onnx(path: Union[str, os.PathLike], x) -> np.ndarray:
    """Run an exported model with onnxruntime: ``x`` (T, B, *input_shape) -> spikes (or the membrane of a
    membrane-readout model) (T, B, num_classes)."""
    import onnxruntime as ort

    path = Path(path)
    if not path.is_file():
        raise EslError(f"no such ONNX file: {path}")
    try:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own exception types for unreadable models
        raise EslError(f"{path}: not a valid ONNX model: {str(e).splitlines()[0]}") from e
    x = np.ascontiguousarray(x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else x, dtype=np.float32)
    expected = session.get_inputs()[0].shape
    if x.ndim != len(expected) or any(isinstance(e, int) and e != s for e, s in zip(expected, x.shape)):
        raise EslError(f"{path}: input of shape {tuple(x.shape)} does not fit the model's {tuple(expected)} "
                       "(T is fixed at export)")
    return session.run(None, {session.get_inputs()[0].name: x})[0]
