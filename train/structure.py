"""What structure learning learned: the numbers and pictures of a run's masks (``esl inspect RUN``).

From a run's checkpoint (the engine's initial masks, its rewiring records and the kept model's masks):

- **fan-out image** (first layer of an MLP): input pixel i's fan-out ``out_i = sum_j M[j, i]`` (how
  many hidden neurons it feeds), drawn in the input's shape (8x8 digits, 28x28 MNIST), at the start
  and at the kept epoch: which pixels the network chose to keep.
- **degree histograms** per layer, kept mask against initial mask: in-degree of output neuron (or
  filter) j ``in_j = sum_{i,k} M[j, i, k]``, out-degree of input i ``out_i = sum_{j,k} M[j, i, k]``.
  An Erdős–Rényi start gives binomial degrees; structure shows as a spread or a skew.
- **rewiring over training**: connections pruned and grown per rewiring, and the survival share,
  the fraction of the connections grown at rewiring k that rewiring k+1 keeps
  (``prev_grown_survived / prev_grown``, see :func:`train.masking.rewire_record`).
- **core groups** (a ``--core-aware`` run): each Linear mask as a block image, the positions its core
  groups allow shaded, the kept connections on top.

Pure functions make the numbers (:func:`structure_report`); thin wrappers draw them
(:func:`write_structure_plots`, PNGs written atomically into the run folder).
"""
from __future__ import annotations

import io
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch

from esl_deploy.atomic import atomic_write_bytes
from esl_deploy.checkpoint import checkpoint_field
from esl_deploy.errors import EslError

PLOT_FILES = ("structure_fanout.png", "structure_degrees.png", "structure_rewiring.png", "structure_cores.png")


@dataclass(frozen=True)
class LayerStructure:
    """Degrees of one sparse layer's mask at the start and at the kept epoch."""

    name: str
    shape: tuple
    initial_nnz: int
    kept_nnz: int
    kept_from_initial: int  # |kept & initial|: kept connections that were there from the start
    initial_in_degree: List[int]
    kept_in_degree: List[int]
    initial_out_degree: List[int]
    kept_out_degree: List[int]

    def to_dict(self) -> dict:
        return asdict(self)


def degrees(mask: torch.Tensor) -> tuple:
    """(in-degree per output unit, out-degree per input unit) of a (out, in, ...) bool mask."""
    m = mask.reshape(mask.shape[0], mask.shape[1] if mask.dim() > 1 else 1, -1).to(torch.int64)
    return m.sum((1, 2)).tolist(), m.sum((0, 2)).tolist()


def fanout_image(mask: torch.Tensor, input_shape: Sequence[int]) -> Optional[np.ndarray]:
    """Per-input fan-out of a first Linear layer in the input's (H, W) shape (channels summed), or None
    where the layer does not read the flattened input (a convolution, a different width)."""
    if mask.dim() != 2 or mask.shape[1] != int(np.prod(input_shape)):
        return None
    fan = mask.to(torch.int64).sum(0).numpy().reshape(tuple(input_shape))
    if fan.ndim == 3:  # (C, H, W): channels summed
        fan = fan.sum(0)
    elif fan.ndim == 1:
        fan = fan.reshape(1, -1)
    return fan


def rewiring_series(log: List[dict]) -> dict:
    """Per rewiring: step, epoch, connections pruned and grown (all layers), survival share of the
    previous rewiring's regrown connections (None where there was no previous one or it grew none)."""
    rows = []
    for rec in log:
        layers = rec["layers"].values()
        prev = sum(l["prev_grown"] or 0 for l in layers)
        kept = sum(l["prev_grown_survived"] or 0 for l in layers)
        has_prev = any(l["prev_grown"] is not None for l in layers)
        rows.append({"step": rec["step"], "epoch": rec.get("epoch"),
                     "pruned": sum(l["pruned"] for l in layers), "grown": sum(l["grown"] for l in layers),
                     "nnz": sum(l["nnz"] for l in layers),
                     "survival": kept / prev if has_prev and prev else None})
    return {"rewirings": rows,
            "total_grown": sum(r["grown"] for r in rows), "total_pruned": sum(r["pruned"] for r in rows)}


