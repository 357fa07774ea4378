"""Training on several processes (``torch.distributed``): who a process is, which rows of each global
batch it trains on, and the few collectives the trainer needs.

A run on N processes (started by ``torchrun``: it sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``MASTER_ADDR``, ``MASTER_PORT``) trains the network a single process trains with the same global
batch ``B`` (``--batch-size``), up to the rounding of the gradient all-reduce:

- every process builds the same model, optimizer and mask engine from the seed, and DDP
  (``DistributedDataParallel``; NCCL on GPUs, gloo on CPUs) starts them from rank 0's weights;
- every epoch's global batches are those of the single process (one permutation drawn from the
  generator seeded by (seed, epoch)); process r trains on the rows :func:`shard_rows` gives it, B/N of
  each full batch (so B must be a multiple of N; the last, shorter batch is split as evenly as it goes);
- the loss L_r of process r, a mean over its n_r rows of a batch of n, is weighted by w_r = n_r N / n,
  so the mean DDP takes of the N gradients is the gradient of the global batch's mean loss:
  (1/N) sum_r grad(w_r L_r) = grad(sum_r n_r L_r / n);
- the mask engine masks the gradients after DDP's all-reduce (``MaskEngine(mask_in_hook=False)``), so
  the dense gradients that drive regrowth (RigL's gradient, PQ's momentum, the positions that can
  learn) are the global ones, and random regrowth draws from the engine's generator, seeded alike on
  every process: every rewiring makes the same masks on every process. After each one this is checked
  (:func:`check_same_masks`: SHA-256 of the masks, gathered from every process).
- rank 0 alone holds the run folder's lock, validates, keeps the best model and writes the checkpoint,
  metrics, summary and plot; on ``--resume`` it reads the checkpoint and sends it to the other processes
  (the run folder need exist only on rank 0's machine).

Set-up steps that can fail with a user error run inside :func:`together`: an :class:`EslError` on one
process is raised on all of them, so none waits in a collective for a process that stopped.
"""
from __future__ import annotations

import hashlib
import os
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, Dict, Iterator, List, Mapping, Optional, Tuple

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Sampler

from esl_deploy.errors import EslError

RENDEZVOUS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
DIGEST_LOG = "ESL_MASK_DIGESTS"  # a folder: each process appends "<step> <sha256>" per rewiring to rank<R>.txt


@dataclass(frozen=True)
class World:
    """This process's place among the training processes (the default: one process, rank 0 of 1)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    def __post_init__(self):
        if self.size < 1:
            raise ValueError(f"world size must be at least 1, got {self.size}")
        if not 0 <= self.rank < self.size:
            raise ValueError(f"rank must lie in 0 .. {self.size - 1}, got {self.rank}")
        if self.local_rank < 0:
            raise ValueError(f"local rank must be >= 0, got {self.local_rank}")

    @property
    def main(self) -> bool:
        """Rank 0: the process that writes the run folder."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


def launched_by_torchrun(env: Mapping[str, str] = os.environ) -> bool:
    """True in a process that ``torchrun`` started (it sets ``TORCHELASTIC_RUN_ID`` for its workers)."""
    return bool(env.get("TORCHELASTIC_RUN_ID"))


def world_from_env(env: Mapping[str, str] = os.environ) -> World:
    """The :class:`World` the rendezvous variables describe; a missing or malformed one is an EslError."""
    missing = [k for k in RENDEZVOUS if not env.get(k, "").strip()]
    if missing:
        raise EslError(f"distributed training needs the rendezvous variable{'s' if len(missing) > 1 else ''} "
                       f"{', '.join(missing)}, which {'are' if len(missing) > 1 else 'is'} not set: start it with "
                       f"torchrun (torchrun --nproc-per-node N --no-python esl train ...) or set "
                       f"{', '.join(RENDEZVOUS)}")
    values = {}
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_PORT"):
        try:
            values[key] = int(env[key])
        except ValueError:
            raise EslError(f"rendezvous variable {key}={env[key]!r} is not an integer") from None
    if not 1 <= values["MASTER_PORT"] <= 65535:
        raise EslError(f"rendezvous variable MASTER_PORT={values['MASTER_PORT']} is not a port (1 .. 65535)")
    try:
        return World(rank=values["RANK"], size=values["WORLD_SIZE"], local_rank=values["LOCAL_RANK"])
    except ValueError as e:
        raise EslError(f"rendezvous variables RANK={values['RANK']}, WORLD_SIZE={values['WORLD_SIZE']}, "
                       f"LOCAL_RANK={values['LOCAL_RANK']}: {e}") from None


