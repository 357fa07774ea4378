"""Shared test helpers: run ``esl`` in-process and check the one-line user-error convention."""
import numpy as np

import cli


def run_cli(capsys, *args):
    """Run ``esl ARGS`` through ``cli.main`` in-process; returns (exit code, stdout, stderr)."""
    try:
        cli.main([str(a) for a in args])
        code = 0
    except SystemExit as e:
        code = e.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_user_error(code, err, *words):
    """Exit code 2, exactly one non-empty stderr line starting ``esl: error:``, no traceback, ``words`` in it."""
    lines = [l for l in err.splitlines() if l.strip()]
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("esl: error:"), err
    assert "Traceback" not in err
    for w in words:
        assert w in lines[0], lines[0]


def digit_like_input(T, B, seed=0):
    """Random 'images' with pixel values k/16, like the digits data set, as (T, B, 1, 8, 8)."""
    g = np.random.default_rng(seed)
    x = g.integers(0, 17, size=(B, 1, 8, 8)) / 16.0
    return np.broadcast_to(x, (T,) + x.shape).copy()
