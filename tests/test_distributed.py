"""Distributed training: two CPU processes (gloo) started with torchrun, as users start them.

One uninterrupted 2-process RigL run (regrowth by the dense gradient: masks agree across processes only
if that gradient is the all-reduced one) is compared with the same run in one process, with a 2-process
run killed mid-way and resumed under torchrun, and its mask digests after every rewiring are compared
across the ranks. Bad inputs stop every rank with one line and exit code 2.
"""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from esl_deploy.checkpoint import read_checkpoint
from esl_deploy.errors import EslError
from helpers import assert_user_error, run_cli
from esl_deploy.train.distributed import (DIGEST_LOG, ShardedBatches, World, mask_digest, peer_lost, shard_rows,
                               world_from_env)

ROOT = Path(__file__).resolve().parents[1]
EPOCHS = 8
RUN = ["--method", "rigl", "--width", "0.05", "--T", "4", "--batch-size", "128", "--density", "0.2",
       "--t-iter", "3", "--epochs", str(EPOCHS), "--no-progress"]
LAUNCH_TIMEOUT = 120  # seconds; a hang fails the test instead of blocking the suite


def torchrun_cmd(*args, log_dir=None):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    if log_dir is not None:
        cmd += ["--redirects", "3", "--log-dir", str(log_dir)]
    return cmd + ["-m", "esl_deploy.cli", "train", *map(str, args)]


def torchrun_env(**extra):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop(DIGEST_LOG, None)  # only where a test asks for it
    return {**env, **extra}


def torchrun(*args, log_dir=None, **env):
    return subprocess.run(torchrun_cmd(*args, log_dir=log_dir), cwd=ROOT, env=torchrun_env(**env),
                          capture_output=True, text=True, timeout=LAUNCH_TIMEOUT)


