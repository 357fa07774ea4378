"""Event-camera data sets read from local files with tonic (nothing is downloaded).

Each sample's events are binned by :class:`tonic.transforms.ToFrame` into ``T`` equal time bins and
returned as float32 frames of shape (T, P, H, W): event counts per polarity P and pixel. The splits are
:class:`DataSplits` with ``temporal=True`` and ``input_shape=(P, H, W)``; validation is a fixed 10 % of
the training set (:func:`split_train_val`).

tonic keeps each data set in ``<data_dir>/<ClassName>/`` and downloads it unless its ``_check_exists``
passes: the original archive file must exist (its checksum is *not* checked, so an empty file with that
name will do) next to the extracted folder, which must hold at least a minimum number of sample files.
The subclasses below apply exactly that rule with a clear :class:`EslError` instead of downloading:

- N-MNIST: ``NMNIST/train.zip`` and ``NMNIST/Train/<digit>/*.bin`` (at least 10000 ``.bin``); the same
  with ``test.zip`` and ``Test/``. A ``.bin`` holds 5 bytes per event: x, y, then the polarity bit and a
  23-bit timestamp in microseconds (big-endian).
- DVS Gesture (tonic's preprocessed copy): ``DVSGesture/ibmGestureTrain.tar.gz`` and
  ``DVSGesture/ibmGestureTrain/user<NN>_<lighting>/<label>.npy`` (at least 100 ``.npy``); the same with
  ``ibmGestureTest``. Each ``.npy`` is an N x 4 array: x, y, polarity, t in milliseconds.
- CIFAR10-DVS: ``CIFAR10DVS/CIFAR10DVS.zip`` and ``CIFAR10DVS/<class>/*.aedat4`` (at least 1000 AEDAT 4.0
  recordings), class folders ``airplane`` .. ``truck``.

CIFAR10-DVS has no official test set: a fixed stratified split holds out 10 % of every class as the test
set (seed ``CIFAR10DVS_SPLIT_SEED``, over the recordings sorted by path), the rest is train + validation.
Reading ``.aedat4`` goes through tonic's ``read_aedat4``, which needs the ``aedat`` package.
"""
from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, List, Optional, Sequence, Tuple

import numpy as np
import torch
import tonic
from torch.utils.data import Subset

from ..errors import EslError
from .base import DataSplits, split_train_val

VAL_FRACTION = 0.1
CIFAR10DVS_TEST_FRACTION = 0.1
CIFAR10DVS_SPLIT_SEED = 0


# ------------------------------------------------------------------------------------------ transforms

@dataclass(frozen=True)
class EventsToFrames:
    """tonic events -> float32 frames (T, P, H, W), optionally after shrinking the sensor to ``size``."""

    sensor_size: Tuple[int, int, int]  # tonic's (W, H, P) of the recording
    T: int
    size: Optional[int] = None  # square output side; None keeps the sensor's resolution

    @property
    def frame_sensor_size(self) -> Tuple[int, int, int]:
        if self.size is None:
            return tuple(self.sensor_size)
        return (self.size, self.size, self.sensor_size[2])

    def __call__(self, events: np.ndarray) -> torch.Tensor:
        if self.size is not None:
            # Scales x and y by size / sensor side; the int fields truncate, so pixels are pooled.
            events = tonic.transforms.Downsample(sensor_size=tuple(self.sensor_size),
                                                 target_size=(self.size, self.size))(events)
        frames = tonic.transforms.ToFrame(sensor_size=self.frame_sensor_size, n_time_bins=self.T)(events)
        return torch.from_numpy(np.ascontiguousarray(frames, dtype=np.float32))


# ------------------------------------------------------------------------ tonic data sets, local only

def _sample_files(folder: Path, ext: str) -> List[Path]:
    """What tonic counts: the files matching ``**/*<ext>`` under ``folder``."""
    return list(folder.glob(f"**/*{ext}"))


