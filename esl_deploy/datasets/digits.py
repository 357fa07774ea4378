"""scikit-learn's bundled digits: 1797 real 8x8 handwritten digits, no download needed.

Pixel values 0..16 are scaled to [0, 1] and shaped (1, 8, 8). The test set is a fixed stratified 20 %
(seed 0); validation is a fixed 10 % of the rest (:func:`split_train_val`).
"""
from __future__ import annotations

import numpy as np
import torch
from sklearn.datasets import load_digits as _sk_load_digits
from sklearn.model_selection import train_test_split
from torch.utils.data import TensorDataset

from .base import SPLIT_SEED, DataSplits, split_train_val

TEST_FRACTION = 0.2


def load_digits(val_fraction: float = 0.1) -> DataSplits:
    """Fixed train / validation / test splits of the digits data (1 x 8 x 8 images, 10 classes)."""
    bunch = _sk_load_digits()
    x = (bunch.data.astype(np.float32) / 16.0).reshape(-1, 1, 8, 8)
    y = bunch.target.astype(np.int64)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=TEST_FRACTION, random_state=SPLIT_SEED, stratify=y)
    train_full = TensorDataset(torch.from_numpy(x_tr), torch.from_numpy(y_tr))
    train, val = split_train_val(train_full, val_fraction)
    test = TensorDataset(torch.from_numpy(x_te), torch.from_numpy(y_te))
    return DataSplits(train=train, val=val, test=test, input_shape=(1, 8, 8), num_classes=10)
