"""The second reliability round (issue 23): nothing lost, nothing clobbered, nothing unbounded.

One test (or a parametrised family) per defect of the issue, numbered as there; each starts from a finished
tiny run (``demo``) or a file crafted from it (``tests/crafted.py``)."""
import hashlib
import os
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import crafted
from esl_deploy.checkpoint import read_checkpoint
from esl_deploy.train.trainer import LOCK_FILE
from helpers import assert_user_error, run_cli, run_esl_process

TINY = ["--epochs", "1", "--width", "0.25", "--no-progress"]
MEMORY_ENV = {"ESL_MEMORY_LIMIT": "1GiB"}  # what the guard may give the work of one command in these tests
PEAK_LIMIT = 2 << 30  # bytes: a child's peak RSS (~0.6 GiB of imports + at most the 1 GiB the guard allows)


def _cli(*args):
    """``esl ARGS`` in-process without capsys (module fixtures); returns the exit code."""
    import esl_deploy.cli as cli
    try:
        cli.main([str(a) for a in args])
    except SystemExit as e:
        return e.code
    return 0


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """A finished run made by the command line (so it has config.toml), and its NIR export."""
    root = tmp_path_factory.mktemp("demo")
    assert _cli("train", *TINY, "--out", root / "demo") == 0
    assert _cli("export", root / "demo" / "checkpoint.pt", "--to", "nir", "-o", root / "demo.nir") == 0
    return root


def digest(folder: Path) -> dict:
    """{name: sha256 or file type} of everything in ``folder`` except the lock file."""
    out = {}
    for p in sorted(folder.iterdir()):
        if p.name == LOCK_FILE:
            continue
        st = p.lstat()
        out[p.name] = hashlib.sha256(p.read_bytes()).hexdigest() if stat.S_ISREG(st.st_mode) else stat.S_IFMT(st.st_mode)
    return out


def copy_run(demo, dst: Path) -> Path:
    shutil.copytree(demo / "demo", dst)
    return dst


# 1 -- --force keeps the good run until the new one has its first checkpoint ----------------------------


@pytest.mark.parametrize("how", ["diverges", "disk_full"])
def test_1_failed_force_run_keeps_the_old_run(demo, tmp_path, capsys, monkeypatch, how):
    run = copy_run(demo, tmp_path / "F")
    before = digest(run)
    args = ["train", "--out", run, "--force", "--epochs", "2", "--width", "0.25", "--no-progress"]
    if how == "diverges":
        args += ["--lr", "1e37", "--readout", "membrane", "--loss", "tet"]
    else:
        def full(*a, **k):
            raise RuntimeError("[enforce fail at inline_container.cc:603] . unexpected pos 4513024 vs 4512912")
        monkeypatch.setattr(torch, "save", full)
    code, _, err = run_cli(capsys, *args)
    assert_user_error(code, err)
    assert digest(run) == before  # every file of the old run, byte for byte, and nothing else
    assert read_checkpoint(run / "checkpoint.pt")["summary"] is not None


_KILL_IN_EPOCH_1 = """
import os, signal, sys
import esl_deploy.train.trainer as trainer
def die(*a, **k):
    os.kill(os.getpid(), signal.SIGKILL)
trainer._train_epoch = die
from esl_deploy.cli import main
main(sys.argv[1:])
"""


def test_1_force_run_killed_in_epoch_1_keeps_the_old_run(demo, tmp_path, capsys):
    run = copy_run(demo, tmp_path / "F")
    before = digest(run)
    r = subprocess.run([sys.executable, "-c", _KILL_IN_EPOCH_1, "train", "--out", str(run), "--force", *TINY,
                        "--seed", "3"], capture_output=True, text=True, timeout=300)
    assert r.returncode == -signal.SIGKILL, r.stderr
    left = digest(run)
    assert {k: v for k, v in left.items() if k in before} == before  # the old run is all there
    code, _, err = run_cli(capsys, "export", run / "checkpoint.pt", "--to", "nir", "-o", tmp_path / "m.nir")
    assert code == 0, err
    code, _, err = run_cli(capsys, "train", "--out", run, *TINY, "--resume")  # the old run's own options
    assert_user_error(code, err, "already finished")
    assert digest(run) == before  # what the killed run left is gone once the folder is next used


