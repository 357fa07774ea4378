"""Pinned CPU kernels (esl_deploy.kernels, esl train --cpu-kernels): the pin is taken, recorded, refused in
one line where it cannot be, and a pinned run gives the same weights on this CPU natively and as an
AVX2-only CPU (ATen, MKL and oneDNN capped at AVX2 from outside, numpy's AVX-512 code paths off)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from esl_deploy import kernels
from esl_deploy.env import describe, environment
from esl_deploy.kernels import KERNELS, KernelPinError, pin

ROOT = Path(__file__).resolve().parents[1]
HAS_AVX2 = {"avx2", "fma"} <= (kernels.cpu_flags() or set())
# What an AVX2-only CPU gives the libraries (each caps its own dispatch at AVX2; numpy's off its AVX-512 paths).
AVX2_ONLY = {"ATEN_CPU_CAPABILITY": "avx2", "MKL_ENABLE_INSTRUCTIONS": "AVX2", "ONEDNN_MAX_CPU_ISA": "AVX2",
             "NPY_DISABLE_CPU_FEATURES": "AVX512F AVX512CD AVX512_SKX AVX512_CLX AVX512_CNL AVX512_ICL"}


@pytest.fixture
def clean_env(monkeypatch):
    """No pin in the environment; afterwards the environment exactly as it was (pin() writes os.environ, and
    monkeypatch restores only the variables it saw)."""
    saved = dict(os.environ)
    for k in (kernels.ENV_VAR, *KERNELS["avx2"].env):
        monkeypatch.delenv(k, raising=False)
    yield monkeypatch
    os.environ.clear()
    os.environ.update(saved)


def test_unknown_choice_is_one_line(clean_env):
    with pytest.raises(KernelPinError, match="unknown CPU kernels 'avx3'.*native, avx2"):
        pin("avx3")


def test_cpu_without_avx2_is_refused_before_anything_is_set(clean_env):
    with pytest.raises(KernelPinError, match="need avx2, fma, which this CPU lacks: use --cpu-kernels native"):
        pin("avx2", flags=frozenset({"sse2", "sse4_2"}))
    assert "ATEN_CPU_CAPABILITY" not in os.environ and kernels.ENV_VAR not in os.environ


def test_cpu_flags_reads_cpuinfo(tmp_path):
    f = tmp_path / "cpuinfo"
    f.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx avx2 fma avx512f\n\nprocessor\t: 1\nflags\t: fpu\n")
    assert kernels.cpu_flags(str(f)) == frozenset({"fpu", "sse2", "avx", "avx2", "fma", "avx512f"})
    assert kernels.cpu_flags(str(tmp_path / "absent")) is None


@pytest.mark.skipif(not HAS_AVX2 or torch.backends.cpu.get_cpu_capability() == "AVX2",
                    reason="needs a CPU whose native kernels are not AVX2 (this test process already chose them)")
def test_pin_after_the_kernels_were_chosen_says_so(clean_env):
    torch.ones(3).sum()  # this process has chosen its kernels
    with pytest.raises(KernelPinError, match=r"already runs its \w+ kernels .* ESL_CPU_KERNELS=avx2"):
        pin("avx2")
    assert not {"ATEN_CPU_CAPABILITY", "MKL_CBWR", "ONEDNN_MAX_CPU_ISA", kernels.ENV_VAR} & set(os.environ)


def test_native_changes_nothing_and_is_recorded(clean_env):
    threads = torch.get_num_threads()
    assert pin("native").env == {}
    assert torch.get_num_threads() == threads and environment()["kernels"] == "native"
    assert "ATEN_CPU_CAPABILITY" not in os.environ


def test_describe_names_the_pin_once():
    env = {"cpu": {"model": "Intel Xeon", "count": 2}, "kernels": "avx2",
           "torch": {"cpu_capability": "AVX2", "num_threads": 2, "version": "2.3.1"},
           "env": {**KERNELS["avx2"].env, kernels.ENV_VAR: "avx2", "OMP_NUM_THREADS": "2"}}
    assert describe(env) == ("Intel Xeon (2 CPUs; ATen AVX2, 2 threads, torch 2.3.1, kernels pinned to avx2, "
                             "OMP_NUM_THREADS=2)")


def _train(tmp_path: Path, name: str, extra_env: dict, *args) -> dict:
    out = tmp_path / name
    env = {k: v for k, v in os.environ.items() if k not in (kernels.ENV_VAR, *AVX2_ONLY, "MKL_CBWR")}
    env.update(extra_env)
    env["OMP_NUM_THREADS"] = "1"  # the pin raises it to 2
    r = subprocess.run([sys.executable, "-m", "esl_deploy.cli", "train", "--dataset", "digits", "--epochs", "3",
                        "--seed", "0", "--no-progress", "--out", str(out), *args],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    summary = json.loads((out / "summary.json").read_text())
    summary["weights"] = torch.load(out / "checkpoint.pt", weights_only=False)["model"]
    return summary


@pytest.mark.skipif(not HAS_AVX2, reason="needs an x86-64 CPU with AVX2 and FMA")
def test_pinned_run_is_the_same_natively_and_as_an_avx2_only_cpu(tmp_path):
    native = _train(tmp_path, "pinned", {}, "--cpu-kernels", "avx2")
    env = native["environment"]
    assert env["kernels"] == "avx2" and env["torch"]["cpu_capability"] == "AVX2"
    assert env["torch"]["num_threads"] == 2  # started with OMP_NUM_THREADS=1
    assert {k: env["env"][k] for k in KERNELS["avx2"].env} == dict(KERNELS["avx2"].env)
    # the same, started the way esl's benchmarks are (ESL_CPU_KERNELS), on a CPU capped at AVX2
    capped = _train(tmp_path, "capped", {**AVX2_ONLY, kernels.ENV_VAR: "avx2"})
    assert capped["environment"]["kernels"] == "avx2"
    assert native["weights"].keys() == capped["weights"].keys()
    for k, w in native["weights"].items():
        assert torch.equal(w, capped["weights"][k]), k
    assert native["test_acc"] == capped["test_acc"] and native["density"] == capped["density"]


def test_bad_choice_from_the_environment_is_one_line(tmp_path):
    env = {**os.environ, kernels.ENV_VAR: "avx3"}
    r = subprocess.run([sys.executable, "-m", "esl_deploy.cli", "energy", str(tmp_path / "none.pt")], cwd=ROOT,
                       env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "unknown CPU kernels 'avx3'" in r.stderr, r.stderr