class _LocalFiles:
    """Mixin for a tonic data set class: check the files like tonic does, never download, name bad files.

    The subclass must keep the tonic class's name (tonic's folder is ``<save_to>/<class name>``).
    """

    file_ext: ClassVar[str]
    min_files: ClassVar[int]  # tonic's threshold in ``_check_exists``

    def _check_exists(self) -> bool:
        root = Path(self.location_on_system)
        name = type(self).__name__
        if not root.is_dir():
            raise EslError(f"{name}: folder {root} not found")
        archive = root / self.filename
        extracted = root / self.folder_name
        if not archive.is_file():
            raise EslError(f"{name}: missing {archive} (tonic needs the original archive next to the extracted "
                           f"files; it only checks that the file exists)")
        files = _sample_files(extracted, self.file_ext)
        if len(files) < self.min_files:
            raise EslError(f"{name}: {extracted} holds {len(files)} {self.file_ext} files, tonic expects at least "
                           f"{self.min_files} (is {self.filename} fully extracted there?)")
        self._check_layout(files)
        return True

    def _check_layout(self, files: List[Path]) -> None:
        """Checks on where the sample files lie, beyond tonic's count (override per data set)."""

    def download(self) -> None:
        raise EslError(f"{type(self).__name__}: data missing in {self.location_on_system}; downloading is disabled")

    def _read_check(self, index: int) -> None:
        """Cheap format checks on one sample file before tonic reads it (override per data set)."""

    def __getitem__(self, index: int):
        self._read_check(index)
        try:
            return super().__getitem__(index)
        except EslError:
            raise
        except (OSError, EOFError, ValueError, IndexError, KeyError) as e:
            raise EslError(f"{self.data[index]}: unreadable {type(self).__name__} sample "
                           f"({type(e).__name__}: {e})") from None


class NMNIST(_LocalFiles, tonic.datasets.NMNIST):
    """N-MNIST: ``.bin`` files of 40-bit events (x, y, polarity bit + 23-bit timestamp in us)."""

    file_ext = ".bin"
    min_files = 10000

    def _read_check(self, index: int) -> None:
        size = os.path.getsize(self.data[index])
        if size % 5:
            raise EslError(f"{self.data[index]}: N-MNIST .bin size {size} is not a multiple of 5 bytes (truncated?)")


class DVSGesture(_LocalFiles, tonic.datasets.DVSGesture):
    """DVS128 Gesture (tonic's preprocessed copy): one ``.npy`` (N x 4: x, y, p, t in ms) per gesture."""

    file_ext = ".npy"
    min_files = 100


class CIFAR10DVS(_LocalFiles, tonic.datasets.CIFAR10DVS):
    """CIFAR10-DVS: one AEDAT 4.0 ``.aedat4`` recording per image, in folders named after the class."""

    file_ext = ".aedat4"
    min_files = 1000

    def _check_layout(self, files: List[Path]) -> None:
        # tonic takes the label from the parent folder's name (a KeyError for any other folder).
        for path in files:
            if path.parent.name not in self.classes:
                raise EslError(f"CIFAR10DVS: {path} is not in a class folder ({', '.join(self.classes)})")


# ----------------------------------------------------------------------------------------------- helpers

def _check_T(T: int) -> None:
    if int(T) < 1:
        raise EslError(f"T must be at least 1, got {T}")


def _check_size(size: Optional[int], sensor_size: Sequence[int]) -> None:
    if size is not None and not 1 <= int(size) <= min(sensor_size[:2]):
        raise EslError(f"size must lie in 1..{min(sensor_size[:2])}, got {size}")


def _sort_samples(ds, extra: Sequence[str] = ()) -> None:
    """Order the samples by file path (tonic lists files in os.walk order, which is not fixed)."""
    order = sorted(range(len(ds.data)), key=lambda i: ds.data[i])
    for attr in ("data", "targets", *extra):
        values = getattr(ds, attr)
        setattr(ds, attr, [values[i] for i in order])


def _open(cls, data_dir: Path, transform: EventsToFrames, num_classes: int, extra: Sequence[str] = (), **kwargs):
    """Build one local-only tonic data set, sort it, and check its labels; layout errors become EslError."""
    try:
        ds = cls(str(data_dir), transform=transform, **kwargs)
    except EslError:
        raise
    except (ValueError, KeyError) as e:
        raise EslError(f"{cls.__name__}: unexpected file layout under {Path(data_dir) / cls.__name__} "
                       f"({type(e).__name__}: {e})") from None
    if len(ds) == 0:
        raise EslError(f"{cls.__name__}: no {cls.file_ext} samples under {ds.location_on_system}")
    _sort_samples(ds, extra)
    bad = sorted({t for t in ds.targets if not 0 <= t < num_classes})
    if bad:
        raise EslError(f"{cls.__name__}: labels {bad} outside 0..{num_classes - 1} under {ds.location_on_system}")
    return ds


