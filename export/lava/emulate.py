"""Loihi 2 fixed point in torch, batched: :func:`export.lava.fixed.emulate_fixed` at training speed.

:func:`emulate` runs a quantised :class:`~export.lava.net.LavaNet` with exactly the integer arithmetic of
:func:`~export.lava.fixed.emulate_fixed` (and so of Lava's bit-accurate models, ``Loihi2SimCfg(
select_tag="fixed_pt")``), per layer ``l`` and step ``t``::

    a[t] = sum_parts W_p x_p[t - shift_p]               (x_p: the input's integers, or spikes; 0 before step 0)
    a[t] = wrap24(a[t])                                 (a Conv synapse only: Lava's Conv sends 24 bits)
    a[t] = a[t] + current_bias                          (CubaLIF: a bias into the current)
    u[t] = sign(d) (|d| >> 12) + (a[t] << 6),   d = u[t-1] (4096 - (du + 1))      wraps at 2^23
    v[t], s[t] = fixed_step(v[t-1], u[t], bias_mant << bias_exp, dv, vth << 6, reset)

(:func:`export.lava.leaky.fixed_current`, :func:`export.lava.leaky.fixed_step`, here as the torch functions
:func:`current_t` and :func:`step_t`), but batched over samples, with a ``Conv`` synapse run as one
``torch.nn.functional.conv2d`` over all ``T * B`` frames of a batch instead of an unrolled matrix.

Exactness. The synaptic sums are computed in floating point on integer values: every product and every
partial sum is an integer of magnitude at most ``max_row sum_j |W_ij| max|x_j|`` (the port bound,
:func:`port_bound`; quantisation keeps it near 2^15, :func:`export.lava.fixed.layer_ranges`), and a float
holds every integer below 2^24 (float32) or 2^53 (float64) exactly, so a plain sum is exact in any order.
On the CPU a layer whose bound is below 2^24 sums in float32 (PyTorch's oneDNN convolutions and BLAS
products sum directly: about 10x faster than float64); elsewhere (CUDA, whose cuDNN may pick Winograd or
FFT algorithms that transform their operands, and TF32) in float64, where such transforms err by ~2^-50
relative and the sums, rounded to the nearest integer, are recovered exactly while the bound stays below
:data:`EXACT_BOUND` = 2^31. The bound is checked per layer (:class:`EslError` beyond it). ``u`` and ``v``
are int64 tensors with the same shifts, truncations and saturations as numpy's.

Order. A layer whose parts all read the input, earlier layers, or itself (with ``shift >= 1``) is run
layer by layer: the parts from sources already run are summed for all ``T`` steps at once, and only its own
recurrent part is stepped. A graph with a part from a later layer (a loop through several layers) is
stepped globally, layer after layer within each step, as :func:`~export.lava.fixed.emulate_fixed` does.
Both give the same integers.

Matrix synapses run as dense float64 matrices when small, as sparse CSR ones otherwise; a block with a
:attr:`~export.lava.net.SynapseLayer.convs` hint (a residual block's convolution merged with its shortcut)
runs as a convolution with the kernel read off its rounded matrix plus a sparse correction
``R = W - conv_matrix(K)`` (non-zero only where rounding differed, e.g. at the image border), so the hint
never changes a result.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Callable, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F

from esl_deploy.errors import EslError

from ..nir.graph import conv_output_hw, size
from .fixed import _input_ints, encode_input
from .leaky import DECAY_SHIFT
from .net import ACT_SHIFT, DECAY_UNITY, INPUT, UV_LIMIT, ConvShape, LavaNet, Part, conv_matrix

EXACT_BOUND = 2 ** 31   # largest |partial synaptic sum| the float64 sums are trusted to round back exactly
FLOAT32_EXACT = 2 ** 24  # float32 holds every integer below 2^24 exactly
DENSE_MAX = 2 ** 22     # matrix blocks of at most this many entries run dense (32 MiB in float64)
BATCH_SIZE = 256        # samples per batch by default


# ----------------------------------------------------------------------------------------------------
# The neuron: pure torch functions, the arithmetic of export.lava.leaky
# ----------------------------------------------------------------------------------------------------

def _decay(x: torch.Tensor, factor) -> torch.Tensor:
    """``sign(d) (|d| >> 12)`` with ``d = x * factor``: Lava's decay, truncating towards zero (int64 division
    rounding towards zero is the same integer)."""
    return torch.div(x * factor, 1 << DECAY_SHIFT, rounding_mode="trunc")


def current_t(u: torch.Tensor, a_in: torch.Tensor, du: int, wraps: bool = True) -> torch.Tensor:
    """:func:`export.lava.leaky.fixed_current` on int64 tensors::

        u = sign(u (4096 - (du + 1))) (|u (4096 - (du + 1))| >> 12) + (a_in << 6),   wrapped to 24 bits

    ``wraps=False`` skips the wrap, for a caller that knows ``|u| < 2^23`` (then the wrap changes nothing)."""
    u = a_in << ACT_SHIFT if du + 1 == DECAY_UNITY else _decay(u, DECAY_UNITY - (du + 1)) + (a_in << ACT_SHIFT)
    if not wraps:
        return u
    u = torch.where(u > UV_LIMIT, u - 2 * UV_LIMIT, u)
    return torch.where(u <= -UV_LIMIT, u + 2 * UV_LIMIT, u)


def step_t(v: torch.Tensor, u: torch.Tensor, bias: torch.Tensor, dv: torch.Tensor, vth6: torch.Tensor,
           mechanism: str, delay: bool, v_reset6: Optional[torch.Tensor] = None) -> Tuple[torch.Tensor, torch.Tensor]:
    """:func:`export.lava.leaky.fixed_step` on int64 tensors (its docstring has the formulas): stored ``v``,
    this step's ``u``, ``bias = bias_mant << bias_exp``, 12-bit ``dv``, ``vth6 = vth << 6`` and ``v_reset6``
    (None: 0), each per neuron or one value. Returns (new ``v``, spikes as bool)."""
    lo, hi = -UV_LIMIT + 1, UV_LIMIT - 1
    if mechanism == "zero" and not delay:  # the stored v never exceeds vth6 (0 or a P that did not cross): r = 0
        p = _decay(v, DECAY_UNITY - dv).add_(u).add_(bias).clamp_(lo, hi)
        s = p > vth6
        return p.masked_fill_(s, 0) if v_reset6 is None else torch.where(s, v_reset6, p), s
    r = v > vth6
    if mechanism == "zero":
        v = torch.where(r, torch.zeros_like(v), v)
    p = _decay(v, DECAY_UNITY - dv) + u + bias
    if mechanism == "subtract":
        p = p - r * vth6
    p = torch.clamp(p, lo, hi)
    s = p > vth6
    if delay or mechanism == "none":
        return p, s
    if mechanism == "subtract":
        return torch.clamp(p - (s.long() - r.long()) * vth6, lo, hi), s
    return torch.clamp(p - (s.long() - r.long()) * p, lo, hi), s


# ----------------------------------------------------------------------------------------------------
# The synapse: one linear map per part
# ----------------------------------------------------------------------------------------------------

@dataclass(kw_only=True)
class _Conv:
    """``conv2d`` of (N, C, H, W) frames with an integer kernel (float64), flattened to (N, n_out)."""

    kernel: torch.Tensor
    geometry: ConvShape
    in_shape: Tuple[int, int, int]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        g = self.geometry
        y = F.conv2d(x.to(self.kernel.dtype).reshape((-1,) + self.in_shape), self.kernel, stride=g.stride, padding=g.padding,
                     dilation=g.dilation, groups=g.groups)
        return y.reshape(x.shape[0], -1)


@dataclass(kw_only=True)
class _Matrix:
    """``x @ W.T`` with ``W`` (n_out, n_in) dense, or sparse CSR (computed as ``(W @ x.T).T``)."""

    weight: torch.Tensor

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.weight.dtype)
        if self.weight.layout == torch.sparse_csr:
            return (self.weight @ x.T).T
        return x @ self.weight.T


@dataclass(kw_only=True)
class _Sum:
    """The sum of several maps of the same input (a convolution and its sparse correction)."""

    maps: Tuple[Callable[[torch.Tensor], torch.Tensor], ...]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        out = self.maps[0](x)
        for m in self.maps[1:]:
            out = out + m(x)
        return out


def _matrix_map(w: sp.csr_matrix, device: torch.device, dtype: torch.dtype) -> _Matrix:
    """A dense map for a small block, a sparse CSR one for a large one."""
    w = sp.csr_matrix(w, dtype=np.float64)
    if w.shape[0] * w.shape[1] <= DENSE_MAX:
        return _Matrix(weight=torch.from_numpy(w.toarray()).to(device, dtype))
    w.sort_indices()
    with warnings.catch_warnings():  # "sparse CSR tensor support is in beta state": we use only @
        warnings.simplefilter("ignore", UserWarning)
        t = torch.sparse_csr_tensor(torch.from_numpy(w.indptr.astype(np.int64)),
                                    torch.from_numpy(w.indices.astype(np.int64)), torch.from_numpy(w.data),
                                    size=w.shape, dtype=torch.float64)
    return _Matrix(weight=t.to(device, dtype))


def kernel_of(block: sp.csr_matrix, geometry: ConvShape, in_shape: Sequence[int]) -> np.ndarray:
    """The kernel a conv-shaped matrix ``block`` holds at its central output position (0 for taps outside
    the image there): ``K[o, i, a, b] = block[(o, y, x), (g(o) C_in/groups + i, y s - p + a d, x s - p + b d)]``
    with ``(y, x) = (H_out // 2, W_out // 2)`` (:func:`export.lava.net.conv_matrix`'s indexing)."""
    c_in, h, w = (int(s) for s in in_shape)
    c_out, c_grp, kh, kw = geometry.kernel
    ho, wo = conv_output_hw((h, w), (kh, kw), geometry.stride, geometry.padding, geometry.dilation)
    y, x = ho // 2, wo // 2
    o, i, a, b = np.meshgrid(np.arange(c_out), np.arange(c_grp), np.arange(kh), np.arange(kw), indexing="ij")
    iy = y * geometry.stride[0] - geometry.padding[0] + a * geometry.dilation[0]
    ix = x * geometry.stride[1] - geometry.padding[1] + b * geometry.dilation[1]
    cin = (o // (c_out // geometry.groups)) * c_grp + i
    inside = (iy >= 0) & (iy < h) & (ix >= 0) & (ix < w)
    rows = ((o * ho + y) * wo + x)[inside]
    cols = ((cin * h + iy) * w + ix)[inside]
    kernel = np.zeros(geometry.kernel, dtype=np.float64)
    kernel[inside] = np.asarray(sp.csr_matrix(block)[rows, cols]).ravel()
    return kernel


def _block_map(block: sp.csr_matrix, hint: Optional[ConvShape], in_shape: Tuple[int, ...],
               device: torch.device, dtype: torch.dtype) -> Callable[[torch.Tensor], torch.Tensor]:
    """The map of one part's integer block: a convolution plus a sparse correction where ``hint`` gives its
    geometry and the correction is smaller than the block, else the matrix (module docstring)."""
    if hint is not None and len(in_shape) == 3:
        kernel = kernel_of(block, hint, in_shape)
        rest = (sp.csr_matrix(block, dtype=np.float64) - conv_matrix(kernel, in_shape, hint.stride, hint.padding,
                                                                     hint.dilation, hint.groups)).tocsr()
        rest.eliminate_zeros()
        if rest.nnz < sp.csr_matrix(block).nnz // 2:
            conv = _Conv(kernel=torch.from_numpy(kernel).to(device, dtype), geometry=hint, in_shape=tuple(in_shape))
            return conv if rest.nnz == 0 else _Sum(maps=(conv, _matrix_map(rest, device, dtype)))
    return _matrix_map(block, device, dtype)


def port_bound(weight, x_max: Sequence[float], parts: Sequence[Part]) -> float:
    """``max_row sum_j |W_ij| max|x_j|``: the largest magnitude any partial synaptic sum of the layer can reach
    (a kernel: per output channel, which bounds every position), ``x_max`` per part."""
    if not sp.issparse(weight):
        w = np.abs(np.asarray(weight, dtype=np.float64)).reshape(np.shape(weight)[0], -1)
        return float(w.sum(axis=1).max(initial=0.0) * x_max[0])
    scale = np.concatenate([np.full(p.size, float(m)) for p, m in zip(parts, x_max)])
    return float((abs(sp.csr_matrix(weight, dtype=np.float64)) @ scale).max(initial=0.0))


# ----------------------------------------------------------------------------------------------------
# The plan: what runs, per layer
# ----------------------------------------------------------------------------------------------------

@dataclass(kw_only=True)
class _Layer:
    """One layer's maps (per part) and integer neuron parameters on the device."""

    name: str
    shape: Tuple[int, ...]
    parts: Tuple[Part, ...]
    maps: Tuple[Callable[[torch.Tensor], torch.Tensor], ...]
    wrap: bool      # Conv's 24-bit wrap of a_in may change it (else it is skipped)
    u_wraps: bool   # u's 24-bit wrap may change it
    current_bias: Optional[torch.Tensor]
    du: int
    dv: torch.Tensor
    vth6: torch.Tensor
    bias: torch.Tensor
    v_reset6: Optional[torch.Tensor]
    mechanism: str
    delay: bool


def _ints(values, device) -> torch.Tensor:
    """A flat int64 tensor (one value stays a 1-element tensor, broadcast against the neurons)."""
    return torch.as_tensor(np.asarray(values, dtype=np.int64).reshape(-1), device=device)


def _sum_dtype(bound: float, device: torch.device, dtype: Optional[torch.dtype]) -> torch.dtype:
    """The float type a layer's synaptic sums run in (module docstring): ``dtype`` if given, else float32 on
    the CPU where ``bound < 2^24``, else float64."""
    if dtype is not None:
        if dtype not in (torch.float32, torch.float64):
            raise EslError(f"the torch emulator sums in float32 or float64, not {dtype}")
        return dtype
    return torch.float32 if device.type == "cpu" and bound < FLOAT32_EXACT else torch.float64


def _plan(net: LavaNet, device: torch.device, dtype: Optional[torch.dtype] = None) -> List[_Layer]:
    """Every layer's maps and parameters; :class:`EslError` for a layer whose sums the float type may not hold."""
    if not net.quantized:
        raise EslError("this network has no fixed-point parameters: quantize it first")
    x_lo, x_hi = _input_ints(net.input_min, net.input_max if net.input_max is not None else 1.0,
                             net.layers[0].fixed.input_scale)
    plan = []
    for l, layer in enumerate(net.layers):
        f, n, syn = layer.fixed, layer.neuron, layer.synapse
        parts = net.parts(l)
        x_max = [max(-x_lo, x_hi) if p.source == INPUT else 1 for p in parts]
        bound = port_bound(f.weight, x_max, parts)
        kind = _sum_dtype(bound, device, dtype)
        if bound >= (EXACT_BOUND if kind == torch.float64 else FLOAT32_EXACT):
            raise EslError(f"layer {n.name!r}: its synaptic sums can reach {bound:.4g}, beyond what the torch emulator "
                           f"computes exactly in {kind}; use export.lava.fixed.emulate_fixed")
        if syn.kind == "conv":
            maps = (_Conv(kernel=torch.as_tensor(np.asarray(f.weight, dtype=np.float64)).to(device, kind),
                          geometry=ConvShape.of(syn), in_shape=tuple(syn.in_shape)),)
        else:
            w = sp.csr_matrix(f.weight, dtype=np.int64)
            hints = syn.convs or (None,) * len(parts)
            maps, col = [], 0
            for p, hint in zip(parts, hints):
                shape = syn.in_shape if not syn.parts else (
                    net.input_shape if p.source == INPUT else net.layers[p.source].neuron.shape)
                maps.append(_block_map(w[:, col:col + p.size], hint, tuple(shape), device, kind))
                col += p.size
            maps = tuple(maps)
        v_reset = np.asarray(f.v_reset, dtype=np.int64)
        a_top = bound + (0 if f.current_bias is None else float(np.abs(f.current_bias).max(initial=0)))
        plan.append(_Layer(
            name=n.name, shape=tuple(n.shape), parts=parts, maps=maps, wrap=syn.kind == "conv" and bound >= UV_LIMIT,
            u_wraps=not (f.du + 1 == DECAY_UNITY and a_top * 2 ** ACT_SHIFT < UV_LIMIT),
            current_bias=None if f.current_bias is None else _ints(f.current_bias, device), du=int(f.du),
            dv=_ints(f.dv, device), vth6=_ints(f.vth, device) << ACT_SHIFT,
            bias=_ints(f.bias_mant, device) << f.bias_exp,
            v_reset6=_ints(v_reset, device) << ACT_SHIFT if np.any(v_reset != 0) else None,
            mechanism=n.reset_mechanism, delay=bool(n.reset_delay)))
    return plan


def _layerwise(plan: List[_Layer]) -> bool:
    """True when every part reads the input, an earlier layer, or (with a shift) its own layer."""
    return all(p.source < l or (p.source == l and p.shift > 0) for l, layer in enumerate(plan) for p in layer.parts)


# ----------------------------------------------------------------------------------------------------
# Running a batch
# ----------------------------------------------------------------------------------------------------

def _to_int(a: torch.Tensor) -> torch.Tensor:
    """An exact integer-valued float64 sum as int64 (rounded: see the module docstring)."""
    return torch.round(a).to(torch.int64)


def _synaptic(layer: _Layer, a: torch.Tensor) -> torch.Tensor:
    """``a`` int64 after Conv's 24-bit wrap and the current bias."""
    if layer.wrap:
        a = (a + UV_LIMIT) % (2 * UV_LIMIT) - UV_LIMIT
    if layer.current_bias is not None:
        a = a + layer.current_bias
    return a


def _shifted(h: torch.Tensor, shift: int) -> torch.Tensor:
    """(T, B, n) read ``shift`` steps late: zeros for the first ``shift`` steps."""
    if shift == 0:
        return h
    out = torch.zeros_like(h)
    if shift < h.shape[0]:
        out[shift:] = h[:-shift]
    return out


def _apply(fn, h: torch.Tensor) -> torch.Tensor:
    """A map of (N, n_in) applied to (T, B, n_in) float64: (T, B, n_out)."""
    T, B = h.shape[:2]
    return fn(h.reshape(T * B, -1)).reshape(T, B, -1)


def _run_batch(plan: List[_Layer], h_in: torch.Tensor) -> List[torch.Tensor]:
    """The (T, B, n) bool spikes of every layer for the (T, B, n_in) float64 integer input ``h_in``."""
    T, B = h_in.shape[:2]
    outs = [torch.zeros((T, B, size(layer.shape)), dtype=torch.float32, device=h_in.device) for layer in plan]
    v = [torch.zeros((B, size(layer.shape)), dtype=torch.int64, device=h_in.device) for layer in plan]
    u = [torch.zeros_like(x) for x in v]

    def source(p: Part) -> torch.Tensor:
        return h_in if p.source == INPUT else outs[p.source]

    def advance(l: int, t: int, a: torch.Tensor) -> None:
        layer = plan[l]
        u[l] = current_t(u[l], _synaptic(layer, a), layer.du, layer.u_wraps)
        v[l], s = step_t(v[l], u[l], layer.bias, layer.dv, layer.vth6, layer.mechanism, layer.delay, layer.v_reset6)
        outs[l][t] = s

    if _layerwise(plan):
        for l, layer in enumerate(plan):
            ff = [(p, m) for p, m in zip(layer.parts, layer.maps) if p.source != l]
            rec = [(p, m) for p, m in zip(layer.parts, layer.maps) if p.source == l]
            a_ff = None
            for p, m in ff:
                y = _apply(m, _shifted(source(p), p.shift))
                a_ff = y if a_ff is None else a_ff.add_(y)
            a_ff = _to_int(a_ff) if a_ff is not None else torch.zeros((T, B, size(layer.shape)), dtype=torch.int64,
                                                                       device=h_in.device)
            for t in range(T):
                a = a_ff[t]
                for p, m in rec:
                    if t >= p.shift:
                        a = a + _to_int(m(outs[l][t - p.shift]))
                advance(l, t, a)
    else:
        for t in range(T):
            for l, layer in enumerate(plan):
                a = torch.zeros((B, size(layer.shape)), dtype=torch.int64, device=h_in.device)
                for p, m in zip(layer.parts, layer.maps):
                    if t >= p.shift:
                        a = a + _to_int(m(source(p)[t - p.shift]))
                advance(l, t, a)
    return outs


def emulate_batches(net: LavaNet, x: np.ndarray, *, batch_size: int = BATCH_SIZE,
                    device: Union[str, torch.device] = "cpu",
                    dtype: Optional[torch.dtype] = None) -> Iterator[Tuple[slice, List[np.ndarray]]]:
    """:func:`emulate` batch by batch: yields ``(samples, spikes)``, ``spikes[l]`` (T, b, *shape) uint8 for the
    samples ``x[:, samples]``, so that a caller can compare and drop them (a whole test set's spikes of every
    layer need not fit in memory)."""
    if batch_size < 1:
        raise EslError(f"batch_size must be at least 1, got {batch_size}")
    device = torch.device(device)
    if device.type == "mps":
        raise EslError("the torch emulator computes in float64 and int64, which MPS lacks: use cpu or cuda")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise EslError("--device cuda: torch finds no CUDA device here; use cpu")
    plan = _plan(net, device, dtype)
    data = encode_input(net, x, "fixed")  # checks the input range and every layer's widths once
    T, B = data.shape[:2]
    data = data.reshape(T, B, -1)
    with torch.no_grad():
        for start in range(0, B, batch_size):
            window = slice(start, min(B, start + batch_size))
            h = torch.as_tensor(data[:, window], device=device).to(torch.float64)
            outs = _run_batch(plan, h)
            yield window, [o.to(torch.uint8).cpu().numpy().reshape((T, h.shape[1]) + layer.shape)
                           for o, layer in zip(outs, plan)]


def emulate(net: LavaNet, x: np.ndarray, *, batch_size: int = BATCH_SIZE, device: Union[str, torch.device] = "cpu",
            progress: Union[bool, Callable[[int], None]] = True,
            dtype: Optional[torch.dtype] = None) -> List[np.ndarray]:
    """The spikes of every layer of the quantised ``net`` for ``x`` (T, B, *input_shape) floats, (T, B, *shape)
    uint8, equal entry for entry to :func:`export.lava.fixed.emulate_fixed` (module docstring), computed in
    batches of ``batch_size`` samples on ``device``. ``progress``: a tqdm bar over the batches when there is
    more than one (True), none (False), or a function called with the samples each batch finished.
    ``dtype`` (None: chosen per layer) forces the float type of the synaptic sums (module docstring)."""
    T, B = np.shape(x)[:2]
    batches = math.ceil(B / max(1, batch_size))
    bar = None
    if progress is True and batches > 1:
        from tqdm import tqdm

        bar = tqdm(total=B, desc="emulate fixed point", unit="sample", leave=False)
    tick = bar.update if bar is not None else (progress if callable(progress) else None)
    shapes = [tuple(layer.neuron.shape) for layer in net.layers]
    out = [np.zeros((T, B) + s, dtype=np.uint8) for s in shapes]
    try:
        for window, spikes in emulate_batches(net, x, batch_size=batch_size, device=device, dtype=dtype):
            for o, s in zip(out, spikes):
                o[:, window] = s
            if tick is not None:
                tick(window.stop - window.start)
    finally:
        if bar is not None:
            bar.close()
    return out


__all__ = ["BATCH_SIZE", "DENSE_MAX", "EXACT_BOUND", "current_t", "emulate", "emulate_batches", "kernel_of",
           "port_bound", "step_t"]