def test_1_force_run_replaces_the_old_run_once_it_has_a_checkpoint(demo, tmp_path, capsys):
    run = copy_run(demo, tmp_path / "F")
    old = read_checkpoint(run / "checkpoint.pt")
    code, _, err = run_cli(capsys, "train", "--out", run, "--force", *TINY, "--seed", "7", "--method", "set")
    assert code == 0, err
    new = read_checkpoint(run / "checkpoint.pt")
    assert new["config"]["seed"] == 7 and old["config"]["seed"] == 0
    assert sorted(p.name for p in run.iterdir() if p.name.startswith(".")) == [LOCK_FILE]  # no staging left


# 2 -- esl energy --plot never replaces its own input, nor an existing file without --force ---------------


def test_2_energy_plot_onto_its_own_checkpoint_is_refused(demo, tmp_path, capsys):
    run = copy_run(demo, tmp_path / "run")
    before = digest(run)
    for force in ([], ["--force"]):
        code, _, err = run_cli(capsys, "energy", run / "checkpoint.pt", "--hw", "truenorth", "--plot",
                               run / "checkpoint.pt", *force)
        assert_user_error(code, err, "input")
    assert digest(run) == before


def test_2_energy_plot_needs_force_to_replace_a_file(demo, tmp_path, capsys):
    png = tmp_path / "e.png"
    png.write_bytes(b"mine")
    ckpt = demo / "demo" / "checkpoint.pt"
    code, _, err = run_cli(capsys, "energy", ckpt, "--hw", "truenorth", "--plot", png)
    assert_user_error(code, err, "already exists", "--force")
    assert png.read_bytes() == b"mine"
    code, _, err = run_cli(capsys, "energy", ckpt, "--hw", "truenorth", "--plot", png, "--force")
    assert code == 0, err
    assert png.read_bytes()[:4] == b"\x89PNG"


# 3 -- the lock file is never followed through a link, never truncated ------------------------------------


@pytest.mark.parametrize("link", ["symlink", "hardlink"])
@pytest.mark.parametrize("device", ["tpu", "cpu"])
def test_3_a_planted_lock_file_does_not_touch_its_target(demo, tmp_path, capsys, link, device):
    victim = copy_run(demo, tmp_path / "victim")
    before = digest(victim)
    folder = tmp_path / "L"
    folder.mkdir()
    (os.symlink if link == "symlink" else os.link)(victim / "checkpoint.pt", folder / LOCK_FILE)
    code, _, err = run_cli(capsys, "train", "--out", folder, *TINY, "--device", device)
    assert_user_error(code, err)
    assert digest(victim) == before


def test_3_the_lock_file_is_not_truncated(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / LOCK_FILE).write_text("pid 1\n" + "x" * 100)
    code, _, err = run_cli(capsys, "train", "--out", out, *TINY)
    assert code == 0, err
    assert (out / LOCK_FILE).stat().st_size >= 106  # written over in place, never cut


# 4 -- outputs never replace what is not a regular file ---------------------------------------------------


def _special(kind: str, path: Path, target: Path) -> bool:
    """Make a FIFO, a character device (like /dev/null; needs root) or a symlink at ``path``; False if impossible."""
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "device":
        try:
            os.mknod(path, 0o600 | stat.S_IFCHR, os.makedev(1, 3))
        except PermissionError:
            return False
    else:
        os.symlink(target, path)
    return True


@pytest.mark.parametrize("kind", ["fifo", "device", "symlink"])
@pytest.mark.parametrize("command", ["export", "energy"])
def test_4_outputs_never_replace_special_files(demo, tmp_path, capsys, kind, command):
    target = tmp_path / "target.bin"
    target.write_bytes(b"keep me")
    out = tmp_path / ("o.nir" if command == "export" else "o.png")
    if not _special(kind, out, target):
        pytest.skip("making a device node needs root")
    mode = out.lstat().st_mode
    ckpt = demo / "demo" / "checkpoint.pt"
    args = (["export", ckpt, "--to", "nir", "-o", out, "--force"] if command == "export" else
            ["energy", ckpt, "--hw", "truenorth", "--plot", out, "--force"])
    code, _, err = run_cli(capsys, *args)
    assert_user_error(code, err, "not a regular file")
    assert out.lstat().st_mode == mode and target.read_bytes() == b"keep me"


