"""The environment a run or benchmark was made in: versions, CPU, math libraries and threads.

``environment()`` returns a plain JSON-able dict (stored in every results file and ``summary.json``)::

    python, platform, packages {torch, numpy, snntorch, lava-nc, ...: version or None},
    torch {version, cpu_capability (the ATen instruction set in use: AVX512, AVX2, DEFAULT, ...),
           num_threads, num_interop_threads, mkl {available, version}, mkldnn {available, enabled, version},
           cuda {available, version, devices}},
    cpu {model, count}, kernels (the CPU kernel choice: ``native`` or a pin of :mod:`esl_deploy.kernels`),
    env {ATEN_CPU_CAPABILITY, MKL_CBWR, ONEDNN_MAX_CPU_ISA, MKL_ENABLE_INSTRUCTIONS, OMP_NUM_THREADS,
         MKL_NUM_THREADS, ESL_CPU_KERNELS: only those that are set}

It reads and sets nothing else (no thread counts or flags are changed). The parts that cannot change
within a process (versions, CPU, build) are computed once and cached; the thread counts and the
environment variables are read on every call, since a script may change them after the first call.
"""
from __future__ import annotations

import copy
import functools
import os
import platform
import re
from importlib import metadata
from typing import Optional

from . import kernels

PACKAGES = ("torch", "numpy", "snntorch", "lava-nc", "lava-dl", "nir", "scipy", "scikit-learn")
ENV_VARS = ("ATEN_CPU_CAPABILITY", "MKL_CBWR", "ONEDNN_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS", "OMP_NUM_THREADS",
            "MKL_NUM_THREADS", "ESL_CPU_KERNELS")


def _version(dist: str) -> Optional[str]:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def cpu_model(cpuinfo: str = "/proc/cpuinfo") -> Optional[str]:
    """The CPU model name (first ``model name`` line of /proc/cpuinfo; ``platform.processor()`` elsewhere)."""
    try:
        with open(cpuinfo, encoding="utf-8", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() in ("model name", "Model", "cpu model") and value.strip():
                    return " ".join(value.split())
    except OSError:
        pass
    return platform.processor() or None


def _match(pattern: str, text: str) -> Optional[str]:
    m = re.search(pattern, text)
    return m.group(1).strip() if m else None


@functools.lru_cache(maxsize=1)
def _static() -> dict:
    import torch

    config = torch.__config__.show()
    cuda = {"available": torch.cuda.is_available(), "version": torch.version.cuda, "devices": []}
    if cuda["available"]:
        cuda["devices"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": {name: _version(name) for name in PACKAGES},
        "torch": {
            "version": str(torch.__version__),
            "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "mkl": {"available": torch.backends.mkl.is_available(),
                    "version": _match(r"Math Kernel Library Version ([^\n]*?)(?: for |\n|$)", config)},
            "mkldnn": {"available": torch.backends.mkldnn.is_available(),
                       "version": _match(r"MKL-DNN (v[0-9][^\s]*)", config)},
            "cuda": cuda,
        },
        "cpu": {"model": cpu_model(), "count": os.cpu_count()},
    }


def environment() -> dict:
    """The environment of this process as a JSON-able dict (a fresh copy on every call)."""
    import torch

    env = copy.deepcopy(_static())
    env["torch"]["num_threads"] = torch.get_num_threads()
    env["torch"]["num_interop_threads"] = torch.get_num_interop_threads()
    env["torch"]["mkldnn"]["enabled"] = bool(torch.backends.mkldnn.enabled)
    env["env"] = {k: os.environ[k] for k in ENV_VARS if k in os.environ}
    env["kernels"] = kernels.current()
    return env


def describe(env: dict) -> str:
    """One line naming the machine: ``CPU model (N CPUs; ATen AVX2, 2 threads, torch 2.3.1)``, with
    ``kernels pinned to avx2`` for a pinned run (the pin's own variables are not repeated)."""
    t = env.get("torch", {})
    cpu = env.get("cpu", {})
    parts = [f"ATen {t.get('cpu_capability', '?')}", f"{t.get('num_threads', '?')} threads",
             f"torch {t.get('version', '?')}"]
    pinned = kernels.KERNELS.get(env.get("kernels", "native"))
    own = {kernels.ENV_VAR}
    if pinned is not None and pinned.name != "native":
        parts.append(f"kernels pinned to {pinned.name}")
        own |= {k for k, v in pinned.env.items() if env.get("env", {}).get(k) == v}
    for k, v in env.get("env", {}).items():
        if k not in own:
            parts.append(f"{k}={v}")
    return f"{cpu.get('model') or 'unknown CPU'} ({cpu.get('count', '?')} CPUs; {', '.join(parts)})"