def check_batch_size(batch_size: int, world: World) -> None:
    """The global batch must split into equal shards: B mod N = 0."""
    if batch_size % world.size:
        raise EslError(f"--batch-size {batch_size} is not a multiple of the world size {world.size}: each of the "
                       f"{world.size} processes trains on batch-size / world-size samples of every global batch; "
                       f"choose a batch size divisible by {world.size}")


def process_device(device: torch.device, world: World) -> torch.device:
    """The device of this process: with several processes on GPUs, ``cuda:LOCAL_RANK`` (one GPU each)."""
    if not world.distributed or device.type != "cuda":
        return device
    if device.index is not None:
        raise EslError(f"--device {device} with {world.size} processes: each process uses the GPU of its local "
                       f"rank (cuda:LOCAL_RANK); pass --device cuda")
    if world.local_rank >= torch.cuda.device_count():
        raise EslError(f"local rank {world.local_rank} needs GPU cuda:{world.local_rank}, but this machine has "
                       f"{torch.cuda.device_count()}; start at most that many processes per node")
    torch.cuda.set_device(world.local_rank)
    return torch.device("cuda", world.local_rank)


def backend_for(device: torch.device) -> str:
    return "nccl" if device.type == "cuda" else "gloo"


COLLECTIVE_TIMEOUT = timedelta(minutes=30)  # the others wait this long for rank 0's validation and checkpoint


def init_process_group(world: World, device: torch.device) -> None:
    """Join the other processes (``env://`` rendezvous at MASTER_ADDR:MASTER_PORT). One timeout for both
    backends (NCCL's default is 10 minutes): while rank 0 validates and writes the checkpoint the other
    processes wait in the next step's all-reduce."""
    dist.init_process_group(backend_for(device), rank=world.rank, world_size=world.size, timeout=COLLECTIVE_TIMEOUT)


def close_process_group() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


PEER_LOST = ("Connection reset by peer", "Connection closed by peer", "Broken pipe")


def peer_lost(e: BaseException) -> bool:
    """True for the error a collective raises when another process died (gloo's socket errors)."""
    return isinstance(e, RuntimeError) and any(s in str(e) for s in PEER_LOST)


# -- the shard of a global batch -----------------------------------------------------------------------

@dataclass(frozen=True)
class Shard:
    """Rows ``start .. stop`` of a global batch of ``total`` rows, and the weight of their mean loss.

    ``weight`` = n_r N / n with n_r = stop - start (see the module docstring). A process whose share of
    a short last batch is empty trains on row ``start`` with weight 0 (its gradient is 0, and DDP needs
    every process in every step); ``rows`` is then 0.
    """

    start: int
    stop: int
    total: int
    weight: float

    @property
    def rows(self) -> int:
        return self.stop - self.start


def shard_rows(total: int, world: World) -> Shard:
    """Process r's rows of a batch of ``total``: the r-th of N contiguous pieces, sizes differing by at most 1,
    the larger first (q = total // N, rem = total % N: piece r has q + [r < rem] rows)."""
    q, rem = divmod(total, world.size)
    start = world.rank * q + min(world.rank, rem)
    stop = start + q + (1 if world.rank < rem else 0)
    if stop == start:
        return Shard(0, 0, total, 0.0)
    return Shard(start, stop, total, (stop - start) * world.size / total)


def global_batches(n: int, batch_size: int, generator: torch.Generator) -> Iterator[List[int]]:
    """The index batches of one epoch, exactly those of ``DataLoader(data, batch_size, shuffle=True,
    generator=generator)`` on ``n`` samples (the same DataLoader draws them, over ``range(n)``)."""
    for batch in DataLoader(range(n), batch_size=batch_size, shuffle=True, generator=generator):
        yield batch.tolist()


