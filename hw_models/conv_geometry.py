"""The geometry of a convolution as a TrueNorth mapper sees it: which spike sources each neuron reads.

A :class:`ConvGeometry` describes a ``Conv2d`` (any stride, padding, dilation and groups) together
with the non-overlapping average pooling folded into it (:mod:`hw_models.unroll` folds pooling into the
next synaptic layer). Its sources form a grid of *cells*: cell ``(c, Y, X)`` of the pooled map is the
block of ``q_y x q_x`` spike sources ``(c, q_y Y + a, q_x X + b)``, ``0 <= a < q_y``, ``0 <= b < q_x``,
of the layer's source grid ``(C_in, H, W)`` (no pooling: ``q = 1``, cells are sources). Neuron
``(o, y, x)`` reads cell::

    (c, s_y y - p_y + i, s_x x - p_x + j)   for every tap (i, j) with taps[o, c, i, j], inside the cell grid

and through it all ``q_y q_x`` sources of that cell (dilation is folded into ``taps``: a kernel of size
k and dilation d has ``(k - 1) d + 1`` tap rows, the skipped ones all zero). The sparse mask lives on the
weight tensor, so the *footprint* of output channel o on input channel c, ``D_oc = {(i, j) : taps[o, c,
i, j]}``, is the same at every output position: a conv layer's receptive fields are translates.
:meth:`ConvGeometry.unrolled` gives the layer's (neurons, sources) mask; it equals the unroller's
mask (``tests/test_hw_conv_mapping.py`` checks it on the project's conv nets).

Footprints are kept as bitmasks over the ``KY x KX`` taps (bit ``i * KX + j``), so the footprint of a
set of output channels on an input channel is the OR of theirs. For a rectangle R of ``h x w`` output
positions and a footprint U, the cells the rectangle reads (away from the map's border) are the sumset
``s R + U``; :func:`sumset_sizes` counts them for many footprints at once, row by row::

    |s R + U| = sum_r |s_x [0, w) + J(r)|,   J(r) = union of U's tap rows i with (r - i) / s_y in [0, h)

For a full k x k footprint this is ``(s_y (h - 1) + k) (s_x (w - 1) + k)``, the count of Esser et al.
(PNAS 2016) for a spatial tile; a sparse footprint reads fewer cells.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

import numpy as np
import scipy.sparse as sp
from torch import nn

MAX_TAPS = 62  # footprints are int64 bitmasks


def _pair(v) -> Tuple[int, int]:
    return (int(v[0]), int(v[1])) if isinstance(v, (tuple, list)) else (int(v), int(v))


@dataclass(frozen=True, eq=False)
class ConvGeometry:
    """A convolution (pooling folded in) as cells, strides and tap footprints; see the module docstring.

    ``taps``: bool (C_out, C_in, KY, KX), True where the weight is not 0 (dilation folded in).
    ``cells``: (Hc, Wc) of the pooled input; ``block``: (q_y, q_x) sources per cell; ``source_hw``:
    (H, W) of the source grid the unrolled mask indexes (H >= q_y Hc, W >= q_x Wc).
    """

    taps: np.ndarray
    cells: Tuple[int, int]
    out_hw: Tuple[int, int]
    stride: Tuple[int, int] = (1, 1)
    padding: Tuple[int, int] = (0, 0)
    block: Tuple[int, int] = (1, 1)
    source_hw: Optional[Tuple[int, int]] = None

    def __post_init__(self):
        t = np.asarray(self.taps, dtype=bool)
        if t.ndim != 4 or min(t.shape) < 1:
            raise ValueError(f"taps must be a (C_out, C_in, KY, KX) array, got shape {t.shape}")
        object.__setattr__(self, "taps", t)
        for k in ("cells", "out_hw", "stride", "padding", "block"):
            object.__setattr__(self, k, _pair(getattr(self, k)))
        if min(self.cells) < 1 or min(self.out_hw) < 1 or min(self.stride) < 1 or min(self.block) < 1:
            raise ValueError("cells, output size, stride and block must be positive")
        if min(self.padding) < 0:
            raise ValueError(f"padding must be >= 0, got {self.padding}")
        if self.source_hw is None:
            object.__setattr__(self, "source_hw", (self.cells[0] * self.block[0], self.cells[1] * self.block[1]))
        object.__setattr__(self, "source_hw", _pair(self.source_hw))
        if self.source_hw[0] < self.cells[0] * self.block[0] or self.source_hw[1] < self.cells[1] * self.block[1]:
            raise ValueError(f"source grid {self.source_hw} is smaller than cells {self.cells} x block {self.block}")
        if self.kernel[0] * self.kernel[1] > MAX_TAPS:
            raise ValueError(f"a footprint of {self.kernel[0]} x {self.kernel[1]} taps does not fit a {MAX_TAPS}-bit mask")

    # -- sizes ------------------------------------------------------------------------------------
    @property
    def out_channels(self) -> int:
        return self.taps.shape[0]

    @property
    def in_channels(self) -> int:
        return self.taps.shape[1]

    @property
    def kernel(self) -> Tuple[int, int]:
        return self.taps.shape[2], self.taps.shape[3]

    @property
    def neurons(self) -> int:
        return self.out_channels * self.out_hw[0] * self.out_hw[1]

    @property
    def sources(self) -> int:
        return self.in_channels * self.source_hw[0] * self.source_hw[1]

    @property
    def cell_size(self) -> int:
        """Sources per cell, q_y q_x."""
        return self.block[0] * self.block[1]

    # -- construction -----------------------------------------------------------------------------
    @classmethod
    def from_conv(cls, conv: nn.Conv2d, cells_chw: Sequence[int], out_hw: Sequence[int], *,
                  block: Tuple[int, int] = (1, 1), source_hw: Optional[Sequence[int]] = None) -> Optional["ConvGeometry"]:
        """The geometry of ``conv`` on a (C, Hc, Wc) input of cells; None when it cannot be described
        (padding mode other than zeros, a footprint of more than MAX_TAPS taps)."""
        if conv.padding_mode != "zeros":
            return None
        C, Hc, Wc = (int(s) for s in cells_chw)
        kh, kw = conv.kernel_size
        dh, dw = _pair(conv.dilation)
        KY, KX = (kh - 1) * dh + 1, (kw - 1) * dw + 1
        if KY * KX > MAX_TAPS:
            return None
        if isinstance(conv.padding, str):
            ph, pw = (0, 0) if conv.padding == "valid" else (dh * (kh - 1) // 2, dw * (kw - 1) // 2)
        else:
            ph, pw = _pair(conv.padding)
        O, g = conv.out_channels, conv.groups
        wnz = (conv.weight.detach().cpu() != 0).numpy()  # (O, C/g, kh, kw)
        taps = np.zeros((O, C, KY, KX), dtype=bool)
        per_in, per_out = C // g, O // g
        for grp in range(g):
            o_sl, c_sl = slice(grp * per_out, (grp + 1) * per_out), slice(grp * per_in, (grp + 1) * per_in)
            taps[o_sl, c_sl, ::dh, ::dw] = wnz[o_sl]
        return cls(taps=taps, cells=(Hc, Wc), out_hw=tuple(out_hw), stride=_pair(conv.stride), padding=(ph, pw),
                   block=block, source_hw=None if source_hw is None else tuple(source_hw))

    # -- footprints -------------------------------------------------------------------------------
    def footprints(self) -> np.ndarray:
        """(C_out, C_in) int64 bitmasks of the footprints D_oc (bit i * KX + j for tap (i, j))."""
        KY, KX = self.kernel
        bits = (np.int64(1) << np.arange(KY * KX, dtype=np.int64)).reshape(KY, KX)
        return (self.taps * bits).sum(axis=(2, 3)).astype(np.int64)

    def tap_valid(self) -> Tuple[np.ndarray, np.ndarray]:
        """(Ho, KY) and (Wo, KX) bools: tap row i of output row y lands inside the cell grid (same for columns)."""
        (Ho, Wo), (Hc, Wc), (sy, sx), (py, px) = self.out_hw, self.cells, self.stride, self.padding
        KY, KX = self.kernel
        ry = sy * np.arange(Ho)[:, None] - py + np.arange(KY)[None, :]
        rx = sx * np.arange(Wo)[:, None] - px + np.arange(KX)[None, :]
        return (ry >= 0) & (ry < Hc), (rx >= 0) & (rx < Wc)

    # -- the unrolled mask ------------------------------------------------------------------------
    def unrolled(self) -> sp.csr_matrix:
        """The (C_out Ho Wo, C_in H W) bool mask: neuron (o, y, x) row-major, source (c, Y, X) row-major."""
        (Ho, Wo), (Hc, Wc), (sy, sx), (py, px) = self.out_hw, self.cells, self.stride, self.padding
        (qy, qx), (H, W) = self.block, self.source_hw
        KY, KX = self.kernel
        o_idx, c_idx, ti, tj = np.nonzero(self.taps)
        rows, cols = [], []
        for i in range(KY):
            y = np.arange(Ho)
            Y = sy * y - py + i
            ok_y = (Y >= 0) & (Y < Hc)
            for j in range(KX):
                sel = (ti == i) & (tj == j)
                if not sel.any() or not ok_y.any():
                    continue
                x = np.arange(Wo)
                X = sx * x - px + j
                ok_x = (X >= 0) & (X < Wc)
                if not ok_x.any():
                    continue
                pos = (y[ok_y][:, None] * Wo + x[ok_x][None, :]).reshape(-1)
                cell = (Y[ok_y][:, None] * W * qy + X[ok_x][None, :] * qx).reshape(-1)  # top-left source of the cell
                sub = (np.arange(qy)[:, None] * W + np.arange(qx)[None, :]).reshape(-1)
                src = (cell[:, None] + sub[None, :]).reshape(-1)
                pos = np.repeat(pos, sub.size)
                rows.append((o_idx[sel][:, None] * (Ho * Wo) + pos[None, :]).reshape(-1))
                cols.append((c_idx[sel][:, None] * (H * W) + src[None, :]).reshape(-1))
        r = np.concatenate(rows) if rows else np.zeros(0, np.int64)
        c = np.concatenate(cols) if cols else np.zeros(0, np.int64)
        m = sp.csr_matrix((np.ones(r.size, dtype=bool), (r, c)), shape=(self.neurons, self.sources))
        m.sum_duplicates()
        m.sort_indices()
        return m


# ----------------------------------------------------------------------------------------------
# Sumsets of a rectangle of output positions and a footprint
# ----------------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=4096)
def _line_cover(n: int, stride: int, K: int) -> np.ndarray:
    """(n_lines,) bitmasks over the K taps of one axis: line r of the window of n positions at
    ``stride`` is reached from tap t iff (r - t) / stride is an integer in [0, n). Cached: read only."""
    L = stride * (n - 1) + K
    r = np.arange(L)[:, None]
    t = np.arange(K)[None, :]
    ok = ((r - t) % stride == 0) & ((r - t) // stride >= 0) & ((r - t) // stride < n)
    out = (ok * (np.int64(1) << np.arange(K, dtype=np.int64))[None, :]).sum(1).astype(np.int64)
    out.setflags(write=False)
    return out


@functools.lru_cache(maxsize=4096)
def _row_counts(w: int, stride: int, K: int, clip: Tuple[int, int]) -> np.ndarray:
    """|s [0, w) + J| inside the window columns [clip[0], L - clip[1]) for every tap-column set J."""
    cover = _line_cover(w, stride, K)
    cover = cover[clip[0]:cover.size - clip[1]]
    out = ((np.arange(1 << K, dtype=np.int64)[:, None] & cover[None, :]) != 0).sum(1)
    out.setflags(write=False)
    return out


def _row_unions(masks: np.ndarray, KY: int, KX: int) -> np.ndarray:
    """(masks, 2^KY): for every footprint and every set of tap rows, the union of those rows' column sets."""
    rows_of = (masks[:, None] >> (np.arange(KY, dtype=np.int64) * KX)[None, :]) & ((1 << KX) - 1)
    out = np.zeros((masks.size, 1 << KY), dtype=np.int64)
    for sub in range(1, 1 << KY):
        low = sub & -sub
        out[:, sub] = out[:, sub ^ low] | rows_of[:, low.bit_length() - 1]
    return out