# 5 -- divergence on weights and gradients, and learning rates that overflow ------------------------------


@pytest.mark.parametrize("opts", [["--epochs", "2", "--lr", "1e37", "--lr-end", "1e37"],
                                  ["--lr", "1e39"], ["--lr", "1e39", "--optimizer", "sgd"],
                                  ["--lr", "1e39", "--readout", "membrane"]])
def test_5_divergence_is_caught_on_weights(tmp_path, capsys, opts):
    out = tmp_path / "r"
    code, _, err = run_cli(capsys, "train", "--out", out, "--width", "0.25", "--no-progress", *opts)
    assert_user_error(code, err, "diverged")
    if (out / "checkpoint.pt").exists():  # whatever was kept holds finite weights only
        state = read_checkpoint(out / "checkpoint.pt")
        assert all(bool(torch.isfinite(t).all()) for t in state["model"].values() if t.is_floating_point())


# 6 -- one memory guard, before allocating ----------------------------------------------------------------


def _memory_case(demo, tmp_path, case):
    ckpt, nir_file = demo / "demo" / "checkpoint.pt", demo / "demo.nir"
    if case == "nir_huge_weight":
        src = crafted.edit_nir(nir_file, tmp_path / "h.nir", crafted.huge_weight)
        return ["export", src, "--to", "nir", "-o", tmp_path / "o.nir"]
    if case == "nir_T_1e7":
        src = crafted.edit_nir(nir_file, tmp_path / "t.nir", crafted.metadata("T", 10 ** 7))
        return ["simulate", src, "--backend", "snntorch"]
    if case == "ckpt_width_15000":
        src = crafted.edit_checkpoint(ckpt, tmp_path / "w.pt", crafted.CHECKPOINT_EDITS["width_15000"])
        return ["export", src, "--to", "nir", "-o", tmp_path / "o.nir"]
    if case == "ckpt_T_1e7":
        src = crafted.edit_checkpoint(ckpt, tmp_path / "t.pt", crafted.CHECKPOINT_EDITS["T_1e7"])
        return ["energy", src, "--hw", "truenorth"]
    if case == "mnist_gz_header":
        import gzip
        import struct
        data = tmp_path / "mnist"
        data.mkdir()
        n = 1_500_000  # images of 28 x 28: 1.2 GB of zeros, 1.2 MB gzip'd
        with gzip.open(data / "train-images-idx3-ubyte.gz", "wb", compresslevel=1) as f:
            f.write(b"\x00\x00\x08\x03" + struct.pack(">3I", n, 28, 28))
            for _ in range(n * 28 * 28 >> 22):
                f.write(bytes(1 << 22))
            f.write(bytes(n * 28 * 28 % (1 << 22)))
        for name, count in (("train-labels-idx1-ubyte", n), ("t10k-labels-idx1-ubyte", 10)):
            (data / name).write_bytes(b"\x00\x00\x08\x01" + struct.pack(">I", count) + bytes(count))
        (data / "t10k-images-idx3-ubyte").write_bytes(b"\x00\x00\x08\x03" + struct.pack(">3I", 10, 28, 28)
                                                       + bytes(7840))
        return ["train", "--dataset", "mnist", "--data-dir", data, "--out", tmp_path / "r", *TINY]
    if case == "config_dev_zero":
        return ["train", "--config", "/dev/zero", "--out", tmp_path / "r", *TINY]
    if case == "simulate_T_30000":
        return ["simulate", ckpt, "--backend", "snntorch", "-T", "30000"]
    if case == "simulate_T_1e6":
        return ["simulate", ckpt, "--backend", "snntorch", "-T", "1000000"]
    if case == "energy_T_1e6":
        return ["energy", ckpt, "--hw", "truenorth", "--T", "1000000"]
    raise AssertionError(case)


@pytest.mark.parametrize("case", ["nir_huge_weight", "nir_T_1e7", "ckpt_width_15000",
                                  "ckpt_T_1e7", "mnist_gz_header", "config_dev_zero", "simulate_T_30000",
                                  "simulate_T_1e6", "energy_T_1e6"])
