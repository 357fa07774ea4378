"""Fuzzing the four commands' options: whatever the values, exit code 0 or 2, one line on error, never a
traceback, never a changed pre-existing file, and a bounded time per call."""
import hashlib
import math
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpers import run_cli
from esl_deploy.train.config import TrainConfig
from esl_deploy.train.trainer import train

NASTY = ["nan", "inf", "-inf", "-1", "0", "1e30", "-1e30", "", "abc", "1e-300", "2147483648", str(2 ** 70)]
small = st.sampled_from(NASTY + ["0.5", "1", "2", "0.3", "0.9"])


def _digest(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


@pytest.fixture(scope="module")
def existing(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz")
    train(TrainConfig(epochs=1, width=0.25), root / "run", progress=False)
    return root


def _check(code, err, folder, before, t0):
    assert code in (0, 2), err
    assert "Traceback" not in err
    if code == 2:
        lines = [l for l in err.splitlines() if l.strip()]
        assert len(lines) == 1 and lines[0].startswith("esl: error:"), err
    assert _digest(folder) == before  # the pre-existing run is untouched
    assert time.perf_counter() - t0 < 120


@settings(max_examples=30, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck))
@given(opt=st.sampled_from(["--lr", "--lr-end", "--density", "--width", "--beta", "--threshold", "--alpha",
                            "--t-end", "--prune-at", "--tet-lambda", "--regrow-std", "--pq-rho", "--pq-p",
                            "--T", "--batch-size", "--seed", "--t-iter"]),
       value=small)
def test_train_options(existing, capsys, opt, value):
    run = existing / "run"
    before = _digest(run)
    t0 = time.perf_counter()
    # --force at the pre-existing run: a value that fails must leave it as it was; one that trains
    # writes a new run, so point valid ones elsewhere (the check is on `run`)
    out = run if value in NASTY else existing / "other"
    code, _, err = run_cli(capsys, "train", "--epochs", "1", "--width", "0.25", "--out", out, "--force",
                           "--no-progress", opt, value)
    if out == run and code == 0:  # a nasty value that is valid for this option (e.g. --seed 0)
        before = _digest(run)
    _check(code, err, run, before, t0)


@settings(max_examples=20, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck))
@given(to=st.sampled_from(["nir", "onnx", "netx", "lava", "tflite", ""]), steps=small)
def test_export_options(existing, capsys, to, steps):
    run = existing / "run"
    before = _digest(run)
    t0 = time.perf_counter()
    args = ["export", run / "checkpoint.pt", "--to", to, "-o", existing / "out.bin", "--force"]
    if to == "onnx":
        args += ["-T", steps]
    code, _, err = run_cli(capsys, *args)
    _check(code, err, run, before, t0)


@settings(max_examples=20, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck))
@given(const=st.sampled_from(["truenorth.sop_pj", "truenorth.axons_per_core", "truenorth.neurons_per_core",
                              "truenorth.tick_ms", "loihi.sop_pj", "gpu.tdp_w", "nope"]), value=small)
def test_energy_constants(existing, capsys, const, value):
    run = existing / "run"
    before = _digest(run)
    t0 = time.perf_counter()
    code, _, err = run_cli(capsys, "energy", run / "checkpoint.pt", "--dataset", "digits", "--hw", "truenorth",
                           "--const", f"{const}={value}")
    _check(code, err, run, before, t0)


@settings(max_examples=10, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck))
@given(limit=small, backend=st.sampled_from(["snntorch", "lava", "bogus"]))
def test_simulate_options(existing, capsys, limit, backend):
    run = existing / "run"
    before = _digest(run)
    t0 = time.perf_counter()
    lim = limit if backend != "lava" else "3"  # keep Lava runs short
    code, _, err = run_cli(capsys, "simulate", run / "checkpoint.pt", "--backend", backend, "--dataset", "digits",
                           "--limit", lim)
    _check(code, err, run, before, t0)


def test_fuzzing_stayed_within_bounded_memory():
    """After the fuzz tests in this process: the peak resident memory stayed far below the machine's."""
    import resource
    peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20  # ru_maxrss is in KiB on Linux
    assert peak_gib < 8, f"peak RSS {peak_gib:.1f} GiB"
