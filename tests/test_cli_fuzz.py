"""Fuzzing the commands' options and inputs: whatever the values, exit code 0 or 2, one line on error, never a
traceback, never a changed pre-existing file, and a bounded time per call.

The second half feeds crafted inputs to fresh ``esl`` processes (:func:`helpers.run_esl_process`): NIR files and
checkpoints edited to lie (NaN weights, huge declared shapes and T, garbage metadata, missing keys, objects in
the pickle, truncation), FIFOs, symlinks and device nodes as inputs and outputs, non-finite and overflowing
learning rates. Each call must also stay within :data:`CALL_SECONDS` and its peak resident memory (the child's
own VmHWM) within :data:`PEAK_BYTES` while the memory guard may give the work :data:`MEMORY_ENV`.
"""
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



# -- crafted inputs, in fresh processes -------------------------------------------------------------------

import os  # noqa: E402
import shutil  # noqa: E402
import stat  # noqa: E402

import crafted  # noqa: E402
from helpers import run_esl_process  # noqa: E402

MEMORY_ENV = {"ESL_MEMORY_LIMIT": "1GiB"}  # the most the memory guard may give one command's work
PEAK_BYTES = 2 << 30  # a child's peak RSS: ~0.6 GiB of imports (torch, Lava) + at most the 1 GiB above
CALL_SECONDS = 60

NIR_EDITS = {
    "nan_weight": crafted.nan_weight, "inf_bias": crafted.inf_bias, "huge_weight": crafted.huge_weight,
    "huge_input": crafted.huge_input_shape, "T_1e7": crafted.metadata("T", 10 ** 7),
    "T_text": crafted.metadata("T", "abc"), "T_negative": crafted.metadata("T", -5),
    "dt_text": crafted.metadata("dt", "abc"), "dt_zero": crafted.metadata("dt", 0.0),
}
CHECKPOINT_EDITS = ("config_empty", "no_best_masks", "empty_initial_masks", "best_none", "width_15000",
                    "input_shape_huge", "T_1e7", "T_text", "nan_weight", "rewire_log_garbage")


def _tree(folder):
    """What is in ``folder``, without reading anything that is not a regular file (a FIFO would block):
    {name: sha256 | ("link", target) | file type}."""
    out = {}
    for p in sorted(folder.iterdir()):
        st = p.lstat()
        if stat.S_ISREG(st.st_mode):
            out[p.name] = hashlib.sha256(p.read_bytes()).hexdigest()
        elif stat.S_ISLNK(st.st_mode):
            out[p.name] = ("link", os.readlink(p))
        else:
            out[p.name] = stat.S_IFMT(st.st_mode)
    return out


