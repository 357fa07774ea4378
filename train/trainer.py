"""The training loop: data, model, optimizer, sparsity engine, best-on-validation checkpointing.

Each epoch: shuffle (generator seeded by (seed, epoch), so an interrupted run resumes identically),
for each batch encode over T steps, forward, loss, backward, ``optimizer.step()``, ``engine.step()``
(a rewiring that falls due waits for the next epoch's first step, right after the validation, so no
validated model holds connections regrown a moment ago); then evaluate on the validation set (10 % of train, fixed), keep
the best model (among epochs whose sparsity is final, see ``MaskEngine.structure_final``), decay the
learning rate (exponential, lr -> lr_end over the run), and write ``checkpoint.pt`` atomically. At the
end the best model is evaluated on the test set and ``metrics.csv``, ``summary.json`` and
``curves.png`` are written into the run folder.

Density everywhere means the density of weights that are not 0 (``density``: what a chip stores and
what ``esl energy`` counts); the mask density (``mask_density``: connections the method holds) is
reported beside it. The first layer's inputs that are 0 in every training sample are kept out of the
masks (``SparsityConfig.exclude_dead_inputs``): their weights could never learn.

On several processes (``torchrun``; ``train(..., world=...)``) the same loop trains each process's shard
of every global batch under DistributedDataParallel and rank 0 alone validates and writes the run
folder; :mod:`train.distributed` says how the result stays that of one process.
"""
from __future__ import annotations

import copy
import json
import math
import random
import shutil
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from esl_deploy.atomic import atomic_write_csv
from esl_deploy.checkpoint import atomic_write_text, read_checkpoint, save_checkpoint
from esl_deploy.datasets import load_dataset, to_time_major
from esl_deploy.env import environment
from esl_deploy.errors import EslError
from esl_deploy.loihi2 import exact_input_scale, join_input_scales
from esl_deploy.convert import forward_steps, run_snntorch
from esl_deploy.masks import weights_of
from esl_deploy.models import ModelSpec, SpikingNet, build_model, factory_dir_of, import_factory, is_factory
from esl_deploy.resources import check_memory

from .config import TrainConfig, config_diff
from .distributed import (ShardedBatches, World, all_sum, broadcast_object, check_batch_size, check_same_options,
                          close_process_group, init_process_group, peer_lost, process_device, rewire_check, shard_rows,
                          together)
from .losses import compute_loss, predict
from .masking import MaskEngine
from .quant import BN_FREEZE, LoihiView, hardware_beta, loihi_views, quantized_state, quantized_weights
from .sparse_adam import MaskedAdam
from .sparsifier import feasible_inputs
from .structure import PLOT_FILES, save_png, write_structure_plots

RUN_FILES = ("checkpoint.pt", "metrics.csv", "summary.json", "curves.png", "config.toml") + PLOT_FILES
EVAL_SEED = 12345  # rate-encoded evaluation uses a fixed stream, so accuracies are comparable


def resolve_device(name: str) -> torch.device:
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise EslError("--device cuda requested but no CUDA device is available")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise EslError(f"unknown device {name!r}") from None
    if device.type not in ("cpu", "cuda"):
        raise EslError(f"--device {name}: training runs on cpu or cuda")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise EslError(f"--device {name}: there are only {torch.cuda.device_count()} CUDA devices")
    return device


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """SGD (momentum) or Adam, with the multi-tensor (``foreach``) implementation: the same arithmetic as
    the per-tensor loop, bit for bit, in fewer kernel calls. Adam is :class:`~train.sparse_adam.MaskedAdam`,
    which the mask engine tells its masks: the same weights, computed on the masks' entries only."""
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay,
                               foreach=True)
    return MaskedAdam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, foreach=True)


def lr_gamma(cfg: TrainConfig) -> float:
    """Per-epoch factor of the exponential decay lr -> lr_end reached at the last epoch."""
    return (cfg.lr_end / cfg.lr) ** (1.0 / max(1, cfg.epochs - 1))


def _seeded(seed: int, *parts: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(seed) * 1_000_003 + sum(p * 7919 ** (i + 1) for i, p in enumerate(parts)))


