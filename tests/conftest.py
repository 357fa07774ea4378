import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("ESL_CPU_KERNELS", "native")  # the tests' process keeps its kernels (benchmarks pin avx2)

import esl_deploy  # noqa: E402,F401  (installs the lava compatibility hook before any lava import)
import torch  # noqa: E402

torch.set_num_threads(1)


import pytest  # noqa: E402


@pytest.fixture
def esl(capsys):
    """Run ``esl ...`` through ``cli.main`` in-process: returns (exit code, stdout, stderr)."""
    from helpers import run_cli

    return lambda *args: run_cli(capsys, *args)