def test_6_memory_is_refused_before_it_is_allocated(demo, tmp_path, case):
    args = _memory_case(demo, tmp_path, case)
    code, _, err, seconds, peak = run_esl_process(*args, tmp=tmp_path, env=MEMORY_ENV, timeout=120)
    assert_user_error(code, err)
    assert peak is not None and peak < PEAK_LIMIT, f"peak RSS {peak / 2 ** 30:.2f} GiB"
    assert seconds < 60


def test_6_memory_limit_variable_is_checked(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("ESL_MEMORY_LIMIT", "lots")
    code, _, err = run_cli(capsys, "train", "--out", tmp_path / "r", *TINY)
    assert_user_error(code, err, "ESL_MEMORY_LIMIT")


# 7 -- NaN and inf in a NIR file are refused when it is read ----------------------------------------------


@pytest.mark.parametrize("edit", ["nan_weight", "inf_bias"])
@pytest.mark.parametrize("command", ["nir", "onnx", "netx", "lava", "simulate", "energy"])
def test_7_non_finite_nir_values_are_refused(demo, tmp_path, capsys, edit, command):
    src = crafted.edit_nir(demo / "demo.nir", tmp_path / "bad.nir", getattr(crafted, edit))
    if command in ("simulate", "energy"):
        args = ([command, src, "--backend", "snntorch", "--dataset", "digits"] if command == "simulate" else
                [command, src, "--hw", "truenorth", "--dataset", "digits"])
    else:
        args = ["export", src, "--to", command, "-o", tmp_path / f"o.{command}"]
    code, _, err = run_cli(capsys, *args)
    assert_user_error(code, err, "NaN or infinite")  # 13: and nothing before that one line
    assert not list(tmp_path.glob("o.*"))


# 8 -- full disks: one line everywhere, Lava's writer included ---------------------------------------------


def test_8_lava_export_on_a_full_disk_is_refused_before_h5py(demo, tmp_path, capsys, monkeypatch):
    from collections import namedtuple
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage(10 << 20, 10 << 20, 4096))
    code, _, err = run_cli(capsys, "export", demo / "demo" / "checkpoint.pt", "--to", "lava", "-o", tmp_path / "m.lava")
    assert_user_error(code, err, "not enough free space")
    assert list(tmp_path.iterdir()) == []


def test_8_torch_save_unexpected_pos_is_a_disk_error(tmp_path, capsys, monkeypatch):
    def full(*a, **k):  # what torch.save says on a full disk, and nothing more
        raise RuntimeError("[enforce fail at inline_container.cc:603] . unexpected pos 4513024 vs 4512912")
    monkeypatch.setattr(torch, "save", full)
    code, _, err = run_cli(capsys, "train", "--out", tmp_path / "r", *TINY)
    assert_user_error(code, err, "cannot write", "disk full")
    assert not (tmp_path / "r").exists()


# 9 -- one line, not a traceback --------------------------------------------------------------------------


@pytest.mark.parametrize("opts", [["--truenorth-weights", "--tn-finetune", "inf"],
                                  ["--seed", "99999999999999999999999"], ["--seed", "-1"]])
def test_9_energy_options_out_of_range(demo, capsys, opts):
    code, _, err = run_cli(capsys, "energy", demo / "demo" / "checkpoint.pt", "--hw", "truenorth", *opts)
    assert_user_error(code, err)


@pytest.mark.parametrize("key,value", [("dt", "abc"), ("T", "abc"), ("T", -5), ("T", 2.5), ("dt", float("nan")),
                                       ("encoding", "morse")])
@pytest.mark.parametrize("command", ["netx", "simulate", "energy"])
def test_9_bad_nir_metadata(demo, tmp_path, capsys, key, value, command):
    src = crafted.edit_nir(demo / "demo.nir", tmp_path / "m.nir", crafted.metadata(key, value))
    args = {"netx": ["export", src, "--to", "netx", "-o", tmp_path / "o.h5"],
            "simulate": ["simulate", src, "--backend", "snntorch"],
            "energy": ["energy", src, "--hw", "truenorth"]}[command]
    code, _, err = run_cli(capsys, *args)
    assert_user_error(code, err, key)


