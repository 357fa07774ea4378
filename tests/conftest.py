import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import esl_deploy  # noqa: E402,F401  (installs the lava compatibility hook before any lava import)
import torch  # noqa: E402

torch.set_num_threads(1)