def run_model(model: SpikingNet, x: torch.Tensor, cfg: TrainConfig, temporal: bool,
              gen: Optional[torch.Generator], device: torch.device, rows: Optional[tuple] = None) -> torch.Tensor:
    """The model's output (T, B, C) on a collated batch. Direct encoding presents the same input at
    every step, so the model gets it once with ``T`` (the first layer runs once per sample, see
    :meth:`SpikingNet.forward`); rate-encoded and event input are made time-major first. ``rows``:
    ``x`` is a shard of a larger batch (see :func:`esl_deploy.datasets.encode`)."""
    if not isinstance(getattr(model, "module", model), SpikingNet):  # a user's snnTorch network (--model m:f)
        return forward_steps(model, to_time_major(x, cfg.T, cfg.encoding, temporal, gen, rows).to(device))
    if not temporal and cfg.encoding == "direct":
        return model(x.float().to(device), T=cfg.T)
    return model(to_time_major(x, cfg.T, cfg.encoding, temporal, gen, rows).to(device))


@torch.no_grad()
def evaluate(model: SpikingNet, data: Dataset, cfg: TrainConfig, temporal: bool, device: torch.device,
             batch_size: int = 256) -> Dict[str, float]:
    """Mean loss and accuracy of ``model`` on ``data`` (eval mode, fixed encoding stream)."""
    model.eval()
    gen = torch.Generator().manual_seed(EVAL_SEED)
    loss_sum, correct, n = 0.0, 0, 0
    for x, y in DataLoader(data, batch_size=batch_size, shuffle=False):
        y = y.to(device)
        out = run_model(model, x, cfg, temporal, gen, device)
        loss_sum += float(compute_loss(cfg.loss, out, y, cfg.tet_lambda, readout=cfg.readout)) * len(y)
        correct += int((predict(out) == y).sum())
        n += len(y)
    return {"loss": loss_sum / max(n, 1), "acc": correct / max(n, 1)}


def input_feasible(model: SpikingNet, data, cfg: TrainConfig) -> Dict[str, torch.Tensor]:
    """``{first-layer weight name: (1, in) bool}``: the inputs that are not 0 in every training sample.

    Only for a first Linear layer fed by the (flattened) static input: a weight from an input that is
    always 0 never receives a gradient, so a mask position there holds budget and does nothing. Event
    data sets are not scanned (reading every sample's events just for this costs too much).
    """
    if not cfg.sparsity.exclude_dead_inputs or data.temporal or cfg.sparsity.method == "dense":
        return {}
    return feasible_inputs(model, DataLoader(data.train, batch_size=1024, shuffle=False))


def qat_views(model: SpikingNet, data, cfg: TrainConfig) -> Dict[str, LoihiView]:
    """The Loihi grid of each synapse layer for quantisation-aware training (:func:`train.quant.loihi_views`).

    The first layer's input is described as ``esl simulate`` will quantise it: direct-encoded static data
    are scanned once for their range and the input scale that holds them exactly as integers
    (:func:`exact_input_scale`, digits: 16, MNIST: 255); rate-encoded input is spikes; event frames are not scanned
    (their integer range is not known before the test data are), so that layer keeps the threshold
    and bias grid without width limits.
    """
    if not cfg.weight_bits:
        return {}
    if data.temporal or cfg.encoding != "direct":
        return loihi_views(model, input_frac_bits=None if data.temporal else 0, graded_input=data.temporal)
    scale, lo, hi = 1.0, 0.0, 1.0
    for x, _ in DataLoader(data.train, batch_size=4096, shuffle=False):
        x = x.double().numpy()
        lo, hi = min(lo, float(x.min())), max(hi, float(x.max()))
        scale = join_input_scales(scale, exact_input_scale(x)) if scale is not None else None
    return loihi_views(model, input_scale=scale, x_lo=lo, x_hi=hi)