@pytest.mark.parametrize("edit", ["config_empty", "no_best_masks", "empty_initial_masks", "T_text",
                                  "rewire_log_garbage", "best_none"])
@pytest.mark.parametrize("command", ["export", "inspect", "simulate"])
def test_9_checkpoints_missing_keys(demo, tmp_path, capsys, edit, command):
    src = crafted.edit_checkpoint(demo / "demo" / "checkpoint.pt", tmp_path / "c.pt", crafted.CHECKPOINT_EDITS[edit])
    args = {"export": ["export", src, "--to", "nir", "-o", tmp_path / "o.nir"],
            "inspect": ["inspect", src, "--no-plots"],
            "simulate": ["simulate", src, "--backend", "snntorch", "--limit", "3"]}[command]
    code, _, err = run_cli(capsys, *args)
    reads = {"empty_initial_masks": ("inspect",), "rewire_log_garbage": ("inspect",),  # the structure records
             "T_text": ("export", "simulate")}.get(edit, ("export", "inspect", "simulate"))
    if command not in reads:  # a field this command does not read: it works
        assert code == 0, err
        return
    assert_user_error(code, err)
    assert "NoneType" not in err and "KeyError" not in err


def test_9_a_pickled_object_never_suggests_weights_only_false(demo, tmp_path, capsys):
    src = crafted.pickled_object_checkpoint(demo / "demo" / "checkpoint.pt", tmp_path / "obj.pt")
    code, _, err = run_cli(capsys, "export", src, "--to", "nir", "-o", tmp_path / "o.nir")
    assert_user_error(code, err, "weights only")
    assert "weights_only=False" not in err and "weights_only` set to `False" not in err


def test_9_epochs_1e400_in_a_config_file(tmp_path, capsys):
    cfg = tmp_path / "c.toml"
    cfg.write_text("epochs = 1e400\n")
    code, _, err = run_cli(capsys, "train", "--config", cfg, "--out", tmp_path / "r", "--no-progress")
    assert_user_error(code, err, "epochs")


# 10 -- config files: types are not coerced ---------------------------------------------------------------


@pytest.mark.parametrize("text,word", [("T = 2.5", "T"), ("density = true", "density"), ("epochs = 1.0", "epochs"),
                                       ("lr = \"0.1\"", "lr"), ("batch_size = 1e400", "batch_size"),
                                       ("model = 3", "model"), ("keep_dead_inputs = 1", "keep_dead_inputs")])
def test_10_config_values_of_the_wrong_type_are_refused(tmp_path, capsys, text, word):
    cfg = tmp_path / "c.toml"
    cfg.write_text(text + "\n")
    code, _, err = run_cli(capsys, "train", "--config", cfg, "--out", tmp_path / "r", *TINY)
    assert_user_error(code, err, word)
    assert not (tmp_path / "r").exists()


def test_10_an_integer_for_a_float_option_is_fine(tmp_path, capsys):
    cfg = tmp_path / "c.toml"
    cfg.write_text("density = 1\nepochs = 1\nwidth = 0.25\n")
    code, _, err = run_cli(capsys, "train", "--config", cfg, "--out", tmp_path / "r", "--no-progress")
    assert code == 0, err
    assert read_checkpoint(tmp_path / "r" / "checkpoint.pt")["config"]["sparsity"]["density"] == 1.0


# 11 -- no blocking reads of FIFOs ------------------------------------------------------------------------


@pytest.mark.parametrize("what", ["config", "checkpoint", "nir"])
def test_11_a_fifo_is_refused_at_once(tmp_path, what):
    fifo = tmp_path / {"config": "c.toml", "checkpoint": "c.pt", "nir": "m.nir"}[what]
    os.mkfifo(fifo)
    args = (["train", "--config", fifo, "--out", tmp_path / "r", *TINY] if what == "config" else
            ["export", fifo, "--to", "nir", "-o", tmp_path / "o.nir"])
    code, _, err, seconds, _ = run_esl_process(*args, tmp=tmp_path, timeout=60)
    assert code == 2, err
    assert_user_error(code, err, "not a regular file")
    assert seconds < 30


