"""Shared test helpers: run ``esl`` in-process and check the one-line user-error convention; small sparse
networks that spike, and inputs for them."""
import numpy as np
import torch

import esl_deploy.cli as cli
from esl_deploy.masks import random_mask, sparsifiable
from esl_deploy.models import ModelSpec, build_model


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


def half_sparse_model(spec: ModelSpec, seed: int = 0, gain: float = 4.0, meta: dict = None):
    """A model with half of each sparsified weight zeroed, weights scaled up so that neurons spike;
    ``model.meta`` is ``meta`` with the layer densities."""
    torch.manual_seed(seed)
    model = build_model(spec).eval()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(gain)
        layer_density = {}
        for name, w in sparsifiable(model):
            w.mul_(random_mask(w.shape, 0.5, g))
            layer_density[name] = 0.5
    model.meta = {**(meta or {}), "layer_density": layer_density}
    return model


def spiking_input(spec: ModelSpec, T: int = 6, B: int = 5, seed: int = 1) -> torch.Tensor:
    """Uniform random input (T, B, *input_shape)."""
    return torch.rand(T, B, *spec.input_shape, generator=torch.Generator().manual_seed(seed))


# A child `esl` that records its own peak resident memory (VmHWM: this process's, not a forking parent's,
# which ru_maxrss of a child would carry) into the file named by its first argument when it exits.
_LAUNCHER = """
import atexit, sys
hwm_file = sys.argv.pop(1)
def _record():
    with open('/proc/self/status') as f:
        kb = next(int(l.split()[1]) for l in f if l.startswith('VmHWM:'))
    with open(hwm_file, 'w') as f:
        f.write(str(kb * 1024))
atexit.register(_record)
from esl_deploy.cli import main
sys.argv[0] = 'esl'
main()
"""


def run_esl_process(*args, tmp, timeout=120, env=None, cwd=None):
    """Run ``esl ARGS`` in a fresh process; returns (exit code, stdout, stderr, seconds, peak RSS bytes or None).

    Peak RSS is the child's own ``VmHWM`` at exit (None when it died without exiting, e.g. killed).
    A child still running after ``timeout`` seconds is killed (exit code None)."""
    import os
    import subprocess
    import sys
    import time
    from pathlib import Path

    hwm = Path(tmp) / f".hwm-{time.monotonic_ns()}"
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    t0 = time.perf_counter()
    try:
        r = subprocess.run([sys.executable, "-c", _LAUNCHER, str(hwm), *[str(a) for a in args]], cwd=cwd,
                           env=full_env, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
        code, out, err = r.returncode, r.stdout, r.stderr
    except subprocess.TimeoutExpired as e:
        code, out, err = None, e.stdout or "", e.stderr or ""
        out, err = (s.decode() if isinstance(s, bytes) else s for s in (out, err))
    seconds = time.perf_counter() - t0
    peak = int(hwm.read_text()) if hwm.exists() else None
    hwm.unlink(missing_ok=True)
    return code, out, err, seconds, peak