def children(pid: int):
    """Process ids whose parent is ``pid`` (Linux /proc)."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def _kill_quietly(pid: int):
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def digests(folder: Path, rank: int):
    return [line.split() for line in (folder / f"rank{rank}.txt").read_text().splitlines()]


@pytest.fixture(scope="module")
def dist_run(tmp_path_factory):
    """An uninterrupted 2-process run and the mask digests each rank logged after every rewiring."""
    base = tmp_path_factory.mktemp("dist")
    r = torchrun("--out", base / "run", *RUN, **{DIGEST_LOG: str(base / "digests")})
    assert r.returncode == 0, r.stderr[-3000:]
    return base


def test_masks_are_identical_on_every_rank_after_each_rewiring(dist_run):
    rank0, rank1 = digests(dist_run / "digests", 0), digests(dist_run / "digests", 1)
    assert len(rank0) >= 4  # one rewiring per epoch start until t_end
    assert rank0 == rank1
    final = read_checkpoint(dist_run / "run" / "checkpoint.pt")["engine"]["masks"]
    assert rank0[-1][1] == mask_digest(final)


def test_two_processes_train_the_single_process_network(dist_run, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(DIGEST_LOG, str(tmp_path / "digests"))
    code, _, err = run_cli(capsys, "train", "--out", tmp_path / "single", *RUN)
    assert code == 0, err
    # the same masks after every rewiring, and the same weights up to the all-reduce's rounding
    assert digests(tmp_path / "digests", 0) == digests(dist_run / "digests", 0)
    one = read_checkpoint(tmp_path / "single" / "checkpoint.pt")
    two = read_checkpoint(dist_run / "run" / "checkpoint.pt")
    assert one["model"].keys() == two["model"].keys()
    for k, w in one["model"].items():
        torch.testing.assert_close(two["model"][k], w, rtol=1e-4, atol=1e-6, msg=k)
    for name, m in one["engine"]["masks"].items():
        assert torch.equal(two["engine"]["masks"][name], m), name
    # loss and accuracy are the global batch's (not rank 0's shard): the same as one process's
    for a, b in zip(one["history"], two["history"]):
        assert b["train_acc"] == a["train_acc"] and b["val_acc"] == a["val_acc"]
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-5)
    assert two["summary"]["world_size"] == 2 and one["summary"]["world_size"] == 1


def test_a_killed_torchrun_run_resumes_to_the_uninterrupted_weights(dist_run, tmp_path):
    out = tmp_path / "run"
    proc = subprocess.Popen(torchrun_cmd("--out", out, *RUN), cwd=ROOT, env=torchrun_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    metrics, t0 = out / "metrics.csv", time.monotonic()
    try:  # once two epochs are written, SIGKILL both workers (a crash: no clean-up at all)
        while not (metrics.is_file() and len(metrics.read_text().splitlines()) >= 3):
            assert proc.poll() is None, "the run ended before it could be killed"
            assert time.monotonic() - t0 < LAUNCH_TIMEOUT, "no epoch finished"
            time.sleep(0.01)
        workers = children(proc.pid)
        assert len(workers) == 2
        for pid in workers:
            os.kill(pid, signal.SIGKILL)
        _, err = proc.communicate(timeout=LAUNCH_TIMEOUT)  # torchrun sees its workers die and stops
    finally:
        for pid in children(proc.pid) + [proc.pid]:
            _kill_quietly(pid)
    assert proc.returncode != 0 and err.count("exitcode  : -9") == 2, err[-2000:]  # both killed
    cut = read_checkpoint(out / "checkpoint.pt")["epoch"]
    assert 2 <= cut < EPOCHS, cut

    r = torchrun("--out", out, *RUN, "--resume")
    assert r.returncode == 0, r.stderr[-3000:]
    full = read_checkpoint(dist_run / "run" / "checkpoint.pt")
    resumed = read_checkpoint(out / "checkpoint.pt")
    for k in full["model"]:
        assert torch.equal(full["model"][k], resumed["model"][k]), k
    for k in full["best"]["model"]:
        assert torch.equal(full["best"]["model"][k], resumed["best"]["model"][k]), k
    for name in full["engine"]["masks"]:
        assert torch.equal(full["engine"]["masks"][name], resumed["engine"]["masks"][name]), name
    assert full["engine"]["t"] == resumed["engine"]["t"]
    assert [r["val_acc"] for r in full["history"]] == [r["val_acc"] for r in resumed["history"]]
    assert resumed["summary"]["test_acc"] == full["summary"]["test_acc"]


def test_a_batch_the_world_size_does_not_divide_stops_every_rank(tmp_path):
    t0 = time.monotonic()
    r = torchrun("--out", tmp_path / "run", *RUN[:-1], "--batch-size", "127", log_dir=tmp_path / "logs")
    assert r.returncode != 0 and time.monotonic() - t0 < LAUNCH_TIMEOUT
    errs = sorted(tmp_path.glob("logs/*/attempt_0/*/stderr.log"))
    assert len(errs) == 2  # one per rank, each: one line, no traceback
    for e in errs:
        assert_user_error(2, e.read_text(), "127", "world size 2")
    assert "exitcode  : 2" in r.stderr  # torchrun's report: both ranks exited with code 2
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("rank", ["0", "1"])
@pytest.mark.parametrize("missing", ["MASTER_ADDR", "MASTER_PORT", "WORLD_SIZE"])
def test_a_missing_rendezvous_variable_is_one_line(tmp_path, capsys, monkeypatch, rank, missing):
    env = {"RANK": rank, "WORLD_SIZE": "2", "LOCAL_RANK": rank, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29999"}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv(missing)
    code, _, err = run_cli(capsys, "train", "--distributed", "--out", tmp_path / "r", "--epochs", "1")
    assert_user_error(code, err, missing, "torchrun")
    assert not (tmp_path / "r").exists()


def test_bad_rendezvous_values_are_refused():
    env = {"RANK": "2", "WORLD_SIZE": "2", "LOCAL_RANK": "0", "MASTER_ADDR": "h", "MASTER_PORT": "1"}
    with pytest.raises(EslError, match="rank must lie"):
        world_from_env(env)
    with pytest.raises(EslError, match="not an integer"):
        world_from_env({**env, "RANK": "x"})
    with pytest.raises(EslError, match="not a port"):
        world_from_env({**env, "RANK": "0", "MASTER_PORT": "70000"})
    assert world_from_env({**env, "RANK": "1"}) == World(rank=1, size=2, local_rank=0)


def test_shards_make_up_the_single_process_batches():
    from torch.utils.data import DataLoader
    n, b = 1617, 128
    single = [x.tolist() for x in DataLoader(range(n), batch_size=b, shuffle=True,
                                              generator=torch.Generator().manual_seed(5))]
    assert list(ShardedBatches(n, b, torch.Generator().manual_seed(5), World())) == single
    parts = [list(ShardedBatches(n, b, torch.Generator().manual_seed(5), World(rank=r, size=2))) for r in (0, 1)]
    assert [p0 + p1 for p0, p1 in zip(*parts)] == single
    assert [len(p) for p in parts[0]][-1] == 41 and [len(p) for p in parts[1]][-1] == 40  # 81 = 41 + 40
    losses = torch.rand(81, dtype=torch.float64)  # per-sample losses of a short last batch
    s = [shard_rows(81, World(rank=r, size=2)) for r in (0, 1)]
    mean_of_means = sum(x.weight * losses[x.start:x.stop].mean() for x in s) / 2  # DDP: (1/N) sum_r w_r L_r
    assert float(mean_of_means) == pytest.approx(float(losses.mean()), rel=1e-12)
    empty = shard_rows(1, World(rank=1, size=2))
    assert empty.rows == 0 and empty.weight == 0.0 and empty.start == 0


def test_rate_encoded_shards_are_the_whole_batch_encoding():
    from esl_deploy.datasets import encode
    x = torch.rand(10, 1, 4, 4)
    whole = encode(x, 5, "rate", torch.Generator().manual_seed(3))
    parts = [encode(x[a:b], 5, "rate", torch.Generator().manual_seed(3), rows=(a, 10)) for a, b in ((0, 6), (6, 10))]
    assert torch.equal(torch.cat(parts, 1), whole)


def test_masking_after_the_backward_pass_equals_the_hook():
    from esl_deploy.train.masking import MaskEngine, SparsityConfig
    grads = []
    for in_hook in (True, False):
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.Linear(5, 3))
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        eng = MaskEngine(model, opt, SparsityConfig(method="rigl", density=0.5), total_steps=10, seed=1,
                         mask_in_hook=in_hook)
        model(torch.randn(4, 6)).square().sum().backward()
        if not in_hook:
            eng.mask_gradients()
        grads.append(({n: p.grad.clone() for n, p in model.named_parameters()}, dict(eng.dense_grad)))
    (g_hook, d_hook), (g_after, d_after) = grads
    for n in g_hook:
        assert torch.equal(g_hook[n], g_after[n]), n
    for n in d_hook:
        assert torch.equal(d_hook[n], d_after[n]), n


def test_the_error_of_a_collective_whose_peer_died_is_recognised():
    died = RuntimeError("[../third_party/gloo/gloo/transport/tcp/pair.cc:525] Read error [127.0.0.1]:31908: "
                        "Connection reset by peer")
    assert peer_lost(died)
    assert not peer_lost(RuntimeError("mat1 and mat2 shapes cannot be multiplied")) and not peer_lost(ValueError())
