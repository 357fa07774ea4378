"""Which CPU kernels PyTorch runs: the native choice, or one pinned instruction set that any x86-64 CPU
with it reproduces bit for bit.

PyTorch picks its vectorised ATen kernels by the CPU's instruction set (``ATEN_CPU_CAPABILITY``:
``default``, ``avx2``, ``avx512``), MKL its GEMM code path (``MKL_CBWR``, conditional numerical
reproducibility) and oneDNN its convolution code (``ONEDNN_MAX_CPU_ISA``). Each choice sums floats in
another order, so the same training run ends in other last bits on an AVX-512 machine than on an
AVX2 one; through thresholds and mask rankings a few bits become another accuracy. Pinning all three to
AVX2 makes an AVX-512 CPU run the AVX2 code, so a figure made with the pin reproduces on every x86-64
CPU that has AVX2 and FMA (every Intel CPU since Haswell, 2013, and every AMD CPU since Excavator, 2015).

The thread count matters too, but only between one thread and several: on this project's digits run,
2, 3, 4, 8 and 16 intra-op threads gave identical weights and one thread others (a single thread takes
the sequential code paths). A pin therefore runs at least :attr:`KernelPin.min_threads` threads.

Kernels are chosen once per process, at the first operation that needs them (not at ``import torch``),
so :func:`pin` must run before the first tensor operation; it checks that PyTorch took the pinned set
and raises :class:`KernelPinError` when an earlier operation already chose another. The choice is
recorded in every ``summary.json`` and results file (:func:`esl_deploy.env.environment`,
``kernels``). GPU kernels are not affected.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Dict, Mapping, Optional, Tuple

from .errors import EslError

ENV_VAR = "ESL_CPU_KERNELS"  # the choice a process runs with; read by esl and the benchmarks


class KernelPinError(EslError):
    """The requested kernels cannot be used in this process or on this CPU."""


@dataclass(frozen=True)
class KernelPin:
    """One kernel choice: the environment that selects it and what the CPU must offer.

    ``aten`` is what ``torch.backends.cpu.get_cpu_capability()`` must report once pinned (None: no
    check); ``cpu_flags`` the /proc/cpuinfo flags the instruction set needs."""

    name: str
    env: Mapping[str, str] = field(default_factory=dict)
    aten: Optional[str] = None
    cpu_flags: Tuple[str, ...] = ()
    min_threads: int = 1
    doc: str = ""


KERNELS: Dict[str, KernelPin] = {
    "native": KernelPin("native", doc="whatever this CPU offers best (PyTorch's default; fastest, figures are "
                                       "this CPU type's)"),
    "avx2": KernelPin("avx2", {"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "AVX2", "ONEDNN_MAX_CPU_ISA": "AVX2"},
                      aten="AVX2", cpu_flags=("avx2", "fma"), min_threads=2,
                      doc="ATen, MKL and oneDNN on AVX2, at least 2 threads: the same bits on every x86-64 CPU "
                          "with AVX2 (the project's figures)"),
}


def cpu_flags(cpuinfo: str = "/proc/cpuinfo") -> Optional[frozenset]:
    """The instruction-set flags of the first CPU in /proc/cpuinfo (None where there is no such file)."""
    try:
        with open(cpuinfo, encoding="utf-8", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() in ("flags", "Features"):
                    return frozenset(value.split())
    except OSError:
        return None
    return frozenset()


def current() -> str:
    """The kernel choice this process was started or pinned with (``native`` when none)."""
    return os.environ.get(ENV_VAR, "native") or "native"


def pin(name: str, *, flags: Optional[frozenset] = None) -> KernelPin:
    """Run this process's CPU kernels as ``KERNELS[name]``: set its environment, raise the thread count to
    its minimum and check that PyTorch took it (:class:`KernelPinError` otherwise, one line).

    Call it before the first tensor operation; children (``subprocess``, ``torchrun`` workers) inherit it."""
    if name not in KERNELS:
        raise KernelPinError(f"unknown CPU kernels {name!r}: choose one of {', '.join(KERNELS)}")
    choice = KERNELS[name]
    if choice.cpu_flags:
        have = cpu_flags() if flags is None else flags
        if have is not None:
            missing = [f for f in choice.cpu_flags if f not in have]
            if missing:
                raise KernelPinError(f"CPU kernels {name!r} need {', '.join(missing)}, which this CPU lacks: "
                                     f"use --cpu-kernels native ({ENV_VAR}=native)")
    before = {k: os.environ.get(k) for k in (*choice.env, ENV_VAR)}
    os.environ.update(choice.env)
    os.environ[ENV_VAR] = name
    import torch

    if choice.aten is not None:
        got = torch.backends.cpu.get_cpu_capability()
        if got != choice.aten:
            for k, v in before.items():  # a refused pin leaves the environment as it was
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
            raise KernelPinError(f"PyTorch already runs its {got} kernels in this process, so {name!r} cannot be "
                                 f"pinned now: start the process with {ENV_VAR}={name}")
    if torch.get_num_threads() < choice.min_threads:
        torch.set_num_threads(choice.min_threads)
    return choice


def pin_from_env(default: str = "native") -> KernelPin:
    """:func:`pin` the choice named by ``ESL_CPU_KERNELS`` (or ``default``)."""
    return pin(os.environ.get(ENV_VAR) or default)