def _peak_rss_mib() -> Optional[float]:
    """This process's peak resident set size so far, MiB; None where unknown. Linux: ``VmHWM`` of
    /proc/self/status (this program's own; ``ru_maxrss`` also holds the peak of a parent it was forked
    from), elsewhere ``ru_maxrss``."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 2 ** 10  # kB
    except OSError:
        pass
    try:
        import resource
    except ImportError:  # not on POSIX
        return None
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kib / (2 ** 20 if sys.platform == "darwin" else 2 ** 10)  # macOS reports bytes


def _densities(engine: MaskEngine) -> dict:
    """Nonzero-weight and mask densities, global and per layer, under the names the reports use."""
    nz, nz_layer = engine.weight_density()
    return {"density": nz, "mask_density": engine.density(), "layer_density": nz_layer,
            "layer_mask_density": engine.layer_density()}


def estimate_train_bytes(spec: ModelSpec, cfg: TrainConfig) -> int:
    """A rough peak-memory estimate of training, made without building the full network.

    The network is built at ``width <= 1`` (cheap) and scaled: parameters ~ width^2, neurons ~ width.
    Parameters cost ~6 float32 copies (weight, gradient, dense gradient, two Adam moments, mask and
    regrowth state); activations ~6 float32 tensors per neuron and step of a batch kept for BPTT.
    """
    from esl_deploy.neurons import LI, LIF
    if is_factory(spec.name):  # a user model: build it and count the neurons of one step
        with torch.random.fork_rng(devices=[]):
            model = build_model(spec)
        params = sum(p.numel() for p in model.parameters())
        layers, _ = run_snntorch(model, torch.zeros(1, 1, *spec.input_shape))
        neurons = sum(l[0, 0].numel() for l in layers) + int(np.prod(spec.input_shape))
        return int(params * 4 * 6 + cfg.T * cfg.batch_size * neurons * 4 * 6)
    w0 = min(1.0, spec.width)
    with torch.random.fork_rng(devices=[]):  # building it must not move the seeded RNG of the real model
        small = build_model(ModelSpec(**{**spec.to_dict(), "width": w0}))
    params = sum(p.numel() for p in small.parameters()) * (spec.width / w0) ** 2
    neurons = sum(int(np.prod(m.neuron_shape)) for m in small.modules() if isinstance(m, (LIF, LI)))
    neurons = neurons * spec.width / w0 + int(np.prod(spec.input_shape))
    return int(params * 4 * 6 + cfg.T * cfg.batch_size * neurons * 4 * 6)


def kept_model(epoch: int, val_acc: float, state: dict, engine: MaskEngine, dens: dict) -> dict:
    """The record of a best-on-validation model. Its masks are the engine's masks without the positions
    whose weight is exactly 0 (connections regrown at 0 that received no gradient since): a weight of 0
    is no connection on a chip, so the saved mask, its density and the nonzero weights agree.
    ``untrained_dropped`` counts those positions; ``mask_density`` stays the budget the method held."""
    masks, dropped = {}, 0
    for name, m in engine.masks.items():
        key = name if name in state else None
        kept = m.cpu() & (state[key].cpu() != 0) if key else m.cpu().clone()
        dropped += int(m.sum()) - int(kept.sum())
        masks[name] = kept
    return {"epoch": epoch, "val_acc": val_acc, "model": state, "masks": masks, "untrained_dropped": dropped,
            **dens}


def steps_per_epoch(n_train: int, batch_size: int) -> int:
    return (n_train + batch_size - 1) // batch_size


LOCK_FILE = ".esl-train.lock"


def check_run_folder(out: Path, resume: bool, force: bool) -> None:
    """Refuse to overwrite an existing run unless ``force``; ``resume`` needs a checkpoint to continue.
    Checks only: nothing is deleted here (a new run replaces the old one's files with its first checkpoint,
    see :func:`swap_in`)."""
    if str(out) in ("", "."):
        raise EslError("--out must name a run folder (not the current directory)")
    if resume:
        if force:
            raise EslError("--resume and --force contradict each other: choose one")
        if not (out / "checkpoint.pt").is_file():
            raise EslError(f"nothing to resume: {out / 'checkpoint.pt'} does not exist")
        return
    if out.exists() and not out.is_dir():
        raise EslError(f"run folder {out} exists and is not a folder")
    if out.is_dir() and any(not _ours_to_ignore(p) for p in out.iterdir()) and not force:
        raise EslError(f"run folder {out} already exists; use --force to overwrite or --resume to continue")


# A --force run writes here until its first checkpoint, so the run it replaces stays whole until then.
STAGING = ".esl-staging"
SWAP_MARKER = ".swap"  # in STAGING: the names being moved into the run folder (the swap has begun)


def _ours_to_ignore(p: Path) -> bool:
    """The lock file, temporary files of an atomic write cut short (``.NAME.<random>.tmp``) and the staging
    folder of a --force run that never reached its first checkpoint: a folder holding only these (a run
    killed during its first epoch or first checkpoint write) counts as empty."""
    return (p.name in (LOCK_FILE, STAGING) or
            (p.name.startswith(".") and p.name.endswith(".tmp") and p.is_file() and not p.is_symlink()))


def remove_stale_temp_files(out: Path) -> None:
    """Temporary files of writers that died (called while holding the folder's lock: no live writer)."""
    for p in out.iterdir():
        if p.name not in (LOCK_FILE, STAGING) and _ours_to_ignore(p):
            p.unlink(missing_ok=True)


def lock_run_folder(out: Path):
    """An exclusive ``flock`` on ``out/.esl-train.lock``, held while the run trains (released when the
    returned file is closed or the process dies); a second run into the same folder is refused.

    The lock file is opened without following a symbolic link (``O_NOFOLLOW``) and must be a regular file
    with no other name (a hard link): anyone who can write the folder could plant either to make the
    lock write into someone else's file. It is never truncated: this process's pid is written over its
    first bytes once the lock is held."""
    import fcntl
    import os
    import stat
    try:
        out.mkdir(parents=True, exist_ok=True)
        fd = os.open(out / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, 0o644)
    except OSError as e:
        import errno
        if e.errno == errno.ELOOP:
            raise EslError(f"{out / LOCK_FILE} is a symbolic link, not a regular file: remove it (esl never "
                           f"writes through a link)") from None
        raise EslError(f"cannot use run folder {out}: {e.strerror or e}") from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:
        os.close(fd)
        what = "has other names (hard links)" if stat.S_ISREG(st.st_mode) else "is not a regular file"
        raise EslError(f"{out / LOCK_FILE} {what}: remove it (esl writes its lock into its own file only)")
    f = os.fdopen(fd, "r+")
    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        holder = f.readline(200).strip() or "another process"
        f.close()
        raise EslError(f"run folder {out} is in use by another esl train ({holder}); wait for it or choose "
                       f"another --out") from None
    os.pwrite(fd, f"pid {os.getpid()}\n".encode(), 0)
    return f


def missing_folders(out: Path) -> List[Path]:
    """``out`` and the folders above it that do not exist yet (:func:`lock_run_folder` makes them), deepest
    first."""
    return [p for p in (out, *out.parents) if not p.exists() and not p.is_symlink()]


def release_run_folder(out: Path, lock, made: List[Path]) -> None:
    """Close ``lock``; when this process made the run folder (``made``: :func:`missing_folders` before the
    lock) and it holds nothing of a run (only the lock and leftovers :func:`_ours_to_ignore` ignores),
    remove it and the empty folders made above it: a refused run leaves no folder behind."""
    try:
        recover_staging(out)  # a run that stopped before its first checkpoint: its staging goes
        if out in made and out.is_dir() and all(_ours_to_ignore(p) for p in out.iterdir()):
            shutil.rmtree(out / STAGING, ignore_errors=True)
            for p in out.iterdir():
                p.unlink(missing_ok=True)
            for folder in made:
                folder.rmdir()
    except OSError:
        pass
    finally:
        lock.close()


def recover_staging(out: Path) -> None:
    """Under the lock: finish or undo what a killed --force run left in ``out/.esl-staging``. A swap that had
    begun (its marker is written) is completed; otherwise the staging folder is removed and the run that
    was there before stays as it was."""
    stage = out / STAGING
    if stage.is_symlink() or (stage.exists() and not stage.is_dir()):
        stage.unlink()
    elif stage.is_dir():
        if (stage / SWAP_MARKER).is_file():
            _complete_swap(out, stage)
        else:
            shutil.rmtree(stage)


def swap_in(out: Path, stage: Path) -> None:
    """Replace the old run in ``out`` by the new one in ``stage`` (which has its first checkpoint): write the
    marker naming the new files, then :func:`_complete_swap` (which a later run finishes if this is killed)."""
    names = sorted(p.name for p in stage.iterdir() if p.name in RUN_FILES)
    atomic_write_text(stage / SWAP_MARKER, "\n".join(names) + "\n")
    _complete_swap(out, stage)


def _complete_swap(out: Path, stage: Path) -> None:
    import os
    names = (stage / SWAP_MARKER).read_text().split()
    for name in RUN_FILES:  # the old run's files the new one has not written (yet): summary, plots
        if name not in names:
            (out / name).unlink(missing_ok=True)
    for name in names:
        if (stage / name).is_file():
            os.replace(stage / name, out / name)
    shutil.rmtree(stage)


class Diverged(Exception):
    """The training loss, a gradient or a weight became NaN or infinite, or an update overflowed float32
    (reported by :func:`train` as a one-line error)."""


def any_non_finite(tensors: List[torch.Tensor]) -> torch.Tensor:
    """A 0-d bool tensor: does any of ``tensors`` hold a NaN or an infinity? (No host sync: the caller
    reads it once per step together with other flags.)"""
    if not tensors:
        return torch.zeros((), dtype=torch.bool)
    return torch.stack([~torch.isfinite(t).all() for t in tensors]).any()


def train(cfg: TrainConfig, out: str | Path, *, resume: bool = False, force: bool = False, progress: bool = True,
          on_epoch_end: Optional[Callable[[int, dict], None]] = None, options_file: Optional[str] = None,
          world: Optional[World] = None) -> Optional[dict]:
    """Train as configured into run folder ``out``; returns the summary (also in summary.json).

    Everything is checked and set up (device, data, model, resumed state) before the folder is touched,
    and a new run writes into ``out/.esl-staging`` until its first checkpoint: only then do its files
    replace those of the run that was there (``force``), so a run that fails, diverges or is killed in
    its first epoch leaves the old run as it was (and a refused run in a new folder leaves no folder).
    The folder is locked against a second ``esl train`` for as long as this one runs. ``options_file``
    (the command line's options as TOML) is written to ``config.toml`` with the first checkpoint.

    ``world``: this process's place in a distributed run (:mod:`train.distributed`; from
    :func:`~train.distributed.world_from_env` under torchrun). Rank 0 writes the run folder and returns
    the summary; the other ranks return None."""
    out = Path(out)
    world = world or World()
    if not world.distributed:
        check_run_folder(out, resume, force)
        device = resolve_device(cfg.device)  # before the folder is made: a refused device leaves nothing
        lock, made = open_run_folder(out)
        try:
            return _train_locked(cfg, out, resume=resume, force=force, progress=progress, on_epoch_end=on_epoch_end,
                                 options_file=options_file, world=world, device=device)
        finally:
            release_run_folder(out, lock, made)
    check_batch_size(cfg.batch_size, world)  # before the rendezvous: every process stops alike, none waits
    device = process_device(resolve_device(cfg.device), world)
    try:
        init_process_group(world, device)
    except (RuntimeError, ValueError) as e:  # the rendezvous failed: an address, a port, a timeout
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise EslError(f"cannot join the other training processes (rank {world.rank} of {world.size}): "
                       f"{reason[:300]}") from None
    lock, made = None, []
    try:
        check_same_options((cfg.identity(), str(out), resume, force), world)
        with together(world):
            if world.main:
                check_run_folder(out, resume, force)
                lock, made = open_run_folder(out)
        summary = _train_locked(cfg, out, resume=resume, force=force, progress=progress and world.main,
                                on_epoch_end=on_epoch_end, options_file=options_file, world=world, device=device)
    except RuntimeError as e:
        if not peer_lost(e):
            raise
        raise EslError(f"rank {world.rank}: another training process stopped (torchrun's report names it); the run "
                       f"continues from its last completed epoch with --resume") from None
    finally:
        if lock is not None:
            release_run_folder(out, lock, made)
    # Only after success: on an error every rank reports at once, and the group ends with the process
    # (tearing it down first can wait for a rank that already stopped, and torchrun ends the others).
    close_process_group()
    return summary


def open_run_folder(out: Path):
    """Make and lock ``out`` (:func:`lock_run_folder`), then clean up after a killed run: finish or undo its
    staging (:func:`recover_staging`), remove its temporary files. Returns the lock and the folders made."""
    made = missing_folders(out)
    lock = lock_run_folder(out)
    try:
        recover_staging(out)
        remove_stale_temp_files(out)
    except BaseException:
        release_run_folder(out, lock, made)
        raise
    return lock, made


def _read_resume_state(out: Path, cfg: TrainConfig) -> dict:
    """The checkpoint to continue from, checked against ``cfg``."""
    state = read_checkpoint(out / "checkpoint.pt")
    diff = config_diff(state["config"], cfg.to_dict())
    diff = [k for k in diff if k.split(".")[0] not in ("device", "data_dir")]
    if diff:
        raise EslError(f"--resume with a different config than the run in {out}: {', '.join(diff)} differ")
    if state.get("summary") is not None and state["epoch"] >= cfg.epochs and (out / "summary.json").is_file():
        raise EslError(f"run in {out} already finished ({state['epoch']} epochs); nothing to resume")
    return state  # finished without summary.json: it was stopped while writing its final files


def _data_parallel(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """DDP around ``model``. On GPUs BatchNorm becomes SyncBatchNorm (statistics of the global batch, as one
    process computes them; same parameters and state_dict keys); gloo has no SyncBatchNorm, so on CPUs
    each process normalises by its shard's statistics and DDP hands rank 0's running statistics to all."""
    from torch.nn.parallel import DistributedDataParallel

    has_bn = any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules())
    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None,
                                   broadcast_buffers=has_bn)


