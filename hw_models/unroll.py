"""Unroll a spiking network into per-layer (neurons, axons) connectivity matrices for core mapping.

Conventions (indices are row-major, as ``torch.flatten`` of one sample):

- **Linear** ``W (out, in)``: neuron i = output i, axon j = input j, synapse iff ``W[i, j] != 0``.
- **Conv2d** ``W (C_out, C_in/g, k_h, k_w)`` on a (C_in, H, W) input: one neuron per output channel and
  position, index ``o * H_out * W_out + y * W_out + x``; one axon per input channel and pixel, index
  ``c * H * W + y' * W + x'``. Neuron (o, y, x) has a synapse from (c, y', x') iff the tap
  ``(k_y, k_x)`` with ``y' = y * s_y - p_y + k_y * d_y`` (same for x) is nonzero, c is in o's group and
  (y', x') lies inside the input. Taps on zero padding are no synapse. Weight sharing does not help on a
  binary crossbar: every (neuron, axon) pair is its own crossbar bit.
- **Pooling** (AvgPool2d, AdaptiveAvgPool2d) is linear, so it is folded into the next synaptic layer:
  that layer's axons are the spike sources *before* pooling, and ``M_folded = (M @ P) != 0`` with P the
  pooling matrix (pooled element <- the pixels of its window). Flatten, BatchNorm (a per-channel affine
  folded into weights and thresholds), Dropout and Identity change no connectivity.
- **Residual blocks** (``esl_deploy.models.BasicBlock``): conv1 reads the block input, conv2 reads lif1,
  and a shortcut convolution reads the block input; each is mapped as its own layer of neurons (the
  shortcut's output neurons are counted separately from lif2's, an upper bound on chip). An identity
  shortcut is a layer of relay neurons with an identity mask (``<block>.shortcut``; what it charges and
  why: :mod:`hw_models.shortcuts`).
- A layer whose spike sources are the network input has ``source_on_chip=False`` (the host delivers
  input spikes to every axon that needs them); all other sources are neurons on chip.
- Every convolution also gets its :class:`hw_models.conv_geometry.ConvGeometry` (``geometry``): its
  taps, strides and the non-overlapping average pooling folded into it (kernel = stride, no padding;
  adaptive pooling that divides the map evenly), which the conv-aware mapper
  (:mod:`hw_models.conv_mapping`) tiles. A convolution behind other pooling has ``geometry=None``
  and is placed from its unrolled mask alone.
- A membrane readout (``esl_deploy.neurons.LI``, non-spiking) is mapped like a LIF layer: its synaptic
  layer is costed the same; that its neurons report a voltage instead of spiking is not modelled
  (TrueNorth neurons spike; the readout's state would be read out by the host).

Anything else (max pooling, recurrent layers, ...) raises :class:`EslError`: it cannot be costed.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from esl_deploy.errors import EslError
from esl_deploy.models import BasicBlock, MultiStep
from esl_deploy.neurons import LI, LIF

from .shortcuts import identity_mask

from .conv_geometry import ConvGeometry

PASS_THROUGH = (nn.Flatten, nn.BatchNorm1d, nn.BatchNorm2d, nn.Dropout, nn.Identity)


@dataclass(frozen=True, eq=False)
class SynapticLayer:
    """One layer to map: its name (the module's qualified name), kind and (neurons, axons) mask, and
    for a convolution its geometry (None: place it from the mask alone)."""

    name: str
    kind: str
    mask: sp.csr_matrix
    source_on_chip: bool
    geometry: Optional[ConvGeometry] = None

    def __post_init__(self):
        if self.kind not in ("linear", "conv2d"):
            raise ValueError(f"layer {self.name}: kind must be 'linear' or 'conv2d', got {self.kind!r}")
        if not sp.issparse(self.mask) or self.mask.ndim != 2:
            raise ValueError(f"layer {self.name}: mask must be a 2-D scipy sparse matrix")
        if self.geometry is not None and (self.geometry.neurons, self.geometry.sources) != self.mask.shape:
            raise ValueError(f"layer {self.name}: geometry of {self.geometry.neurons} neurons and "
                             f"{self.geometry.sources} sources does not match the mask's shape {self.mask.shape}")


def _pair(v) -> Tuple[int, int]:
    return (int(v[0]), int(v[1])) if isinstance(v, (tuple, list)) else (int(v), int(v))


def _csr(rows: List[np.ndarray], cols: List[np.ndarray], shape: Tuple[int, int]) -> sp.csr_matrix:
    r = np.concatenate(rows) if rows else np.zeros(0, dtype=np.int64)
    c = np.concatenate(cols) if cols else np.zeros(0, dtype=np.int64)
    m = sp.csr_matrix((np.ones(r.size, dtype=bool), (r, c)), shape=shape)
    m.sum_duplicates()
    m.sort_indices()
    return m


def _window_positions(out_n: int, in_n: int, stride: int, offset: int) -> Tuple[np.ndarray, np.ndarray]:
    """Output indices o in [0, out_n) whose tap at ``o * stride + offset`` lies in [0, in_n), and that index."""
    o = np.arange(out_n, dtype=np.int64)
    i = o * stride + offset
    ok = (i >= 0) & (i < in_n)
    return o[ok], i[ok]


def unroll_linear(weight: torch.Tensor) -> sp.csr_matrix:
    """(out, in) mask of a Linear weight: ``W != 0``."""
    m = sp.csr_matrix(weight.detach().cpu().numpy() != 0)
    m.sort_indices()
    return m


def unroll_conv2d(layer: nn.Conv2d, input_chw: Sequence[int], output_hw: Sequence[int]) -> sp.csr_matrix:
    """(C_out*H_out*W_out, C_in*H*W) mask of a Conv2d (module docstring). Zero padding only."""
    if layer.padding_mode != "zeros":
        raise EslError(f"cannot unroll a convolution with padding_mode={layer.padding_mode!r}")
    C, H, W = (int(s) for s in input_chw)
    Ho, Wo = (int(s) for s in output_hw)
    O = layer.out_channels
    g = layer.groups
    kh, kw = layer.kernel_size
    sh, sw = _pair(layer.stride)
    dh, dw = _pair(layer.dilation)
    if isinstance(layer.padding, str):
        if layer.padding == "valid":
            ph = pw = 0
        else:  # 'same': torch pads total = d * (k - 1), left = total // 2
            ph, pw = dh * (kh - 1) // 2, dw * (kw - 1) // 2
    else:
        ph, pw = _pair(layer.padding)
    wnz = (layer.weight.detach().cpu() != 0).numpy()
    o_idx, c_loc, ky, kx = np.nonzero(wnz)
    c_idx = (o_idx // (O // g)) * (C // g) + c_loc
    rows, cols = [], []
    for dy in range(kh):
        oy, iy = _window_positions(Ho, H, sh, dy * dh - ph)
        for dx in range(kw):
            sel = (ky == dy) & (kx == dx)
            if not sel.any():
                continue
            ox, ix = _window_positions(Wo, W, sw, dx * dw - pw)
            if oy.size == 0 or ox.size == 0:
                continue
            pos = (oy[:, None] * Wo + ox[None, :]).reshape(-1)
            inp = (iy[:, None] * W + ix[None, :]).reshape(-1)
            rows.append((o_idx[sel][:, None] * (Ho * Wo) + pos[None, :]).reshape(-1))
            cols.append((c_idx[sel][:, None] * (H * W) + inp[None, :]).reshape(-1))
    return _csr(rows, cols, (O * Ho * Wo, C * H * W))


def pool_matrix(layer: nn.Module, input_chw: Sequence[int], output_hw: Sequence[int]) -> sp.csr_matrix:
    """(C*H_out*W_out, C*H*W) 0/1 matrix: pooled element <- the input pixels of its window (same channel)."""
    C, H, W = (int(s) for s in input_chw)
    Ho, Wo = (int(s) for s in output_hw)
    rows, cols = [], []
    ch = np.arange(C, dtype=np.int64)
    if isinstance(layer, nn.AvgPool2d):
        kh, kw = _pair(layer.kernel_size)
        sh, sw = _pair(layer.stride if layer.stride is not None else layer.kernel_size)
        ph, pw = _pair(layer.padding)
        for dy in range(kh):
            oy, iy = _window_positions(Ho, H, sh, dy - ph)
            for dx in range(kw):
                ox, ix = _window_positions(Wo, W, sw, dx - pw)
                pos = (oy[:, None] * Wo + ox[None, :]).reshape(-1)
                inp = (iy[:, None] * W + ix[None, :]).reshape(-1)
                rows.append((ch[:, None] * (Ho * Wo) + pos[None, :]).reshape(-1))
                cols.append((ch[:, None] * (H * W) + inp[None, :]).reshape(-1))
    elif isinstance(layer, nn.AdaptiveAvgPool2d):
        for oy in range(Ho):
            y0, y1 = (oy * H) // Ho, -(-((oy + 1) * H) // Ho)
            for ox in range(Wo):
                x0, x1 = (ox * W) // Wo, -(-((ox + 1) * W) // Wo)
                yy, xx = np.meshgrid(np.arange(y0, y1), np.arange(x0, x1), indexing="ij")
                inp = (yy * W + xx).reshape(-1)
                rows.append(np.repeat(ch * (Ho * Wo) + oy * Wo + ox, inp.size))
                cols.append((ch[:, None] * (H * W) + inp[None, :]).reshape(-1))
    else:
        raise ValueError(f"not a pooling layer: {type(layer).__name__}")
    return _csr(rows, cols, (C * Ho * Wo, C * H * W))


def _pool_block(layer: nn.Module, input_chw: Sequence[int], output_hw: Sequence[int]) -> Optional[Tuple[int, int]]:
    """(q_y, q_x) when the pooling averages non-overlapping q_y x q_x blocks (AvgPool2d with kernel = stride
    and no padding, or adaptive pooling that divides the map evenly); None otherwise."""
    H, W = int(input_chw[1]), int(input_chw[2])
    Ho, Wo = (int(s) for s in output_hw)
    if isinstance(layer, nn.AvgPool2d):
        k = _pair(layer.kernel_size)
        s = _pair(layer.stride if layer.stride is not None else layer.kernel_size)
        if k == s and _pair(layer.padding) == (0, 0) and not layer.ceil_mode:
            return k
        return None
    if isinstance(layer, nn.AdaptiveAvgPool2d) and H % Ho == 0 and W % Wo == 0:
        return H // Ho, W // Wo
    return None


def _bool_product(a: sp.csr_matrix, b: sp.csr_matrix) -> sp.csr_matrix:
    """Boolean matrix product: entry (i, k) iff some j has a[i, j] and b[j, k]."""
    f = (a.astype(np.int32) @ b.astype(np.int32)).tocsr()
    f.eliminate_zeros()
    f = f.astype(bool)
    f.sort_indices()
    return f


def _shapes(model: nn.Module, input_shape: Sequence[int]) -> Dict[str, Tuple[Tuple[int, ...], Tuple[int, ...]]]:
    """Per-sample (input, output) shape of every module, from one dry run on zeros (T = B = 1)."""
    shapes: Dict[str, Tuple[Tuple[int, ...], Tuple[int, ...]]] = {}
    handles = []
    for name, m in model.named_modules():
        drop = 2 if isinstance(m, (LIF, LI, MultiStep)) else 1

        def hook(module, inputs, output, name=name, drop=drop):
            if name not in shapes and isinstance(output, torch.Tensor) and inputs \
                    and isinstance(inputs[0], torch.Tensor):
                shapes[name] = (tuple(inputs[0].shape[drop:]), tuple(output.shape[drop:]))
        handles.append(m.register_forward_hook(hook))
    try:
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
        with torch.no_grad():
            model(torch.zeros(1, 1, *input_shape, device=device))
    finally:
        for h in handles:
            h.remove()
    return shapes


def synaptic_layers(model: nn.Module, *, input_shape: Optional[Sequence[int]] = None) -> List[SynapticLayer]:
    """Every Linear / Conv2d of a ``SpikingNet`` as a :class:`SynapticLayer`, pooling folded in (module docstring).

    ``input_shape`` (one time step of one sample) defaults to ``model.spec.input_shape``.
    """
    layers = getattr(model, "layers", None)
    if layers is None:
        raise EslError(f"cannot cost a {type(model).__name__}: expected a SpikingNet with .layers")
    if input_shape is None:
        spec = getattr(model, "spec", None)
        if spec is None:
            raise EslError("the model has no spec: give its input shape")
        input_shape = spec.input_shape
    shapes = _shapes(model, input_shape)
    out: List[SynapticLayer] = []
    pending: Optional[sp.csr_matrix] = None  # pooling since the last spike source (None = identity)
    # the same pooling as cells for the conv geometry: (q_y, q_x) sources per cell and the source grid
    # (H, W) it pools; block None: pooling a ConvGeometry cannot describe
    block: Optional[Tuple[int, int]] = (1, 1)
    block_src: Optional[Tuple[int, int]] = None
    on_chip = False

    def fold(m: sp.csr_matrix, pre: Optional[sp.csr_matrix]) -> sp.csr_matrix:
        if pre is None:
            return m
        return _bool_product(m, pre)

    def synaptic(name: str, module: nn.Module, pre: Optional[sp.csr_matrix], src_on_chip: bool,
                 blk: Optional[Tuple[int, int]] = (1, 1), blk_src: Optional[Tuple[int, int]] = None) -> None:
        s_in, s_out = shapes[name]
        geometry = None
        if isinstance(module, nn.Linear):
            if len(s_in) != 1:
                raise EslError(f"cannot cost layer {name}: Linear on a {len(s_in)}-D input")
            m, kind = unroll_linear(module.weight), "linear"
        else:
            m, kind = unroll_conv2d(module, s_in, s_out[1:]), "conv2d"
            if blk is not None:
                geometry = ConvGeometry.from_conv(module, s_in, s_out[1:], block=blk, source_hw=blk_src)
        out.append(SynapticLayer(name, kind, fold(m, pre), src_on_chip, geometry))

    for i, layer in enumerate(layers):
        name = f"layers.{i}"
        if name not in shapes:
            continue  # never called
        if isinstance(layer, (nn.Linear, nn.Conv2d)):
            synaptic(name, layer, pending, on_chip, block, block_src)
            pending, block, block_src = None, (1, 1), None
        elif isinstance(layer, (LIF, LI)):  # LI: the membrane readout, mapped as a layer of neurons
            pending, on_chip, block, block_src = None, True, (1, 1), None
        elif isinstance(layer, (nn.AvgPool2d, nn.AdaptiveAvgPool2d)):
            s_in, s_out = shapes[name]
            if len(s_in) != 3:
                raise EslError(f"cannot cost layer {name}: pooling of a {len(s_in)}-D input")
            p = pool_matrix(layer, s_in, s_out[1:])
            pending = p if pending is None else _bool_product(p, pending)
            q = _pool_block(layer, s_in, s_out[1:])
            block_src = block_src or (int(s_in[1]), int(s_in[2]))
            block = None if q is None or block is None else (block[0] * q[0], block[1] * q[1])
        elif isinstance(layer, PASS_THROUGH):
            pass
        elif isinstance(layer, BasicBlock):
            synaptic(f"{name}.conv1", layer.conv1, pending, on_chip, block, block_src)
            synaptic(f"{name}.conv2", layer.conv2, None, True)
            for j, sub in enumerate(layer.shortcut):
                if isinstance(sub, nn.Conv2d):
                    synaptic(f"{name}.shortcut.{j}", sub, pending, on_chip, block, block_src)
                elif not isinstance(sub, PASS_THROUGH):
                    raise EslError(f"cannot cost layer {name}.shortcut.{j} ({type(sub).__name__})")
            if not any(isinstance(sub, nn.Conv2d) for sub in layer.shortcut):  # identity: relay neurons
                out.append(SynapticLayer(f"{name}.shortcut", "linear", identity_mask(int(np.prod(shapes[name][0]))),
                                         True))
            pending, on_chip, block, block_src = None, True, (1, 1), None
        else:
            raise EslError(f"cannot cost layer {name} ({type(layer).__name__}): supported are Linear, Conv2d, "
                           "LIF, LI, AvgPool2d, AdaptiveAvgPool2d, Flatten, BatchNorm, Dropout and BasicBlock")
    if not out:
        raise EslError("the model has no Linear or Conv2d layer to map")
    return out