# 12 -- permissions: a replaced file keeps its mode, a new one follows the umask ----------------------------


def test_12_a_replaced_file_keeps_its_mode(demo, tmp_path, capsys):
    out = tmp_path / "secret.nir"
    out.write_bytes(b"old")
    os.chmod(out, 0o600)
    code, _, err = run_cli(capsys, "export", demo / "demo" / "checkpoint.pt", "--to", "nir", "-o", out, "--force")
    assert code == 0, err
    assert stat.S_IMODE(out.stat().st_mode) == 0o600


@pytest.mark.parametrize("mask", [0o077, 0o022, 0o002])
def test_12_new_files_follow_the_umask(demo, tmp_path, capsys, mask):
    old = os.umask(mask)
    try:
        code, _, err = run_cli(capsys, "export", demo / "demo" / "checkpoint.pt", "--to", "nir", "-o", tmp_path / "m.nir")
        code2, _, err2 = run_cli(capsys, "train", "--out", tmp_path / "r", *TINY)
    finally:
        os.umask(old)
    assert code == 0 and code2 == 0, err + err2
    assert stat.S_IMODE((tmp_path / "m.nir").stat().st_mode) == 0o666 & ~mask
    assert stat.S_IMODE((tmp_path / "r" / "checkpoint.pt").stat().st_mode) == 0o666 & ~mask


# 13 -- warnings that precede an error are not printed ------------------------------------------------------


@pytest.mark.parametrize("node", ["conv", "pool"])
@pytest.mark.parametrize("command", ["export", "simulate"])
def test_13_stride_zero_is_one_line(tmp_path, node, command):
    src = crafted.edit_nir(crafted.conv_nir(tmp_path / "conv.nir"), tmp_path / "s0.nir", crafted.stride_zero(node))
    args = (["export", src, "--to", "nir", "-o", tmp_path / "o.nir"] if command == "export" else
            ["simulate", src, "--backend", "snntorch", "--dataset", "digits", "--limit", "2"])
    code, _, err, _, _ = run_esl_process(*args, tmp=tmp_path)  # a fresh process: warnings not yet shown once
    assert_user_error(code, err, "stride")


_WARN_THEN_LOAD = """
import sys, warnings
import esl_deploy.export.cli as export_cli
real = export_cli.load_source
def warn_then(path):
    warnings.warn("numbers went strange", RuntimeWarning)
    return real(path)
export_cli.load_source = warn_then
from esl_deploy.cli import main
main(sys.argv[1:])
"""


def test_13_a_warning_before_an_error_is_dropped_and_after_success_kept(tmp_path):
    def esl(*args):
        return subprocess.run([sys.executable, "-c", _WARN_THEN_LOAD, *map(str, args)], capture_output=True,
                              text=True, timeout=300)
    r = esl("export", tmp_path / "missing.pt", "--to", "nir", "-o", tmp_path / "o.nir")
    assert_user_error(r.returncode, r.stderr)
    r = esl("export", crafted.conv_nir(tmp_path / "c.nir"), "--to", "nir", "-o", tmp_path / "o.nir")
    assert r.returncode == 0 and "numbers went strange" in r.stderr


# 14 -- temporary files: removed on signals, swept at start ------------------------------------------------


_SIGNAL_WHILE_WRITING = """
import os, signal, sys
import nir
signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal: a background job starts with SIGINT ignored
real = nir.write
def write_then_signal(path, graph):
    real(path, graph)
    os.kill(os.getpid(), getattr(signal, sys.argv[1]))
nir.write = write_then_signal
from esl_deploy.cli import main
main(sys.argv[2:])
"""


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGINT", "SIGHUP"])
def test_14_a_signal_while_writing_removes_the_temporary_file(demo, tmp_path, sig):
    out = tmp_path / "o" / "m.nir"
    out.parent.mkdir()
    r = subprocess.run([sys.executable, "-c", _SIGNAL_WHILE_WRITING, sig, "export", str(demo / "demo.nir"),
                        "--to", "nir", "-o", str(out)], capture_output=True, text=True, timeout=300)
    assert r.returncode != 0
    lines = [l for l in r.stderr.splitlines() if l.strip()]
    assert len(lines) == 1 and lines[0].startswith("esl: error:") and "Traceback" not in r.stderr, r.stderr
    assert list(out.parent.iterdir()) == []


