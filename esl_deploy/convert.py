"""A stock snnTorch network as a :class:`~esl_deploy.models.SpikingNet`: the form every exporter,
simulator and cost model of ESL Deploy reads.

:func:`from_snntorch` accepts an ``nn.Sequential`` or a plain ``nn.Module`` whose forward calls its layers
one after another, built from ``nn.Linear``, ``nn.Conv2d``, ``nn.AvgPool2d``, ``nn.Flatten``,
``nn.BatchNorm1d``/``nn.BatchNorm2d``, ``nn.Dropout``/``nn.Identity`` and ``snn.Leaky`` neurons
(``init_hidden`` on or off, scalar or per-neuron ``beta`` and ``threshold``, ``learn_beta`` /
``learn_threshold``, every ``reset_mechanism`` and ``reset_delay``). It finds the layers by running the
network once on ``sample`` with a forward hook on every leaf module (the call order of one time step,
as nirtorch and snnTorch's ``export_to_nir`` trace networks), and checks that each layer's input is the
previous layer's output, or that output reshaped into ``(batch, features)`` (an ``x.view(B, -1)`` in the
forward becomes ``nn.Flatten``). Anything else is refused with one line naming the module:
other snnTorch neurons (``Synaptic``, ``RLeaky``, ...), ``MaxPool2d``, and forwards that compute a
layer's input with code of their own (residual adds, custom ops).

The result computes what the snnTorch network computes, operation for operation: ``LIF`` runs
``snn.Leaky`` itself for snnTorch's default subtract reset (see :mod:`esl_deploy.neurons`), weights are
copied, ``Dropout``/``Identity`` are dropped (they are the identity in evaluation). ``BatchNorm1d``
after a ``Linear`` layer is folded into it with its running statistics (``W' = s W``,
``b' = s (b - mu) + beta``, ``s = gamma / sqrt(var + eps)``), the deployable form of an evaluation-mode
network; ``BatchNorm2d`` stays (the exporters fold it into the convolution before it).

:func:`run_snntorch` runs the snnTorch network itself over a ``(T, B, ...)`` input and returns the spikes
of every ``snn.Leaky`` layer: the reference that exported networks are compared with.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import snntorch as snn
from snntorch import utils as snn_utils
import torch
from torch import nn

from .errors import EslError
from .models import ModelSpec, SpikingNet
from .neurons import LI, LIF, RESET_MECHANISMS

LINEAR_LAYERS = (nn.Linear, nn.Conv2d, nn.AvgPool2d, nn.Flatten, nn.BatchNorm1d, nn.BatchNorm2d)
DROPPED = (nn.Dropout, nn.Identity)
SUPPORTED_NAMES = ("Linear, Conv2d, AvgPool2d, Flatten, BatchNorm1d/2d, Dropout, Identity and snntorch.Leaky")


@dataclass(frozen=True)
class Call:
    """One leaf module call of the traced time step: its qualified name, the module, input and output."""

    name: str
    module: nn.Module
    inputs: Tuple[torch.Tensor, ...]
    output: torch.Tensor


def is_snntorch_neuron(module: nn.Module) -> bool:
    return isinstance(module, snn.SpikingNeuron)


def _label(name: str, module: nn.Module) -> str:
    kind = type(module).__name__
    where = f"{type(module).__module__.split('.')[0]}.{kind}" if type(module).__module__.startswith("snntorch") else kind
    return f"module {name!r} ({where})"


def _first_tensor(value) -> Optional[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, (tuple, list)) and value and isinstance(value[0], torch.Tensor):
        return value[0]
    return None


def _same_storage(a: torch.Tensor, b: torch.Tensor) -> bool:
    try:
        return a.untyped_storage().data_ptr() == b.untyped_storage().data_ptr()
    except RuntimeError:
        return False


def copy_network(module: nn.Module) -> nn.Module:
    """A deep copy of ``module``. snnTorch neurons keep their last state (``mem``, ...) as tensors still attached
    to the last step's autograd graph, which ``copy.deepcopy`` refuses; the copy holds them detached (the
    original is left as it was)."""
    stash = []
    for m in module.modules():
        for key, value in list(vars(m).items()) + list(m._buffers.items()):
            if isinstance(value, torch.Tensor) and value.grad_fn is not None:
                stash.append((m, key, value))
    try:
        for m, key, value in stash:
            if key in m._buffers:
                m._buffers[key] = value.detach()
            else:
                setattr(m, key, value.detach())
        return copy.deepcopy(module)
    finally:
        for m, key, value in stash:
            if key in m._buffers:
                m._buffers[key] = value
            else:
                setattr(m, key, value)


def trace(module: nn.Module, sample: torch.Tensor) -> List[Call]:
    """The leaf module calls of the first time step of ``module(sample)``, in order (see the module docstring).

    Runs a deep copy (hidden states of ``init_hidden`` neurons are not disturbed) in eval mode without
    gradients; recording stops at the first module called a second time (the next time step)."""
    if not isinstance(sample, torch.Tensor):
        raise EslError(f"sample must be a tensor of inputs, got {type(sample).__name__}")
    net = copy_network(module).eval()
    calls: List[Call] = []
    seen: set = set()
    state = {"done": False}
    handles = []

    def hook_for(name):
        def hook(mod, inputs, output):
            if state["done"]:
                return
            if id(mod) in seen:
                state["done"] = True
                return
            seen.add(id(mod))
            out = _first_tensor(output)
            if out is None:
                raise EslError(f"{_label(name, mod)} returns {type(output).__name__}, not a tensor: cannot trace it")
            calls.append(Call(name, mod, tuple(i for i in inputs if isinstance(i, torch.Tensor)), out))
        return hook

    for name, m in net.named_modules():
        if name and (not list(m.children()) or is_snntorch_neuron(m)):
            handles.append(m.register_forward_hook(hook_for(name)))
    try:
        with torch.no_grad():
            if any(is_snntorch_neuron(m) and m.init_hidden for m in net.modules()):
                snn_utils.reset(net)
            net(sample)
    except EslError:
        raise
    except Exception as e:  # the user's forward failed on this sample
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise EslError(f"running {type(module).__name__} on the sample of shape {tuple(sample.shape)} failed: "
                       f"{reason[:300]}") from None
    finally:
        for h in handles:
            h.remove()
    if not calls:
        raise EslError(f"{type(module).__name__} called no layer on the sample: nothing to convert")
    return calls


def _beta_threshold(name: str, neuron: nn.Module, shape: Tuple[int, ...]) -> Tuple[torch.Tensor, torch.Tensor]:
    """Per-neuron beta (clamped to [0, 1], as snnTorch's forward does) and threshold of ``shape``."""
    out = []
    for what in ("beta", "threshold"):
        value = torch.as_tensor(getattr(neuron, what)).detach().double().cpu()
        try:
            value = torch.broadcast_to(value, shape).clone()
        except RuntimeError:
            raise EslError(f"{_label(name, neuron)}: {what} of shape {tuple(value.shape)} does not fit its "
                           f"{shape} neurons") from None
        out.append(value)
    beta, threshold = out
    if not bool(torch.isfinite(beta).all() & torch.isfinite(threshold).all()):
        raise EslError(f"{_label(name, neuron)}: beta or threshold holds NaN or infinite values")
    if not bool((threshold > 0).all()):
        raise EslError(f"{_label(name, neuron)}: threshold must be positive")
    return beta.clamp(0, 1), threshold


def leaky_to_lif(name: str, neuron: nn.Module, shape: Tuple[int, ...]) -> LIF:
    """An ``snn.Leaky`` as a :class:`LIF` of neuron ``shape`` with the same parameters and reset."""
    if type(neuron) is not snn.Leaky:
        raise EslError(f"{_label(name, neuron)}: not supported (supported: {SUPPORTED_NAMES}; other snnTorch "
                       "neurons have no deployable form here yet)")
    if getattr(neuron, "inhibition", False):
        raise EslError(f"{_label(name, neuron)}: inhibition=True is not supported (no NIR or Lava equivalent)")
    if getattr(neuron, "state_quant", False):
        raise EslError(f"{_label(name, neuron)}: state_quant is not supported (quantise with esl train "
                       "--weight-bits and the Lava fixed-point export instead)")
    gsf = torch.as_tensor(getattr(neuron, "graded_spikes_factor", 1.0))
    if not bool((gsf == 1).all()):
        raise EslError(f"{_label(name, neuron)}: graded_spikes_factor != 1 is not supported (spikes must be 0 or 1)")
    mechanism = getattr(neuron, "reset_mechanism", "subtract")
    if mechanism not in RESET_MECHANISMS:
        raise EslError(f"{_label(name, neuron)}: unknown reset_mechanism {mechanism!r}")
    beta, threshold = _beta_threshold(name, neuron, shape)
    lif = LIF(shape, beta=float(beta.flatten()[0]), threshold=float(threshold.flatten()[0]),
              reset_mechanism=mechanism, reset_delay=bool(getattr(neuron, "reset_delay", False)))
    lif.leaky.spike_grad = neuron.spike_grad  # the user's surrogate (the backward pass only)
    with torch.no_grad():
        lif.leaky.beta.copy_(beta.float())
        lif.leaky.threshold.copy_(threshold.float())
    return lif


def _fold_bn1d(name: str, linear: nn.Linear, bn: nn.BatchNorm1d) -> nn.Linear:
    """``bn(linear(x))`` as one Linear layer (see the module docstring), computed in float64."""
    if bn.running_mean is None or bn.running_var is None:
        raise EslError(f"{_label(name, bn)}: BatchNorm1d without running statistics cannot be deployed")
    if bn.num_features != linear.out_features:
        raise EslError(f"{_label(name, bn)}: {bn.num_features} features after a Linear layer of "
                       f"{linear.out_features} outputs")
    w = linear.weight.detach().double()
    b = linear.bias.detach().double() if linear.bias is not None else torch.zeros(w.shape[0], dtype=torch.float64)
    gamma = bn.weight.detach().double() if bn.weight is not None else torch.ones_like(b)
    shift = bn.bias.detach().double() if bn.bias is not None else torch.zeros_like(b)
    s = gamma / torch.sqrt(bn.running_var.detach().double() + bn.eps)
    out = nn.Linear(linear.in_features, linear.out_features, bias=True)
    with torch.no_grad():
        out.weight.copy_((w * s[:, None]).float())
        out.bias.copy_(((b - bn.running_mean.detach().double()) * s + shift).float())
    return out


def _check_flow(calls: List[Call], sample: torch.Tensor) -> List[Optional[nn.Module]]:
    """For each call, None when its input is the previous output (or the sample), ``nn.Flatten()`` when it is
    that tensor reshaped to ``(batch, features)``; EslError naming the module otherwise."""
    out: List[Optional[nn.Module]] = []
    prev, prev_label = sample, "the network's input"
    for call in calls:
        x = call.inputs[0] if call.inputs else None
        label = _label(call.name, call.module)
        if x is None:
            raise EslError(f"{label} was called without a tensor input: cannot trace it")
        if x is prev or (x.shape == prev.shape and _same_storage(x, prev) and torch.equal(x, prev)):
            out.append(None)
        elif prev is sample and _same_storage(x, prev) and x.dim() >= 1 and prev.dim() > x.dim() \
                and tuple(x.shape) == tuple(prev.shape[1:]) and torch.equal(x, prev[0]):
            out.append(None)  # a multi-step forward takes its time steps x[t] from a (T, B, ...) input
        elif x.dim() == 2 and x.numel() == prev.numel() and x.shape[0] == prev.shape[0] and _same_storage(x, prev):
            out.append(nn.Flatten())
        elif prev is sample and x.dim() == 2 and prev.dim() > 2 and x.numel() * prev.shape[0] == prev.numel() \
                and _same_storage(x, prev) and torch.equal(x.reshape(-1), prev[0].reshape(-1)):
            out.append(nn.Flatten())  # x[t].view(B, -1) of a multi-step input
        else:
            raise EslError(f"cannot trace {label}: its input is not the output of {prev_label} but is computed by "
                           "code in forward() (a residual add, a custom op, a module called out of order); "
                           f"build the network from {SUPPORTED_NAMES} called one after another")
        prev, prev_label = call.output, label
    return out


def from_snntorch(module: nn.Module, sample: torch.Tensor) -> SpikingNet:
    """The deployable :class:`SpikingNet` of a stock snnTorch network (see the module docstring).

    ``sample``: an input as the network's forward takes it: one time step ``(B, *input_shape)`` for a
    network of ``init_hidden`` neurons (called once per step), or the whole ``(T, B, *input_shape)`` for a
    forward that loops over time itself. A :class:`SpikingNet` is returned as it is.
    """
    if isinstance(module, SpikingNet):
        return module
    if not isinstance(module, nn.Module):
        raise EslError(f"expected a torch nn.Module, got {type(module).__name__}")
    for name, m in module.named_modules():
        if is_snntorch_neuron(m) and type(m) is not snn.Leaky:
            raise EslError(f"{_label(name, m)}: not supported (supported: {SUPPORTED_NAMES})")
    calls = trace(module, sample)
    flows = _check_flow(calls, sample)
    first_in = calls[0].inputs[0]
    input_shape = tuple(int(s) for s in first_in.shape[1:])
    if flows[0] is not None:  # the forward flattens its input first: keep the sample's own shape
        step = sample if stepwise(module) or sample.dim() < 3 else sample[0]
        input_shape = tuple(int(s) for s in step.shape[1:])
    layers: List[nn.Module] = []
    for call, flatten in zip(calls, flows):
        m, label = call.module, _label(call.name, call.module)
        if flatten is not None and not isinstance(m, nn.Flatten):
            layers.append(flatten)
        shape = tuple(int(s) for s in call.output.shape[1:])
        if is_snntorch_neuron(m):
            layers.append(leaky_to_lif(call.name, m, shape))
        elif isinstance(m, DROPPED):
            continue
        elif isinstance(m, nn.BatchNorm1d):
            if not layers or not isinstance(layers[-1], nn.Linear):
                raise EslError(f"{label}: BatchNorm1d is supported only right after a Linear layer")
            layers[-1] = _fold_bn1d(call.name, layers[-1], m)
        elif isinstance(m, nn.Conv2d) and m.padding_mode != "zeros":
            raise EslError(f"{label}: padding_mode={m.padding_mode!r} is not supported (zeros only)")
        elif isinstance(m, LINEAR_LAYERS):
            layers.append(copy.deepcopy(m))
        elif isinstance(m, nn.MaxPool2d):
            raise EslError(f"{label}: not supported: max pooling of spikes has no NIR or Lava equivalent here; "
                           "use nn.AvgPool2d")
        else:
            raise EslError(f"{label}: not supported (supported: {SUPPORTED_NAMES})")
    neurons = [l for l in layers if isinstance(l, (LIF, LI))]
    if not neurons or not isinstance(layers[-1], (LIF, LI)):
        raise EslError(f"{type(module).__name__} must end in an snntorch.Leaky layer (its output spikes)")
    out_shape = neurons[-1].neuron_shape
    if len(out_shape) != 1:
        raise EslError(f"{type(module).__name__} ends in neurons of shape {out_shape}; a flat (classes,) layer "
                       "is needed")
    first = neurons[0]
    name = "convnet" if any(isinstance(l, nn.Conv2d) for l in layers) else "mlp"
    try:
        spec = ModelSpec(name, input_shape, out_shape[0], beta=float(first.beta.double().mean()),
                         threshold=float(first.threshold.double().mean()))
    except ValueError as e:
        raise EslError(f"cannot describe {type(module).__name__} as a network: {e}") from None
    net = SpikingNet(layers, spec).eval()
    net.meta = {"method": "unknown", "dataset": "unknown", "source": "snntorch", "module": type(module).__name__}
    return net


def stepwise(module: nn.Module) -> bool:
    """True when every snnTorch neuron keeps its own state (``init_hidden=True``): the network is called
    once per time step, as snnTorch's tutorials do (``utils.reset(net)``, then ``net(x[t])``)."""
    neurons = [m for m in module.modules() if is_snntorch_neuron(m)]
    return bool(neurons) and all(m.init_hidden for m in neurons)


def forward_steps(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The output spikes ``(T, B, ...)`` of a stock snnTorch network on ``x`` ``(T, B, ...)``, with gradients.

    A stepwise network (:func:`stepwise`) is reset (``snntorch.utils.reset``) and called on ``x[t]`` for each
    step, as snnTorch's tutorials train it; any other is called once on the whole ``x`` and must loop over
    its first dimension itself. A tuple output (``output=True``: spikes and membrane) gives its spikes."""
    if stepwise(module):
        snn_utils.reset(module)
        return torch.stack([_first_tensor(module(x[t])) for t in range(x.shape[0])])
    out = _first_tensor(module(x))
    if out is None or out.shape[0] != x.shape[0]:
        raise EslError(f"{type(module).__name__}'s forward must return spikes (T, B, ...) for an input (T, B, ...), "
                       f"got {None if out is None else tuple(out.shape)}")
    return out


def run_snntorch(module: nn.Module, x: torch.Tensor,
                 dtype: Optional[torch.dtype] = None) -> Tuple[List[torch.Tensor], torch.Tensor]:
    """Run the snnTorch network ``module`` itself on ``x`` (T, B, ...): the spikes (T, B, ...) of each of its
    ``snn.Leaky`` layers in call order, and the output spikes (those of the last one).

    It runs as :func:`forward_steps` does, in the caller's mode, without gradients. ``dtype``: every layer's
    input is cast to it (snnTorch's surrogate spike functions return float32 0./1. whatever the membrane's
    dtype, so a network made ``.double()`` needs this to run in float64; the cast of a spike is exact).
    """
    if isinstance(module, SpikingNet):
        raise EslError("run_snntorch runs a stock snnTorch network; a SpikingNet runs with its own forward")
    record: Dict[int, List[torch.Tensor]] = {}
    order: List[int] = []
    handles = []
    if dtype is not None:
        def cast(mod, inputs):
            return tuple(i.to(dtype) if isinstance(i, torch.Tensor) and i.is_floating_point() else i for i in inputs)
        for m in module.modules():
            if not list(m.children()) or is_snntorch_neuron(m):
                handles.append(m.register_forward_pre_hook(cast))
    for m in module.modules():
        if is_snntorch_neuron(m):
            def hook(mod, inputs, output, key=id(m)):
                if key not in record:
                    record[key] = []
                    order.append(key)
                record[key].append(_first_tensor(output).detach().clone())
            handles.append(m.register_forward_hook(hook))
    try:
        with torch.no_grad():
            forward_steps(module, x)
    finally:
        for h in handles:
            h.remove()
    if not order:
        raise EslError(f"{type(module).__name__} has no snntorch neuron that spiked on this input")
    layers = [torch.stack(record[k]) for k in order]
    return layers, layers[-1]


__all__ = ["Call", "copy_network", "forward_steps", "from_snntorch", "is_snntorch_neuron", "leaky_to_lif", "run_snntorch", "stepwise", "trace"]
