"""Inputs that are not one of the project's data sets: a user's array file, or random spikes of a graph's
input shape (``esl simulate`` / ``esl energy`` ``--input FILE.npy`` and ``--random-spikes RATE``).

Both give the time-major float32 array ``x`` of shape ``(T, N, *input_shape)`` the simulators and cost
models take (step, sample, then one sample's shape in torch order ``C, H, W``):

- :func:`load_input_array`: a ``.npy`` file of exactly that shape, read without pickles; its header is
  checked (shape, dtype, the bytes it declares against the file's size and the memory available)
  before the data are read, and NaN or infinite values are refused.
- :func:`random_spikes`: Bernoulli spikes, ``x[t, n, i] = 1`` with probability ``rate``, drawn from a
  generator seeded with ``seed`` (the same array every run).
"""
from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Sequence, Tuple, Union

import numpy as np
import torch

from .errors import EslError
from .resources import check_memory


def _checked_shape(shape: Tuple[int, ...], input_shape: Sequence[int], what: str) -> None:
    want = tuple(int(s) for s in input_shape)
    if len(shape) != len(want) + 2 or tuple(shape[2:]) != want or shape[0] < 1 or shape[1] < 1:
        raise EslError(f"{what} has shape {tuple(shape)}; the network takes (T, N, {', '.join(map(str, want))}) "
                       "(time steps, samples, then one sample's shape)")


def load_input_array(path: Union[str, os.PathLike], input_shape: Sequence[int]) -> np.ndarray:
    """The array in ``path`` (a ``.npy`` file of shape ``(T, N, *input_shape)``) as float32; EslError when it is
    not a regular ``.npy`` file, holds objects, has another shape, declares more data than it holds or
    than memory can take, or holds NaN/inf."""
    path = Path(path)
    try:
        info = path.stat()
    except OSError as e:
        raise EslError(f"--input {path}: {e.strerror or e}") from None
    if not stat.S_ISREG(info.st_mode):
        raise EslError(f"--input {path}: not a regular file")
    try:
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                           else np.lib.format.read_array_header_2_0)
            shape, fortran, dtype = read_header(f, max_header_size=10000)  # the header only
            offset = f.tell()
    except (ValueError, OSError, EOFError) as e:
        raise EslError(f"--input {path}: not a .npy array file ({str(e).splitlines()[0][:200]})") from None
    if dtype.hasobject or dtype.kind not in "biuf":
        raise EslError(f"--input {path}: holds {dtype} values; numbers are needed")
    _checked_shape(tuple(shape), input_shape, f"--input {path}")
    count = int(np.prod(shape, dtype=np.int64))
    if offset + count * dtype.itemsize > info.st_size:
        raise EslError(f"--input {path}: the header declares {count:,} values, the file holds fewer (cut short?)")
    check_memory(count * (dtype.itemsize + 4) * 2, f"reading --input {path}", "pass fewer samples or steps")
    data = np.load(path, allow_pickle=False)
    with np.errstate(all="ignore"):
        x = np.ascontiguousarray(data, dtype=np.float32)
    if not np.isfinite(x).all():
        raise EslError(f"--input {path}: holds NaN or infinite values (or values beyond float32)")
    return x


def random_spikes(rate: float, T: int, samples: int, input_shape: Sequence[int], seed: int = 0) -> np.ndarray:
    """Bernoulli spikes ``(T, samples, *input_shape)`` float32 of probability ``rate`` (see the module docstring)."""
    if not (isinstance(rate, (int, float)) and 0.0 <= rate <= 1.0):
        raise EslError(f"--random-spikes must be a spike probability in [0, 1], got {rate}")
    if T < 1 or samples < 1:
        raise EslError(f"--steps and --samples must be at least 1, got {T} and {samples}")
    shape = (int(T), int(samples), *(int(s) for s in input_shape))
    check_memory(int(np.prod(shape, dtype=np.int64)) * 4 * 3, "the random spikes", "pass fewer --samples or --steps")
    g = torch.Generator().manual_seed(int(seed))
    return (torch.rand(shape, generator=g) < rate).to(torch.float32).numpy()


def input_options(command):
    """The click options ``--input``, ``--random-spikes`` and ``--samples`` of ``esl simulate`` and ``esl energy``
    (passed as ``input_file``, ``random_spikes``, ``samples``)."""
    import click

    command = click.option("--samples", type=click.IntRange(min=1), default=16, show_default=True,
                           help="With --random-spikes: how many spike trains.")(command)
    command = click.option("--random-spikes", type=click.FloatRange(0, 1), default=None, metavar="RATE",
                           help="Use random spike trains of the network's input shape instead of a data set: each "
                                "input spikes with probability RATE per step (T from -T/--T, N from --samples).")(command)
    return click.option("--input", "input_file", type=click.Path(dir_okay=False), default=None,
                        help="Use these inputs instead of a data set: a .npy array (T, N, *input_shape), e.g. "
                             "spikes.")(command)


__all__ = ["input_options", "load_input_array", "random_spikes"]