@pytest.fixture(scope="module")
def inputs(existing):
    """A folder of crafted inputs beside the pre-existing run: NIR files, checkpoints, special files."""
    folder = existing / "crafted"
    folder.mkdir()
    ckpt = existing / "run" / "checkpoint.pt"
    good = folder / "good.nir"
    assert run_cli_quiet("export", ckpt, "--to", "nir", "-o", good) == 0
    for name, edit in NIR_EDITS.items():
        crafted.edit_nir(good, folder / f"{name}.nir", edit)
    conv = crafted.conv_nir(folder / "conv.nir")
    crafted.edit_nir(conv, folder / "stride_zero.nir", crafted.stride_zero("conv"))
    crafted.edit_nir(conv, folder / "pool_stride_zero.nir", crafted.stride_zero("pool"))
    (folder / "garbage.nir").write_bytes(bytes(range(256)) * 64)
    (folder / "truncated.nir").write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    for name in CHECKPOINT_EDITS:
        crafted.edit_checkpoint(ckpt, folder / f"{name}.pt", crafted.CHECKPOINT_EDITS[name])
    crafted.pickled_object_checkpoint(ckpt, folder / "pickled_object.pt")
    (folder / "truncated.pt").write_bytes(ckpt.read_bytes()[: ckpt.stat().st_size // 2])
    shutil.copy(ckpt, folder / "checkpoint.pt")
    for name in ("fifo.nir", "fifo.pt", "fifo.toml", "fifo_out.nir", "fifo_out.png"):
        os.mkfifo(folder / name)
    os.symlink(folder / "checkpoint.pt", folder / "link_to_checkpoint.pt")
    os.symlink(folder / "checkpoint.pt", folder / "link_out.nir")
    try:  # a character device like /dev/null (making one needs root)
        os.mknod(folder / "device_out.nir", 0o600 | stat.S_IFCHR, os.makedev(1, 3))
    except PermissionError:
        pass
    return folder


def run_cli_quiet(*args):
    import esl_deploy.cli as cli
    try:
        cli.main([str(a) for a in args])
    except SystemExit as e:
        return e.code
    return 0


def _command(kind, src, out):
    """The argument list of one command reading ``src`` (``out``: a fresh folder for anything it writes)."""
    return {
        "export-nir": ["export", src, "--to", "nir", "-o", out / "o.nir"],
        "export-netx": ["export", src, "--to", "netx", "-o", out / "o.h5"],
        "export-lava": ["export", src, "--to", "lava", "-o", out / "o.lava"],
        "export-onnx": ["export", src, "--to", "onnx", "-o", out / "o.onnx"],
        "simulate": ["simulate", src, "--backend", "snntorch", "--dataset", "digits", "--limit", "5"],
        "energy": ["energy", src, "--hw", "truenorth", "--dataset", "digits", "--limit", "5",
                   "--plot", out / "e.png"],
        "inspect": ["inspect", src, "--no-plots"],
    }[kind]


def _check_process(code, err, seconds, peak, folders_before):
    assert code in (0, 2), f"exit {code}: {err[-2000:]}"
    assert "Traceback" not in err, err[-2000:]
    if code == 2:
        lines = [l for l in err.splitlines() if l.strip()]
        assert len(lines) == 1 and lines[0].startswith("esl: error:"), err[-2000:]
    for folder, before in folders_before.items():
        assert _tree(folder) == before, folder  # no pre-existing file changed, none added
    assert seconds < CALL_SECONDS, f"{seconds:.0f} s"
    assert peak is not None and peak < PEAK_BYTES, f"peak RSS {(peak or 0) / 2 ** 30:.2f} GiB"


NIR_FILES = sorted(f"{name}.nir" for name in NIR_EDITS) + ["stride_zero.nir", "pool_stride_zero.nir", "garbage.nir",
                                                            "truncated.nir", "fifo.nir"]
CKPT_FILES = sorted(f"{name}.pt" for name in CHECKPOINT_EDITS) + ["pickled_object.pt", "truncated.pt", "fifo.pt",
                                                                  "link_to_checkpoint.pt"]
READS = ([(f, c) for f in NIR_FILES for c in ("export-nir", "export-netx", "export-lava", "export-onnx", "simulate",
                                               "energy")] +
         [(f, c) for f in CKPT_FILES for c in ("export-nir", "export-onnx", "simulate", "energy", "inspect")])


@settings(max_examples=30, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck))
@given(case=st.sampled_from(READS))
def test_crafted_inputs(existing, inputs, tmp_path_factory, case):
    name, kind = case
    out = tmp_path_factory.mktemp("out")
    before = {inputs: _tree(inputs), existing / "run": _tree(existing / "run")}
    code, _, err, seconds, peak = run_esl_process(*_command(kind, inputs / name, out), tmp=out, env=MEMORY_ENV,
                                                  timeout=CALL_SECONDS * 2)
    _check_process(code, err, seconds, peak, before)


# outputs that must never be replaced (special files, links, the input itself), huge T, config FIFOs
SPECIAL = {
    "export onto a FIFO": lambda i, o: ["export", i / "checkpoint.pt", "--to", "nir", "-o", i / "fifo_out.nir", "--force"],
    "export onto a device node": lambda i, o: ["export", i / "checkpoint.pt", "--to", "nir", "-o",
                                               i / "device_out.nir", "--force"],
    "export onto a symlink": lambda i, o: ["export", i / "good.nir", "--to", "nir", "-o", i / "link_out.nir",
                                           "--force"],
    "export onto its source via a link": lambda i, o: ["export", i / "link_to_checkpoint.pt", "--to", "nir", "-o",
                                                       i / "checkpoint.pt", "--force"],
    "energy plot onto a FIFO": lambda i, o: ["energy", i / "checkpoint.pt", "--hw", "truenorth", "--limit", "5",
                                             "--plot", i / "fifo_out.png", "--force"],
    "energy plot onto its input": lambda i, o: ["energy", i / "checkpoint.pt", "--hw", "truenorth", "--limit", "5",
                                                "--plot", i / "checkpoint.pt", "--force"],
    "config is a FIFO": lambda i, o: ["train", "--config", i / "fifo.toml", "--out", o / "r"],
    "config is /dev/zero": lambda i, o: ["train", "--config", "/dev/zero", "--out", o / "r"],
    "simulate -T 1e6": lambda i, o: ["simulate", i / "checkpoint.pt", "--backend", "snntorch", "-T", "1000000"],
    "simulate -T 30000": lambda i, o: ["simulate", i / "checkpoint.pt", "--backend", "snntorch", "-T", "30000"],
    "energy --T 1e6": lambda i, o: ["energy", i / "checkpoint.pt", "--hw", "truenorth", "--T", "1000000"],
    "onnx -T 1e8": lambda i, o: ["export", i / "checkpoint.pt", "--to", "onnx", "-T", "100000000", "-o", o / "m.onnx"],
    "lock is a symlink": lambda i, o: ["train", "--out", _planted_lock(o, i / "checkpoint.pt"), "--epochs", "1",
                                       "--width", "0.25", "--no-progress"],
}


def _planted_lock(out, target):
    folder = out / "planted"
    folder.mkdir()
    os.symlink(target, folder / ".esl-train.lock")
    return folder


@pytest.mark.parametrize("case", sorted(SPECIAL))
def test_special_files_and_huge_sizes(existing, inputs, tmp_path_factory, case):
    if case == "export onto a device node" and not (inputs / "device_out.nir").exists():
        pytest.skip("making a device node needs root")
    out = tmp_path_factory.mktemp("out")
    args = SPECIAL[case](inputs, out)
    before = {inputs: _tree(inputs), existing / "run": _tree(existing / "run")}
    code, _, err, seconds, peak = run_esl_process(*args, tmp=out, env=MEMORY_ENV, timeout=CALL_SECONDS * 2)
    _check_process(code, err, seconds, peak, before)


@pytest.mark.parametrize("opts", [["--lr", "nan"], ["--lr", "inf"], ["--lr", "-inf"], ["--lr", "1e39"],
                                  ["--lr", "1e39", "--optimizer", "sgd"], ["--lr", "1e39", "--readout", "membrane"],
                                  ["--lr", "1e37", "--lr-end", "1e37", "--epochs", "2"], ["--lr-end", "nan"],
                                  ["--pq-eta", "nan", "--method", "pq"], ["--tet-lambda", "inf"]])
def test_non_finite_learning_rates_keep_the_run(existing, tmp_path_factory, opts):
    """--force onto a copy of a finished run with learning rates that diverge or overflow: exit 0 or 2, one
    line, and on an error the copy is byte for byte the run it was."""
    out = tmp_path_factory.mktemp("lr")
    run = shutil.copytree(existing / "run", out / "run")
    before = {run: {k: v for k, v in _tree(run).items() if k != ".esl-train.lock"}}
    args = ["train", "--out", run, "--force", "--epochs", "1", "--width", "0.25", "--no-progress", *opts]
    code, _, err, seconds, peak = run_esl_process(*args, tmp=out, env=MEMORY_ENV, timeout=CALL_SECONDS * 2)
    if code == 0:  # a valid combination trained a new run: nothing to keep
        before = {}
    (run / ".esl-train.lock").unlink(missing_ok=True)
    _check_process(code, err, seconds, peak, before)