class ShardedBatches(Sampler):
    """A batch sampler: this process's rows (:func:`shard_rows`) of each global batch of one epoch."""

    def __init__(self, n: int, batch_size: int, generator: torch.Generator, world: World):
        self.n, self.batch_size, self.generator, self.world = n, batch_size, generator, world

    def __len__(self) -> int:
        return (self.n + self.batch_size - 1) // self.batch_size

    def __iter__(self) -> Iterator[List[int]]:
        for batch in global_batches(self.n, self.batch_size, self.generator):
            s = shard_rows(len(batch), self.world)
            yield batch[s.start:s.stop] if s.rows else batch[:1]


# -- collectives -----------------------------------------------------------------------------------------

def all_sum(t: torch.Tensor, world: World) -> torch.Tensor:
    """``t`` summed over the processes (in place)."""
    if world.distributed:
        dist.all_reduce(t)
    return t


def gather_objects(obj: Any, world: World) -> List[Any]:
    if not world.distributed:
        return [obj]
    out: List[Any] = [None] * world.size
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj: Any, world: World) -> Any:
    """Rank 0's ``obj`` on every process."""
    if not world.distributed:
        return obj
    box = [obj if world.main else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


@contextmanager
def together(world: World) -> Iterator[None]:
    """Run a set-up step (no collectives inside) on every process: if it raises an :class:`EslError` on any
    of them, every process raises that error (the lowest rank's), so no process waits for one that stopped."""
    error: Optional[str] = None
    try:
        yield
    except EslError as e:
        if not world.distributed:
            raise
        error = str(e)
    if world.distributed:
        errors = [e for e in gather_objects(error, world) if e is not None]
        if errors:
            raise EslError(errors[0])


def check_same_options(options: Any, world: World) -> None:
    """Every process must have been started with the same options (compared by their SHA-256)."""
    digest = hashlib.sha256(repr(options).encode()).hexdigest()
    digests = gather_objects(digest, world)
    if len(set(digests)) > 1:
        differ = [r for r, d in enumerate(digests) if d != digests[0]]
        raise EslError(f"the training processes were started with different options (ranks "
                       f"{', '.join(map(str, differ))} differ from rank 0); start every process with the same "
                       f"esl train options")


# -- masks -----------------------------------------------------------------------------------------------

def mask_digest(masks: Dict[str, torch.Tensor]) -> str:
    """SHA-256 over the masks (by name, in name order): equal digests, equal masks."""
    h = hashlib.sha256()
    for name in sorted(masks):
        m = masks[name].detach().to("cpu", torch.bool).contiguous()
        h.update(name.encode())
        h.update(repr(tuple(m.shape)).encode())
        h.update(m.numpy().tobytes())
    return h.hexdigest()


def check_same_masks(masks: Dict[str, torch.Tensor], step: int, world: World,
                     log: Optional[str] = None) -> str:
    """After a rewiring: gather every process's mask digest and stop if they differ (a bug, not a user
    error: RuntimeError). With ``log`` (a folder, from ``$ESL_MASK_DIGESTS``), append ``"<step> <digest>"``
    to ``log/rank<R>.txt``. Returns the digest."""
    digest = mask_digest(masks)
    if log:
        Path(log).mkdir(parents=True, exist_ok=True)
        with open(Path(log) / f"rank{world.rank}.txt", "a") as f:
            f.write(f"{step} {digest}\n")
    digests = gather_objects(digest, world)
    if len(set(digests)) > 1:
        raise RuntimeError(f"masks differ between the processes after the rewiring at step {step}: "
                           f"{', '.join(f'rank {r} {d[:12]}' for r, d in enumerate(digests))}")
    return digest


def rewire_check(world: World, env: Mapping[str, str] = os.environ):
    """The engine's ``on_rewire`` callback of this run: the mask check where there are several processes or
    a digest log is asked for (``$ESL_MASK_DIGESTS``), else None."""
    log = env.get(DIGEST_LOG) or None
    if not world.distributed and log is None:
        return None
    return lambda engine: check_same_masks(engine.masks, engine.t, world, log)