def run_records(ckpt: dict, path: str = "the checkpoint") -> dict:
    """The parts of a checkpoint the structure report reads, checked: a field that is missing or of the wrong
    type, masks that do not pair up, a rewiring record without its counts are one EslError naming it."""
    def field(dotted, kind, optional=False):
        return checkpoint_field(ckpt, dotted, kind, path, optional=optional)

    method = field("config.sparsity.method", "str")
    for dotted, kind in (("config.model", "str"), ("config.dataset", "str"), ("config.seed", "int")):
        field(dotted, kind)
    field("config.sparsity.core_aware", "str", optional=True)
    if ckpt.get("best") is None:
        raise EslError("the run has no kept model yet (it stopped before its first epoch ended, or while its "
                       "sparsity was still changing): finish it with esl train --resume, then inspect it")
    engine = field("engine", "dict")
    if not engine.get("masks"):
        raise EslError(f"a {method} run has no masks: there is no structure to inspect")
    if "initial_masks" not in engine:
        raise EslError("this run was trained before runs recorded their initial masks and rewirings; "
                       "retrain it to inspect its structure")
    initial, kept = field("engine.initial_masks", "dict"), field("best.masks", "dict")
    if not initial:
        raise EslError(f"{path}: malformed checkpoint: engine.initial_masks is empty")
    for name, mask in initial.items():
        if not isinstance(mask, torch.Tensor) or not isinstance(kept.get(name), torch.Tensor) \
                or kept[name].shape != mask.shape or mask.dim() < 1:
            raise EslError(f"{path}: malformed checkpoint: the initial and kept masks of {name} do not pair up")
    log = field("engine.rewire_log", "list")
    for k, rec in enumerate(log):
        layers = rec.get("layers") if isinstance(rec, dict) else None
        ok = isinstance(layers, dict) and isinstance(rec.get("step"), int) and all(
            isinstance(l, dict) and all(isinstance(l.get(c), int) for c in ("pruned", "grown", "nnz"))
            and all(l.get(c) is None or isinstance(l.get(c), int) for c in ("prev_grown", "prev_grown_survived"))
            for l in layers.values())
        if not ok:
            raise EslError(f"{path}: malformed checkpoint: rewiring record {k} lacks its step or counts")
    allowed = field("engine.allowed", "dict", optional=True) or {}
    if not all(isinstance(a, torch.Tensor) for a in allowed.values()):
        raise EslError(f"{path}: malformed checkpoint: engine.allowed holds something other than masks")
    shape = field("model_spec.input_shape", "list")
    if not shape or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in shape):
        raise EslError(f"{path}: malformed checkpoint: model_spec.input_shape is not a shape")
    return {"initial": {n: m.bool() for n, m in initial.items()}, "kept": {n: m.bool() for n, m in kept.items()},
            "log": log, "allowed": allowed, "input_shape": tuple(shape), "kept_epoch": field("best.epoch", "int"),
            "config": ckpt["config"]}


def structure_report(ckpt: dict, path: str = "the checkpoint") -> dict:
    """Everything the structure plots show, as plain numbers (the ``--json`` of ``esl inspect``)."""
    rec = run_records(ckpt, path)
    layers = []
    for name, init in rec["initial"].items():
        kept = rec["kept"][name]
        i_in, i_out = degrees(init)
        k_in, k_out = degrees(kept)
        layers.append(LayerStructure(name, tuple(init.shape), int(init.sum()), int(kept.sum()),
                                     int((kept & init).sum()), i_in, k_in, i_out, k_out))
    first = next(iter(rec["initial"]))
    f0 = fanout_image(rec["initial"][first], rec["input_shape"])
    f1 = fanout_image(rec["kept"][first], rec["input_shape"])
    fan = None
    if f0 is not None:
        fan = {"layer": first, "start": f0.tolist(), "kept": f1.tolist(),
               "inputs_used_start": int((f0 > 0).sum()), "inputs_used_kept": int((f1 > 0).sum()),
               "inputs": int(f0.size)}
    cfg = rec["config"]
    return {"model": cfg["model"], "dataset": cfg["dataset"], "method": cfg["sparsity"]["method"],
            "seed": cfg["seed"], "kept_epoch": rec["kept_epoch"], "input_shape": list(rec["input_shape"]),
            "layers": [l.to_dict() for l in layers], "fanout": fan, **rewiring_series(rec["log"]),
            "core_aware": cfg["sparsity"].get("core_aware")}


# -- pictures (thin wrappers over the report) --------------------------------------------------------

def save_png(fig, path: Path) -> None:
    """A matplotlib figure as a PNG (110 dpi), written atomically; the figure is closed."""
    import matplotlib.pyplot as plt
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    atomic_write_bytes(path, lambda f: f.write(buf.getvalue()))


def _title(rep: dict) -> str:
    return f"{rep['model']} on {rep['dataset']}, {rep['method']}, seed {rep['seed']}"