def _train_locked(cfg: TrainConfig, out: Path, *, resume: bool, force: bool, progress: bool,
                  on_epoch_end: Optional[Callable[[int, dict], None]], options_file: Optional[str], world: World,
                  device: torch.device) -> Optional[dict]:
    with together(world):
        data = load_dataset(cfg.dataset, cfg.data_dir, T=cfg.T, frame_size=cfg.frame_size)
        torch.manual_seed(cfg.seed)
        random.seed(cfg.seed)
        np.random.seed(cfg.seed)
        beta = hardware_beta(cfg.beta) if cfg.weight_bits else cfg.beta  # quantisation-aware: Loihi's decay grid
        try:
            factory_dir = None
            if is_factory(cfg.model):  # a user model, imported as the user named it, recorded with its folder
                if world.distributed:
                    raise EslError(f"--model {cfg.model}: distributed training of user models is not supported by "
                                   "esl train; use esl_deploy.Sparsifier in your own DDP loop")
                import_factory(cfg.model)
                factory_dir = factory_dir_of(cfg.model)
            spec = ModelSpec(cfg.model, data.input_shape, data.num_classes, width=cfg.width, beta=beta,
                             threshold=cfg.threshold, readout=cfg.readout, factory_dir=factory_dir)
            check_memory(estimate_train_bytes(spec, cfg), "training")
            model = build_model(spec).to(device)
        except ValueError as e:
            raise EslError(f"model {cfg.model!r} on {cfg.dataset} {data.input_shape}: {e}") from None
        if world.distributed and device.type == "cuda":
            model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
        state = _read_resume_state(out, cfg) if resume and world.main else None
    optimizer = make_optimizer(model, cfg)
    lr_sched = torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=lr_gamma(cfg))
    spe = steps_per_epoch(len(data.train), cfg.batch_size)
    feasible = input_feasible(model, data, cfg)
    engine = MaskEngine(model, optimizer, cfg.sparsity, total_steps=cfg.epochs * spe, seed=cfg.seed + 1,
                        steps_per_epoch=spe, feasible=feasible, mask_in_hook=not world.distributed,
                        on_rewire=rewire_check(world),
                        layers=weights_of(model) if is_factory(spec.name) else None)  # user models: as the API
    dead_inputs = sum(int((~ok).sum()) for ok in feasible.values())
    views = qat_views(model, data, cfg)  # {} without --weight-bits

    start_epoch, history, best, wall = 0, [], None, 0.0
    if resume:
        state = broadcast_object(state, world)  # rank 0 read it: the run folder need not be shared
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        lr_sched.load_state_dict(state["lr_scheduler"])
        engine.load_state_dict(state["engine"])
        start_epoch, history, best, wall = state["epoch"], list(state["history"]), state["best"], state["wall_time"]
        if state.get("summary") is not None and start_epoch >= cfg.epochs:  # stopped while writing its final files
            if world.main:
                _write_final_files(out, cfg, history, state["summary"], state)
            return state["summary"] if world.main else None
    # A new run writes into the staging folder until its first checkpoint, then replaces the files of the
    # run that was in ``out`` (swap_in); a resumed run writes in place.
    stage = out / STAGING if world.main and not resume else None
    if stage is not None:
        stage.mkdir()
    if options_file is not None and world.main:
        atomic_write_text((stage or out) / "config.toml", options_file)
    net = _data_parallel(model, device) if world.distributed else model

    for epoch in range(start_epoch, cfg.epochs):
        t0 = time.perf_counter()
        try:
            row = _train_epoch(model, optimizer, engine, data, cfg, epoch, device, progress, world=world, net=net,
                               views=views)
        except Diverged as e:
            kept = (f"the last good checkpoint (epoch {epoch}) is kept in {out / 'checkpoint.pt'}" if epoch
                    else "no epoch finished, so nothing was saved" +
                    (f"; the run that was in {out} is kept as it was" if (out / "checkpoint.pt").exists() else ""))
            raise EslError(f"training diverged: {e} ({kept}); try a smaller --lr") from None
        lr = optimizer.param_groups[0]["lr"]
        lr_sched.step()
        if not world.main:  # rank 0 validates and writes; the others go on to the next epoch's first step
            if on_epoch_end is not None:
                on_epoch_end(epoch + 1, row)
            continue
        with quantized_weights(model, cfg.weight_bits, views):
            val = evaluate(model, data.val, cfg, data.temporal, device)
        dens = _densities(engine)
        row.update(epoch=epoch + 1, val_loss=val["loss"], val_acc=val["acc"], lr=lr,
                   density=dens["density"], mask_density=dens["mask_density"],
                   **{f"density/{n}": d for n, d in dens["layer_density"].items()})
        # Keep the best on validation among epochs whose sparsity is final: for pq and magnitude the
        # density still falls until the last pruning, and an earlier, denser model is not the result.
        if engine.structure_final and (best is None or val["acc"] > best["val_acc"]):
            best = kept_model(epoch + 1, val["acc"], quantized_state(model, cfg.weight_bits, views), engine, dens)
        wall += time.perf_counter() - t0
        row["epoch_seconds"] = time.perf_counter() - t0
        history.append(row)
        _save(stage or out, cfg, spec, model, optimizer, lr_sched, engine, epoch + 1, history, best, wall, None)
        _write_metrics((stage or out) / "metrics.csv", history)
        if stage is not None:  # the new run has its first checkpoint: now it replaces the old one
            swap_in(out, stage)
            stage = None
        if progress:
            tqdm.write(f"epoch {epoch + 1}/{cfg.epochs}  loss {row['loss']:.4f}  train {row['train_acc']:.3f}  "
                       f"val {val['acc']:.3f}  density {dens['density']:.4f} (mask {dens['mask_density']:.4f})  "
                       f"rewired {row['rewired']}",
                       file=sys.stderr)
        if on_epoch_end is not None:
            on_epoch_end(epoch + 1, row)
    if not world.main:
        return None

    if best is None:  # the structure never became final (a pruning still pending when the run ended)
        best = kept_model(cfg.epochs, history[-1]["val_acc"], quantized_state(model, cfg.weight_bits, views), engine,
                          _densities(engine))
    best_model = build_model(spec).to(device)
    best_model.load_state_dict(best["model"])
    test = evaluate(best_model, data.test, cfg, data.temporal, device)
    summary = {
        "model": cfg.model, "dataset": cfg.dataset, "method": cfg.sparsity.method, "seed": cfg.seed,
        "epochs": cfg.epochs, "T": cfg.T, "encoding": cfg.encoding, "weight_bits": cfg.weight_bits,
        "target_density": cfg.sparsity.density if cfg.sparsity.method != "dense" else 1.0,
        "best_epoch": best["epoch"], "best_val_acc": best["val_acc"], "test_acc": test["acc"],
        "readout": cfg.readout, "loss": cfg.loss,
        "density": best["density"], "mask_density": best.get("mask_density", best["density"]),
        "layer_density": best["layer_density"], "layer_mask_density": best.get("layer_mask_density", {}),
        "final_density": _densities(engine)["density"], "final_mask_density": engine.density(),
        "dead_inputs_excluded": dead_inputs, "untrained_dropped": best.get("untrained_dropped", 0),
        "t_iter": engine.t_iter, "rewired_total": engine.rewired_total,
        "wall_time_s": wall, "seconds_per_epoch": wall / max(1, len(history)), "world_size": world.size,
        "peak_rss_mib": _peak_rss_mib(), "environment": environment(),
    }
    _save(out, cfg, spec, model, optimizer, lr_sched, engine, cfg.epochs, history, best, wall, summary)
    _write_final_files(out, cfg, history, summary, {"engine": engine.state_dict(), "best": best,
                                                    "model_spec": spec.to_dict(), "config": cfg.to_dict()})
    return summary


