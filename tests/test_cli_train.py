"""`esl train` from the command line: a real run, and bad input as one stderr line with exit code 2."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import assert_user_error, run_cli

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--width", "0.05", "--T", "4", "--epochs", "2", "--no-progress"]


def test_train_command_end_to_end_in_a_subprocess(tmp_path):
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, "-m", "esl_deploy.cli", "train", "--method", "esl", "--density", "0.1", *TINY,
                        "--out", str(out), "--json"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["method"] == "esl"  # stdout is pure JSON; progress lines go to stderr
    assert (out / "checkpoint.pt").is_file() and (out / "curves.png").is_file()


@pytest.mark.parametrize("args,words", [
    (["--model", "transformer"], ["--model", "transformer"]),
    (["--dataset", "imagenet"], ["--dataset", "imagenet"]),
    (["--method", "lottery"], ["--method", "lottery"]),
    (["--density", "0"], ["density", "(0, 1]"]),
    (["--density", "1.5"], ["density", "(0, 1]"]),
    (["--dataset", "mnist", "--data-dir", "/nonexistent/mnist"], ["data folder not found", "/nonexistent/mnist"]),
    (["--dataset", "mnist"], ["--data-dir"]),
])
def test_bad_options(capsys, tmp_path, args, words):
    code, _, err = run_cli(capsys, "train", *TINY, "--out", str(tmp_path / "r"), *args)
    assert_user_error(code, err, *words)
    assert not (tmp_path / "r" / "checkpoint.pt").exists()


def test_existing_run_is_never_overwritten_without_force(capsys, tmp_path):
    out = tmp_path / "run"
    assert run_cli(capsys, "train", *TINY, "--out", str(out))[0] == 0
    before = (out / "checkpoint.pt").read_bytes()
    code, _, err = run_cli(capsys, "train", *TINY, "--seed", "5", "--out", str(out))
    assert_user_error(code, err, "already exists", "--force")
    assert (out / "checkpoint.pt").read_bytes() == before
    assert run_cli(capsys, "train", *TINY, "--seed", "5", "--out", str(out), "--force")[0] == 0
    assert (out / "checkpoint.pt").read_bytes() != before


def test_resume_with_a_different_config_is_refused(capsys, tmp_path):
    out = tmp_path / "run"
    assert run_cli(capsys, "train", *TINY, "--out", str(out))[0] == 0
    code, _, err = run_cli(capsys, "train", *TINY, "--lr", "0.5", "--out", str(out), "--resume")
    assert_user_error(code, err, "different config", "lr")


@pytest.mark.parametrize("damage", ["truncate", "garbage", "foreign"])
def test_corrupt_or_truncated_checkpoint(capsys, tmp_path, damage):
    out = tmp_path / "run"
    assert run_cli(capsys, "train", *TINY, "--out", str(out))[0] == 0
    ckpt = out / "checkpoint.pt"
    data = ckpt.read_bytes()
    if damage == "truncate":
        ckpt.write_bytes(data[: len(data) // 2])
    elif damage == "garbage":
        ckpt.write_bytes(b"not a checkpoint at all")
    else:
        import torch
        torch.save({"weights": torch.zeros(3)}, ckpt)
    code, _, err = run_cli(capsys, "train", *TINY, "--out", str(out), "--resume")
    assert_user_error(code, err, str(ckpt))
    with pytest.raises(Exception) as info:
        import esl_deploy
        esl_deploy.load(ckpt)
    assert type(info.value).__name__ == "EslError"