def _module_available(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


def stratified_split(targets: Sequence[int], test_fraction: float, seed: int) -> Tuple[List[int], List[int]]:
    """Indices (train, test): ``test_fraction`` of every class (at least one if it has two or more) held out.

    Per class (in label order), the class's indices are shuffled by one generator seeded with ``seed``;
    both index lists are returned sorted.
    """
    gen = torch.Generator().manual_seed(seed)
    targets = list(targets)
    train: List[int] = []
    test: List[int] = []
    for label in sorted(set(targets)):
        idx = [i for i, t in enumerate(targets) if t == label]
        perm = [idx[j] for j in torch.randperm(len(idx), generator=gen).tolist()]
        n_test = max(1, int(round(test_fraction * len(idx)))) if len(idx) > 1 else 0
        test += perm[:n_test]
        train += perm[n_test:]
    return sorted(train), sorted(test)


# ----------------------------------------------------------------------------------------------- loaders

def load_nmnist(data_dir: Path, *, T: int, size: Optional[int] = None,
                val_fraction: float = VAL_FRACTION) -> DataSplits:
    """N-MNIST (34 x 34, 2 polarities, 10 classes) from ``<data_dir>/NMNIST``: frames (T, 2, 34, 34), or
    (T, 2, size, size)."""
    _check_T(T)
    _check_size(size, NMNIST.sensor_size)
    frames = EventsToFrames(NMNIST.sensor_size, T, size)
    train_full = _open(NMNIST, data_dir, frames, 10, train=True)
    test = _open(NMNIST, data_dir, frames, 10, train=False)
    train, val = split_train_val(train_full, val_fraction)
    return _splits(train, val, test, frames, 10)


def load_dvsgesture(data_dir: Path, *, T: int, size: Optional[int] = None,
                    val_fraction: float = VAL_FRACTION) -> DataSplits:
    """DVS128 Gesture (128 x 128, 2 polarities, 11 classes) from ``<data_dir>/DVSGesture``.

    Frames (T, 2, 128, 128), or (T, 2, size, size) with events pooled onto a smaller grid.
    """
    _check_T(T)
    _check_size(size, DVSGesture.sensor_size)
    frames = EventsToFrames(DVSGesture.sensor_size, T, size)
    extra = ("users", "lighting")
    train_full = _open(DVSGesture, data_dir, frames, 11, extra, train=True)
    test = _open(DVSGesture, data_dir, frames, 11, extra, train=False)
    train, val = split_train_val(train_full, val_fraction)
    return _splits(train, val, test, frames, 11)


def load_cifar10dvs(data_dir: Path, *, T: int, size: Optional[int] = None,
                    val_fraction: float = VAL_FRACTION) -> DataSplits:
    """CIFAR10-DVS (128 x 128, 2 polarities, 10 classes) from ``<data_dir>/CIFAR10DVS``.

    No official split: :func:`stratified_split` holds out a fixed 10 % of each class as the test set.
    Frames (T, 2, 128, 128), or (T, 2, size, size). Needs the ``aedat`` package to read ``.aedat4``.
    """
    _check_T(T)
    _check_size(size, CIFAR10DVS.sensor_size)
    frames = EventsToFrames(CIFAR10DVS.sensor_size, T, size)
    full = _open(CIFAR10DVS, data_dir, frames, 10)
    if not _module_available("aedat"):
        raise EslError("CIFAR10DVS: reading .aedat4 files needs the 'aedat' package (pip install aedat), "
                       "which is not installed")
    train_idx, test_idx = stratified_split(full.targets, CIFAR10DVS_TEST_FRACTION, CIFAR10DVS_SPLIT_SEED)
    train, val = split_train_val(Subset(full, train_idx), val_fraction)
    return _splits(train, val, Subset(full, test_idx), frames, 10)


def _splits(train, val, test, frames: EventsToFrames, num_classes: int) -> DataSplits:
    w, h, p = frames.frame_sensor_size
    return DataSplits(train=train, val=val, test=test, input_shape=(p, h, w), num_classes=num_classes, temporal=True)


__all__ = ["EventsToFrames", "NMNIST", "DVSGesture", "CIFAR10DVS", "stratified_split", "load_nmnist",
           "load_dvsgesture", "load_cifar10dvs", "CIFAR10DVS_SPLIT_SEED", "CIFAR10DVS_TEST_FRACTION"]