def _write_final_files(out: Path, cfg: TrainConfig, history: List[dict], summary: dict, ckpt: dict) -> None:
    """The files of a finished run beside its checkpoint: curves.png, the structure plots, and summary.json
    last, so a missing summary.json says the run was stopped before they were all written (``--resume``
    then writes them)."""
    _plot_curves(out / "curves.png", history, cfg)
    if ckpt["engine"].get("masks"):
        write_structure_plots(out, ckpt)
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2) + "\n")


def _train_epoch(model, optimizer, engine, data, cfg, epoch, device, progress, *, world: Optional[World] = None,
                 net: Optional[torch.nn.Module] = None, views: Optional[Dict[str, LoihiView]] = None) -> dict:
    """One epoch of training; returns its mean loss, training accuracy, connections rewired and seconds.

    With a distributed ``world`` the batches are this process's shards of the global batches
    (:class:`~train.distributed.ShardedBatches`: with one process, exactly the batches of a shuffled
    DataLoader), ``net`` is the DDP-wrapped ``model``, each shard's loss is weighted (see
    :mod:`train.distributed`), the gradients are masked after DDP's all-reduce, and the loss,
    accuracy and divergence check are those of the global batch (one all-reduce of two numbers per step)."""
    t0 = time.perf_counter()
    world = world or World()
    net = net or model
    model.train()
    n_train = len(data.train)
    loader = DataLoader(data.train, batch_sampler=ShardedBatches(n_train, cfg.batch_size,
                                                                 _seeded(cfg.seed, epoch, 1), world))
    enc_gen = _seeded(cfg.seed, epoch, 2)
    spe = steps_per_epoch(n_train, cfg.batch_size)
    freeze_at = math.ceil(BN_FREEZE * cfg.epochs * spe)  # --weight-bits: BatchNorm statistics frozen from this step
    loss_sum, correct, n, rewired = 0.0, 0, 0, 0
    bar = tqdm(loader, desc=f"epoch {epoch + 1}/{cfg.epochs}", leave=False, disable=not progress, unit="batch")
    for i, (x, y) in enumerate(bar):
        shard = shard_rows(min(cfg.batch_size, n_train - i * cfg.batch_size), world)
        y = y.to(device)
        optimizer.zero_grad(set_to_none=True)
        # straight-through: gradients of the grid values; BatchNorm folded (train.quant), frozen after BN_FREEZE
        with quantized_weights(model, cfg.weight_bits, views, bn_frozen=epoch * spe + i >= freeze_at):
            out = run_model(net, x, cfg, data.temporal, enc_gen, device, rows=(shard.start, shard.total))
            loss = compute_loss(cfg.loss, out, y, cfg.tet_lambda, readout=cfg.readout)
            hits = (predict(out.detach()) == y).sum() if shard.rows else torch.zeros((), device=device)
            step = all_sum(torch.stack([loss.detach() * shard.weight, hits.to(loss.dtype)]), world)
            global_loss = float(step[0]) / world.size
            if not math.isfinite(global_loss):
                raise Diverged(f"loss is {global_loss} at epoch {epoch + 1}, step {i + 1}")
            (loss * shard.weight if shard.weight != 1.0 else loss).backward()
        if world.distributed:
            engine.mask_gradients()  # after DDP's all-reduce: the dense gradient kept is the global one
        params = [p for p in model.parameters() if p.grad is not None]
        bad_grad = any_non_finite([p.grad for p in params])
        try:
            optimizer.step()
        except RuntimeError as e:  # lr * update beyond float32 (--lr 1e39): the step cannot even be taken
            if "overflow" not in str(e):
                raise
            raise Diverged(f"the update overflows float32 at epoch {epoch + 1}, step {i + 1} (learning rate "
                           f"{optimizer.param_groups[0]['lr']:g})") from None
        bad_grad, bad_weight = torch.stack([bad_grad, any_non_finite(params)]).tolist()  # one sync per step
        if bad_grad or bad_weight:  # the loss can stay finite (spike counts) while the weights blow up
            what = "a gradient" if bad_grad else "the weights after the update"
            raise Diverged(f"{what} became NaN or infinite at epoch {epoch + 1}, step {i + 1}")
        rewired += engine.step(epoch_start=i == 0)
        loss_sum += global_loss * shard.total
        correct += int(step[1])
        n += shard.total
        bar.set_postfix(loss=f"{loss_sum / n:.4f}", acc=f"{correct / n:.3f}")
    return {"loss": loss_sum / n, "train_acc": correct / n, "rewired": rewired,
            "train_seconds": time.perf_counter() - t0}