def _dead_pid() -> int:
    p = subprocess.Popen(["true"])
    p.wait()
    return p.pid


@pytest.mark.parametrize("command", ["onnx", "energy_plot"])
def test_14_temporary_files_of_dead_writers_are_swept(demo, tmp_path, capsys, command):
    name = "m.onnx" if command == "onnx" else "e.png"
    dead = tmp_path / f".{name}.{_dead_pid()}-abc123.tmp"
    dead.write_bytes(b"half")
    live = tmp_path / f".{name}.{os.getpid()}-def456.tmp"  # a writer still running (this process)
    live.write_bytes(b"busy")
    ckpt = demo / "demo" / "checkpoint.pt"
    args = (["export", ckpt, "--to", "onnx", "-o", tmp_path / name] if command == "onnx" else
            ["energy", ckpt, "--hw", "truenorth", "--plot", tmp_path / name])
    code, _, err = run_cli(capsys, *args)
    assert code == 0, err
    assert not dead.exists() and live.exists()


def test_14_simulate_sweeps_temp_dirs_of_dead_processes(demo, tmp_path, capsys, monkeypatch):
    import tempfile
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    dead = tmp_path / f"esl-sim-{_dead_pid()}-abc"
    (dead / "sub").mkdir(parents=True)
    live = tmp_path / f"esl-sim-{os.getpid()}-def"
    live.mkdir()
    code, _, err = run_cli(capsys, "simulate", demo / "demo.nir", "--backend", "snntorch", "--limit", "3")
    assert code == 0, err
    assert not dead.exists() and live.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [live.name]  # and its own is gone


# Also -- the smaller ones ---------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [["--device", "tpu"], ["--dataset", "mnist", "--data-dir", "/nonexistent/x"],
                                 ["--lr", "1e39"]])
def test_also_a_refused_run_leaves_no_folder(tmp_path, capsys, bad):
    out = tmp_path / "new" / "run"
    code, _, err = run_cli(capsys, "train", "--out", out, *TINY, *bad)
    assert_user_error(code, err)
    assert not (tmp_path / "new").exists()


def test_also_a_run_killed_while_drawing_its_final_plots_can_be_finished(demo, tmp_path, capsys):
    run = copy_run(demo, tmp_path / "run")
    for name in ("summary.json", "curves.png", "structure_degrees.png", "structure_rewiring.png"):
        (run / name).unlink(missing_ok=True)
    code, _, err = run_cli(capsys, "train", "--out", run, *TINY, "--resume")
    assert code == 0, err
    for name in ("summary.json", "curves.png", "structure_degrees.png"):
        assert (run / name).is_file(), name
    code, _, err = run_cli(capsys, "train", "--out", run, *TINY, "--resume")
    assert_user_error(code, err, "already finished")


def test_also_an_interrupted_magnitude_run_says_what_is_missing(tmp_path, capsys):
    from esl_deploy.train.config import TrainConfig
    from esl_deploy.train.masking import SparsityConfig
    from esl_deploy.train.trainer import train

    def stop(epoch, row):
        raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        train(TrainConfig(epochs=4, width=0.25, sparsity=SparsityConfig(method="magnitude")), tmp_path / "r",
              progress=False, on_epoch_end=stop)
    ckpt = tmp_path / "r" / "checkpoint.pt"
    assert read_checkpoint(ckpt)["best"] is None
    for args in (["export", ckpt, "--to", "nir", "-o", tmp_path / "o.nir"], ["inspect", ckpt, "--no-plots"]):
        code, _, err = run_cli(capsys, *args)
        assert_user_error(code, err, "--resume")
        assert "NoneType" not in err


@pytest.mark.parametrize("opt", [["--pq-eta", "nan"], ["--pq-eta", "inf"], ["--pq-p", "nan"], ["--pq-q", "inf"],
                                 ["--pq-gamma", "inf"]])
def test_also_pq_parameters_must_be_finite(tmp_path, capsys, opt):
    code, _, err = run_cli(capsys, "train", "--out", tmp_path / "r", *TINY, "--method", "pq", *opt)
    assert_user_error(code, err)
