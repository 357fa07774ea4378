"""Data set registry: one name -> one loader. The CLI's ``--dataset`` choices come from here.

``digits`` is embedded (scikit-learn's bundled copy); every other data set reads real files from a
local folder (``--data-dir``): nothing is downloaded.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Optional

from ..errors import EslError
from .base import ENCODINGS, DataSplits, encode, split_train_val, to_time_major


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    needs_dir: bool
    temporal: bool
    description: str
    load: Callable[..., DataSplits]


def _digits(data_dir, T, size):
    from .digits import load_digits
    return load_digits()


def _mnist(data_dir, T, size):
    from .files import load_mnist
    return load_mnist(data_dir)


def _cifar10(data_dir, T, size):
    from .files import load_cifar10
    return load_cifar10(data_dir)


def _cifar100(data_dir, T, size):
    from .files import load_cifar100
    return load_cifar100(data_dir)


def _nmnist(data_dir, T, size):
    from .events import load_nmnist
    return load_nmnist(data_dir, T=T, size=size)


def _dvsgesture(data_dir, T, size):
    from .events import load_dvsgesture
    return load_dvsgesture(data_dir, T=T, size=size)


def _cifar10dvs(data_dir, T, size):
    from .events import load_cifar10dvs
    return load_cifar10dvs(data_dir, T=T, size=size)


DATASETS: Dict[str, DatasetInfo] = {d.name: d for d in (
    DatasetInfo("digits", False, False, "scikit-learn's bundled 8x8 digits (embedded, default)", _digits),
    DatasetInfo("mnist", True, False, "MNIST idx files (train/t10k-images/labels-idx*-ubyte[.gz])", _mnist),
    DatasetInfo("cifar10", True, False, "CIFAR-10 python pickles (cifar-10-batches-py/)", _cifar10),
    DatasetInfo("cifar100", True, False, "CIFAR-100 python pickles (cifar-100-python/)", _cifar100),
    DatasetInfo("nmnist", True, True, "N-MNIST events via tonic (NMNIST/)", _nmnist),
    DatasetInfo("dvsgesture", True, True, "DVS128 Gesture events via tonic (DVSGesture/)", _dvsgesture),
    DatasetInfo("cifar10dvs", True, True, "CIFAR10-DVS events via tonic (CIFAR10DVS/)", _cifar10dvs),
)}


def load_dataset(name: str, data_dir: Optional[str | Path] = None, T: int = 8,
                 frame_size: Optional[int] = None) -> DataSplits:
    """Load the named data set's fixed splits; user errors (unknown name, missing folder) raise EslError.
    ``frame_size`` (event data sets only): frames of frame_size x frame_size, events pooled onto that grid."""
    info = DATASETS.get(name)
    if info is None:
        raise EslError(f"unknown dataset {name!r}; choose one of: {', '.join(DATASETS)}")
    if frame_size is not None and not info.temporal:
        raise EslError(f"--frame-size applies to event data sets; {name!r} has fixed-size images")
    path = None
    if not info.needs_dir and data_dir is not None:
        raise EslError(f"dataset {name!r} is embedded and reads no files: drop --data-dir {data_dir}")
    if info.needs_dir:
        if data_dir is None:
            raise EslError(f"dataset {name!r} is read from local files: give --data-dir")
        path = Path(data_dir).expanduser()
        if not path.is_dir():
            raise EslError(f"data folder not found: {path}")
    return info.load(path, T, frame_size)


def frame_size_for(name: str, input_shape) -> Optional[int]:
    """The ``frame_size`` that gives a model trained with ``--frame-size`` its input again: the side of
    a square (C, H, H) input for an event data set, None for any other data set or shape (the loader's
    own size, or a mismatch that the caller reports)."""
    info = DATASETS.get(name)
    shape = tuple(int(s) for s in (input_shape or ()))
    if info is None or not info.temporal or len(shape) != 3 or shape[1] != shape[2]:
        return None
    return shape[1]


__all__ = ["DATASETS", "DatasetInfo", "DataSplits", "ENCODINGS", "encode", "frame_size_for", "load_dataset",
           "split_train_val", "to_time_major"]