def sumset_rows(h: int, w: int, masks: np.ndarray, kernel: Tuple[int, int], stride: Tuple[int, int] = (1, 1),
                col_clip: Tuple[int, int] = (0, 0), unions: Optional[np.ndarray] = None) -> np.ndarray:
    """(window rows, masks): the cells of ``s R + U`` in every row of the h x w rectangle's window, for
    every footprint bitmask U, counting only the window columns ``[left, L_x - right)`` for
    ``col_clip = (left, right)`` (columns outside the map). ``unions``: :func:`_row_unions` of ``masks``,
    if already computed."""
    KY, KX = kernel
    masks = np.asarray(masks, dtype=np.int64)
    if unions is None:
        unions = _row_unions(masks, KY, KX)
    per_row = _row_counts(int(w), int(stride[1]), int(KX), (int(col_clip[0]), int(col_clip[1])))
    cover_rows = _line_cover(int(h), int(stride[0]), int(KY))
    return per_row[unions[:, cover_rows]].T


def sumset_sizes(h: int, w: int, masks: np.ndarray, kernel: Tuple[int, int],
                 stride: Tuple[int, int] = (1, 1), unions: Optional[np.ndarray] = None) -> np.ndarray:
    """``|s R + U|`` for an h x w rectangle R and every footprint bitmask U in ``masks`` (module
    docstring): the cells an h x w tile of output positions reads away from the border."""
    return sumset_rows(h, w, masks, kernel, stride, unions=unions).sum(0)


def window_clip(n_out: int, n_cells: int, size: int, stride: int, pad: int, K: int) -> np.ndarray:
    """(n_out - size + 1, 2): for every anchor of a rectangle side ``size`` on one axis, the window lines
    before the map's start and after its end (what clipping removes)."""
    L = stride * (size - 1) + K
    lo = stride * np.arange(n_out - size + 1) - pad
    return np.stack([np.clip(-lo, 0, L), np.clip(lo + L - n_cells, 0, L)], 1)


def window(h: int, w: int, mask: int, kernel: Tuple[int, int], stride: Tuple[int, int] = (1, 1)) -> np.ndarray:
    """Bool (s_y (h-1) + KY, s_x (w-1) + KX): the cells of ``s R + U`` relative to the window's corner."""
    KY, KX = kernel
    sy, sx = stride
    out = np.zeros((sy * (h - 1) + KY, sx * (w - 1) + KX), dtype=bool)
    for i in range(KY):
        for j in range(KX):
            if mask >> (i * KX + j) & 1:
                out[i:i + sy * (h - 1) + 1:sy, j:j + sx * (w - 1) + 1:sx] = True
    return out
