"""8-bit QAT that the Loihi 2 fixed point reproduces spike for spike: graded 8-bit images are sent as their
integers k (input scale 255), and the trained LIF decays its membrane as Lava's integers do."""
from __future__ import annotations

import numpy as np
import pytest

from esl_deploy.loihi2 import exact_input_scale, join_input_scales


def test_exact_input_scale_of_8_bit_images_digits_and_spikes():
    rng = np.random.default_rng(0)
    k = rng.integers(0, 256, size=(4, 1, 8, 8))
    assert exact_input_scale((k / 255).astype(np.float32)) == 255.0   # MNIST's ToTensor: float32(k / 255)
    assert exact_input_scale(k[..., :1] * 0 + np.float32(1 / 255)) == 255.0
    assert exact_input_scale((k % 17) / 16.0) == 16.0                  # digits
    assert exact_input_scale((k > 128).astype(np.float32)) == 1.0      # spikes
    assert exact_input_scale(rng.random((3, 5))) is None
    assert join_input_scales(1.0, 255.0) == 255.0 and join_input_scales(4.0, 16.0) == 16.0
    assert join_input_scales(2.0, 255.0) is None and join_input_scales(None, 1.0) is None