def _save(out, cfg, spec, model, optimizer, lr_sched, engine, epoch, history, best, wall, summary) -> None:
    save_checkpoint(out / "checkpoint.pt", {
        "config": cfg.to_dict(), "model_spec": spec.to_dict(), "model": model.state_dict(),
        "optimizer": optimizer.state_dict(), "lr_scheduler": lr_sched.state_dict(),
        "engine": engine.state_dict(), "epoch": epoch, "history": history, "best": best,
        "wall_time": wall, "summary": summary,
    })


def _write_metrics(path: Path, history: List[dict]) -> None:
    atomic_write_csv(path, history)


def _plot_curves(path: Path, history: List[dict], cfg: TrainConfig) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ep = [r["epoch"] for r in history]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    axes[0].plot(ep, [r["loss"] for r in history], label="train")
    axes[0].plot(ep, [r["val_loss"] for r in history], label="validation")
    axes[0].set(title="loss", xlabel="epoch")
    axes[1].plot(ep, [r["train_acc"] for r in history], label="train")
    axes[1].plot(ep, [r["val_acc"] for r in history], label="validation")
    axes[1].set(title="accuracy", xlabel="epoch")
    for key in history[0]:
        if key.startswith("density/"):
            axes[2].plot(ep, [r[key] for r in history], label=key.split("/", 1)[1], lw=1)
    axes[2].plot(ep, [r["density"] for r in history], label="global", color="k", lw=2)
    axes[2].set(title="connection density", xlabel="epoch", ylim=(0, 1.05))
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(f"{cfg.model} on {cfg.dataset}, method {cfg.sparsity.method}, seed {cfg.seed}")
    fig.tight_layout()
    save_png(fig, path)