def plot_fanout(rep: dict, path: Path) -> None:
    import matplotlib.pyplot as plt
    fan = rep["fanout"]
    start, kept = np.array(fan["start"]), np.array(fan["kept"])
    vmax = max(int(start.max()), int(kept.max()), 1)
    fig, axes = plt.subplots(1, 2, figsize=(8.4, 3.9))
    for ax, img, label, used in ((axes[0], start, "start (random)", fan["inputs_used_start"]),
                                 (axes[1], kept, f"kept (epoch {rep['kept_epoch']})", fan["inputs_used_kept"])):
        im = ax.imshow(img, cmap="viridis", vmin=0, vmax=vmax, interpolation="nearest")
        ax.set_title(f"{label}\n{used} of {fan['inputs']} inputs connected", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.colorbar(im, ax=axes, shrink=0.85, label="fan-out (hidden neurons fed)")
    fig.suptitle(f"first-layer fan-out per input pixel: {_title(rep)}", fontsize=10)
    save_png(fig, path)


def plot_degrees(rep: dict, path: Path) -> None:
    import matplotlib.pyplot as plt
    layers = rep["layers"]
    fig, axes = plt.subplots(2, len(layers), figsize=(3.6 * len(layers) + 0.6, 5.6), squeeze=False)
    for col, l in enumerate(layers):
        for row, (kind, unit) in enumerate((("in", "output neuron"), ("out", "input"))):
            ax = axes[row][col]
            a, b = np.array(l[f"initial_{kind}_degree"]), np.array(l[f"kept_{kind}_degree"])
            top = max(int(a.max()), int(b.max()), 1)
            bins = np.arange(top + 2) - 0.5 if top <= 40 else np.linspace(0, top + 1, 41)
            ax.hist(a, bins=bins, alpha=0.55, label=f"initial (nnz {l['initial_nnz']})", color="tab:gray")
            ax.hist(b, bins=bins, alpha=0.55, label=f"kept (nnz {l['kept_nnz']})", color="tab:blue")
            ax.set(xlabel=f"{kind}-degree (connections per {unit})", ylabel=f"{unit}s")
            ax.set_title(f"{l['name']} {tuple(l['shape'])}", fontsize=8)
            ax.legend(fontsize=7)
            ax.grid(alpha=0.3)
    fig.suptitle(f"degree histograms, kept vs initial mask: {_title(rep)}", fontsize=10)
    fig.tight_layout()
    save_png(fig, path)


def plot_rewiring(rep: dict, path: Path) -> None:
    import matplotlib.pyplot as plt
    rows = rep["rewirings"]
    x = [r["epoch"] if r["epoch"] is not None else r["step"] for r in rows]
    xlabel = "epochs completed at the rewiring" if rows and rows[0]["epoch"] is not None else "step"
    fig, axes = plt.subplots(1, 2, figsize=(10.5, 3.6))
    axes[0].plot(x, [r["pruned"] for r in rows], "o-", ms=3, label="pruned")
    axes[0].plot(x, [r["grown"] for r in rows], "s--", ms=3, label="grown")
    axes[0].set(title="connections rewired per rewiring", xlabel=xlabel, ylabel="connections")
    sx = [xi for xi, r in zip(x, rows) if r["survival"] is not None]
    axes[1].plot(sx, [100 * r["survival"] for r in rows if r["survival"] is not None], "o-", ms=3, color="tab:green")
    axes[1].set(title="regrown connections kept by the next rewiring", xlabel=xlabel, ylabel="%", ylim=(0, 105))
    for ax in axes:
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"structure over training: {_title(rep)}", fontsize=10)
    fig.tight_layout()
    save_png(fig, path)


def plot_cores(kept: Dict[str, torch.Tensor], allowed: Dict[str, torch.Tensor], rep: dict, path: Path) -> None:
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch
    names = [n for n, a in allowed.items() if a.dim() == 2 and not bool(a.all())]
    fig, axes = plt.subplots(len(names), 1, figsize=(9, 2.2 + 2.6 * len(names)), squeeze=False)
    cmap = ListedColormap(["white", "#c6dbef", "#08306b"])
    for ax, name in zip(axes[:, 0], names):
        img = allowed[name].to(torch.int64) + (kept[name] & allowed[name]).to(torch.int64)
        ax.imshow(img.numpy(), cmap=cmap, vmin=0, vmax=2, aspect="auto", interpolation="nearest")
        ax.set(title=f"{name}: {tuple(kept[name].shape)} mask, core groups shaded", xlabel="input (axon)",
               ylabel="output neuron")
        ax.legend(handles=[Patch(color="#c6dbef", label="allowed by a core group"),
                           Patch(color="#08306b", label="kept connection")], fontsize=7, loc="upper right")
    fig.suptitle(f"core-aware masks: {_title(rep)}", fontsize=10)
    fig.tight_layout()
    save_png(fig, path)


def write_structure_plots(run: Path, ckpt: dict, rep: Optional[dict] = None) -> List[Path]:
    """Draw every structure plot that applies to this run into the run folder; returns the files."""
    import matplotlib
    matplotlib.use("Agg")
    rep = rep or structure_report(ckpt)
    rec = run_records(ckpt)
    written = []
    if rep["fanout"] is not None:
        plot_fanout(rep, run / "structure_fanout.png")
        written.append(run / "structure_fanout.png")
    plot_degrees(rep, run / "structure_degrees.png")
    written.append(run / "structure_degrees.png")
    if rep["rewirings"]:
        plot_rewiring(rep, run / "structure_rewiring.png")
        written.append(run / "structure_rewiring.png")
    if rec["allowed"] and any(a.dim() == 2 and not bool(a.all()) for a in rec["allowed"].values()):
        plot_cores(rec["kept"], rec["allowed"], rep, run / "structure_cores.png")
        written.append(run / "structure_cores.png")
    return written
