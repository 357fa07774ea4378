"""Memory the machine can give: refuse work that would not fit, with one line, before it starts.

This is the one memory guard of every command: each estimates what it is about to allocate from what
it has read so far -- declared shapes and sizes in file headers, the time steps ``T``, the batch --
and calls :func:`check_memory` before allocating, so a small file that declares a huge network, or a
huge ``T``, is refused in one line instead of exhausting the machine. The budget is 90 % of the
memory available now (Linux ``MemAvailable``), and at most ``ESL_MEMORY_LIMIT`` when that is set
(bytes, or a number with a K/M/G/T suffix, powers of 1024: ``ESL_MEMORY_LIMIT=8G``).
"""
from __future__ import annotations

import os
import re
from typing import Callable, Dict, Iterable, Optional, Tuple

from .errors import EslError

LIMIT_VARIABLE = "ESL_MEMORY_LIMIT"
_UNITS = {"": 1, "K": 2 ** 10, "M": 2 ** 20, "G": 2 ** 30, "T": 2 ** 40}


def available_memory() -> Optional[int]:
    """Bytes of memory available to a new allocation (Linux ``MemAvailable``), or None if unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return None


def memory_limit() -> Optional[int]:
    """``ESL_MEMORY_LIMIT`` in bytes, or None when it is not set (a malformed value is an EslError)."""
    text = os.environ.get(LIMIT_VARIABLE, "").strip()
    if not text:
        return None
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?", text, flags=re.IGNORECASE)
    if m is None or float(m[1]) <= 0:
        raise EslError(f"{LIMIT_VARIABLE}={text!r} is not a size: give bytes or a number with K, M, G or T "
                       f"(e.g. {LIMIT_VARIABLE}=8G)")
    return int(float(m[1]) * _UNITS[m[2].upper()])


def memory_budget() -> Optional[int]:
    """Bytes a command may allocate: 90 % of the available memory, at most ``ESL_MEMORY_LIMIT``; None if
    neither is known."""
    have, limit = available_memory(), memory_limit()
    budgets = [b for b in (None if have is None else int(0.9 * have), limit) if b is not None]
    return min(budgets) if budgets else None


def check_memory(need: int, what: str, hint: str = "lower --T, --batch-size or --width") -> None:
    """Refuse (EslError) work whose estimated memory ``need`` (bytes) exceeds :func:`memory_budget`."""
    budget = memory_budget()
    if budget is not None and need > budget:
        limit = memory_limit()
        where = (f"the limit {LIMIT_VARIABLE} sets is {limit / 2 ** 30:.1f} GiB" if limit is not None and limit == budget
                 else f"this machine has {budget / 0.9 / 2 ** 30:.1f} GiB available")
        raise EslError(f"{what} needs about {need / 2 ** 30:.1f} GiB of memory, {where}; {hint}")


def elements(shape: Iterable[int]) -> int:
    """The number of entries of an array of ``shape`` (Python integers: no overflow)."""
    n = 1
    for s in shape:
        n *= max(int(s), 0)
    return n


def dry_shapes(build: Callable[[], object]) -> Optional[Dict[str, Tuple[int, ...]]]:
    """``{name: shape}`` of the state_dict of the module ``build()`` makes, found without allocating its
    tensors: while it runs, torch's factory functions make tensors of more than one element on the
    ``meta`` device (no memory; initialisers do nothing to them), scalars stay real so constructors may
    test them. None when the build does not run that way (it then is not a memory estimate)."""
    import torch
    from torch.overrides import TorchFunctionMode

    factories = {torch.empty, torch.zeros, torch.ones, torch.full, torch.rand, torch.randn, torch.empty_like,
                 torch.zeros_like, torch.ones_like, torch.full_like}

    class LargeOnMeta(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            if func in factories:
                out = func(*args, **{**kwargs, "device": "meta"})
                return out if out.numel() > 1 else func(*args, **kwargs)
            return func(*args, **kwargs)

    try:
        with torch.random.fork_rng(devices=[]), LargeOnMeta():
            module = build()
        return {name: tuple(t.shape) for name, t in module.state_dict().items()}
    except Exception:  # noqa: BLE001 -- whatever the build needs that meta tensors cannot do
        return None


def simulation_bytes(model, T: int, batch: int, kept: int = 0) -> int:
    """A rough upper estimate of the memory to run ``model`` (a SpikingNet) for ``T`` steps on ``batch``
    samples at a time -- the largest layer's activations in float64, four copies -- plus ``kept`` samples
    whose inputs (float32, four copies: encoded, concatenated, cast, the backend's) and spikes of every
    layer (uint8, a reference and a backend's) are kept to the end, as ``esl simulate`` keeps them."""
    from .neurons import LI, LIF

    sizes = [elements(m.neuron_shape) for m in model.modules() if isinstance(m, (LIF, LI))]
    spec = getattr(model, "spec", None)
    n_in = elements(spec.input_shape) if spec is not None else 0
    widest = max(sizes + [n_in])
    return int(T) * (int(batch) * widest * 8 * 4 + int(kept) * (n_in * 4 * 4 + sum(sizes) * 2))
