"""Static image data sets read from their official files in a local folder (nothing is downloaded).

MNIST -- the four idx files of http://yann.lecun.com/exdb/mnist/, each plain or gzip'd (``.gz``), lying
directly in the data folder or in ``<data_dir>/MNIST/raw`` (torchvision's layout):

- ``train-images-idx3-ubyte``, ``t10k-images-idx3-ubyte``: magic ``00 00 08 03`` (two zero bytes, type
  code 0x08 = unsigned byte, 3 dimensions), then the dimensions N, rows, cols as big-endian uint32, then
  N * rows * cols pixel bytes (row-major, 0 = background).
- ``train-labels-idx1-ubyte``, ``t10k-labels-idx1-ubyte``: magic ``00 00 08 01``, N as big-endian uint32,
  then N label bytes (0..9).

CIFAR-10 / CIFAR-100 -- the "python version" pickles of https://www.cs.toronto.edu/~kriz/cifar.html:

- ``cifar-10-batches-py/data_batch_1`` .. ``data_batch_5`` and ``test_batch``: dicts with ``b'data'``
  (N x 3072 uint8; each row is the 1024 red, then 1024 green, then 1024 blue values of a 32 x 32 image,
  row-major) and ``b'labels'`` (N ints, 0..9).
- ``cifar-100-python/train`` and ``test``: the same ``b'data'``, labels in ``b'fine_labels'`` (0..99).

The pickles are read with a restricted unpickler that only builds what these files contain (numpy arrays,
lists, dicts, numbers, strings), so a foreign pickle cannot run code.

Images become float32 tensors in [0, 1] of shape (C, H, W) (pixel / 255). The test set is the official
one; validation is a fixed 10 % of the official training set (:func:`split_train_val`).
"""
from __future__ import annotations

import gzip
import pickle
import struct
import zlib
from pathlib import Path
from typing import List, Sequence, Tuple

import numpy as np
import torch
from torch.utils.data import TensorDataset

from ..errors import EslError
from ..resources import check_memory
from .base import DataSplits, split_train_val

VAL_FRACTION = 0.1

# ----------------------------------------------------------------------------------------------- MNIST

MNIST_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
MNIST_CLASSES = 10
_IDX_UBYTE = 0x08


def _find_file(data_dir: Path, name: str, subdirs: Sequence[str], allow_gz: bool,
               aliases: Sequence[str] = ()) -> Path:
    """The first existing ``<dir>/<name>`` (or an alias, or either with ``.gz``) over ``data_dir`` and its
    ``subdirs``."""
    folders: List[Path] = [data_dir, *(data_dir / s for s in subdirs)]
    for folder in folders:
        for base in (name, *aliases):
            for candidate in ([base, base + ".gz"] if allow_gz else [base]):
                path = folder / candidate
                if path.is_file():
                    return path
    where = " or ".join(str(folder) for folder in folders)
    suffix = "[.gz]" if allow_gz else ""
    raise EslError(f"missing file {name}{suffix} in {where}")


# Bytes of memory per idx data byte while a data set is built from it: the uint8 array, its float32
# copy, the tensors and splits made from them.
_IDX_MEMORY_FACTOR = 6


def read_idx_ubyte(path: Path, ndim: int) -> np.ndarray:
    """Parse one idx file of unsigned bytes with ``ndim`` dimensions into a uint8 array of that shape.

    Header: bytes 0-1 are zero, byte 2 is the element type (0x08 = ubyte), byte 3 the number of
    dimensions; then one big-endian uint32 per dimension; then exactly prod(dims) data bytes.
    The header is read and checked first -- the size it declares against the memory guard -- and then
    exactly that many bytes (plus one, to notice extra data): a small ``.gz`` file that expands to
    gigabytes is refused before it is unpacked.
    """
    try:
        with (gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")) as f:
            head = f.read(4)
            if len(head) < 4:
                raise EslError(f"{path}: not an idx file (only {len(head)} bytes)")
            zero0, zero1, dtype_code, file_ndim = head
            if zero0 != 0 or zero1 != 0:
                raise EslError(f"{path}: not an idx file (bad magic number 0x{head.hex()})")
            if dtype_code != _IDX_UBYTE:
                raise EslError(f"{path}: idx element type 0x{dtype_code:02x} is not unsigned byte (0x08)")
            if file_ndim != ndim:
                raise EslError(f"{path}: idx file has {file_ndim} dimensions, expected {ndim}")
            header_len = 4 + 4 * ndim
            raw_dims = f.read(4 * ndim)
            if len(raw_dims) < 4 * ndim:
                raise EslError(f"{path}: truncated idx header ({4 + len(raw_dims)} of {header_len} bytes)")
            dims = struct.unpack(f">{ndim}I", raw_dims)
            expected = int(np.prod(dims, dtype=np.int64))
            check_memory(_IDX_MEMORY_FACTOR * expected, f"reading {path} ({' x '.join(map(str, dims))} bytes)",
                         "this is not a data set file this machine can hold")
            raw = f.read(expected + 1)
            got, more = len(raw), b"" if len(raw) <= expected else f.read(1 << 20)
            while more and got < expected + (64 << 20):  # count the excess, in bounded memory and time
                got, more = got + len(more), f.read(1 << 20)
    except (OSError, EOFError, zlib.error) as e:
        raise EslError(f"{path}: cannot read ({type(e).__name__}: {e})") from None
    if got < expected:
        raise EslError(f"{path}: truncated idx file: {got} data bytes, header {tuple(dims)} needs {expected}")
    if got > expected:
        raise EslError(f"{path}: size mismatch: {got}{'+' if more else ''} data bytes, header {tuple(dims)} needs "
                       f"{expected}")
    return np.frombuffer(raw, dtype=np.uint8).reshape(dims)


def _check_labels(labels: np.ndarray, num_classes: int, where: str) -> None:
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise EslError(f"{where}: labels must lie in 0..{num_classes - 1}, "
                       f"found {int(labels.min())}..{int(labels.max())}")


def _image_dataset(images: np.ndarray, labels: np.ndarray) -> TensorDataset:
    """uint8 images (N, C, H, W) and labels (N,) -> TensorDataset of float32 [0, 1] images and int64 labels."""
    x = torch.from_numpy(images.astype(np.float32) / 255.0)
    y = torch.from_numpy(labels.astype(np.int64))
    return TensorDataset(x, y)


def _load_mnist_split(data_dir: Path, images_name: str, labels_name: str) -> Tuple[np.ndarray, np.ndarray]:
    """One split's images (N, 1, H, W) uint8 and labels (N,) uint8, validated against each other."""
    # the official names, and the common spelling with a dot (``train-images.idx3-ubyte``)
    images_path = _find_file(data_dir, images_name, ("MNIST/raw",), allow_gz=True,
                             aliases=(images_name.replace("-idx", ".idx"),))
    labels_path = _find_file(data_dir, labels_name, ("MNIST/raw",), allow_gz=True,
                             aliases=(labels_name.replace("-idx", ".idx"),))
    images = read_idx_ubyte(images_path, 3)
    labels = read_idx_ubyte(labels_path, 1)
    if images.shape[0] != labels.shape[0]:
        raise EslError(f"{labels_path}: {labels.shape[0]} labels but {images_path.name} has {images.shape[0]} images")
    if images.shape[0] == 0:
        raise EslError(f"{images_path}: contains no images")
    _check_labels(labels, MNIST_CLASSES, str(labels_path))
    return images[:, None, :, :], labels


def load_mnist(data_dir: Path, val_fraction: float = VAL_FRACTION) -> DataSplits:
    """MNIST from its four idx files (see the module docstring): (1, 28, 28) images in [0, 1], 10 classes."""
    data_dir = Path(data_dir)
    x_tr, y_tr = _load_mnist_split(data_dir, MNIST_FILES["train_images"], MNIST_FILES["train_labels"])
    x_te, y_te = _load_mnist_split(data_dir, MNIST_FILES["test_images"], MNIST_FILES["test_labels"])
    if x_tr.shape[1:] != x_te.shape[1:]:
        raise EslError(f"MNIST in {data_dir}: train images are {x_tr.shape[2:]} but test images are {x_te.shape[2:]}")
    train, val = split_train_val(_image_dataset(x_tr, y_tr), val_fraction)
    return DataSplits(train=train, val=val, test=_image_dataset(x_te, y_te), input_shape=x_tr.shape[1:],
                      num_classes=MNIST_CLASSES)


# ----------------------------------------------------------------------------------------------- CIFAR

CIFAR_SHAPE = (3, 32, 32)
CIFAR_ROW = 3 * 32 * 32

# What the official CIFAR pickles (Python 2 cPickle of numpy arrays) and numpy 1.x/2.x pickles of
# uint8 arrays need; anything else is refused.
_SAFE_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("builtins", "bytearray"),
    ("__builtin__", "bytearray"),
    ("_codecs", "encode"),
}


class _CifarUnpickler(pickle.Unpickler):
    """An unpickler that only resolves the numpy/builtin globals a CIFAR batch needs."""

    def find_class(self, module: str, name: str):
        if (module, name) in _SAFE_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load global {module}.{name}")


def _read_cifar_pickle(path: Path) -> dict:
    """Unpickle one CIFAR batch file (``encoding='bytes'``: keys stay bytes, e.g. ``b'data'``)."""
    try:
        with open(path, "rb") as f:
            obj = _CifarUnpickler(f, encoding="bytes").load()
    except (OSError, EOFError, ValueError, TypeError, AttributeError, IndexError, pickle.UnpicklingError) as e:
        raise EslError(f"{path}: not a readable CIFAR python pickle ({type(e).__name__}: {e})") from None
    if not isinstance(obj, dict):
        raise EslError(f"{path}: not a CIFAR batch (pickle holds a {type(obj).__name__}, expected a dict)")
    return obj


def read_cifar_batch(path: Path, label_key: bytes, num_classes: int) -> Tuple[np.ndarray, np.ndarray]:
    """One CIFAR batch -> uint8 images (N, 3, 32, 32) and int64 labels (N,), validated."""
    batch = _read_cifar_pickle(path)
    for key in (b"data", label_key):
        if key not in batch:
            raise EslError(f"{path}: CIFAR batch has no key {key!r} (keys: {sorted(batch)!r})")
    data = batch[b"data"]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != CIFAR_ROW:
        desc = f"{data.dtype} array {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise EslError(f"{path}: b'data' must be a uint8 array (N, {CIFAR_ROW}), got {desc}")
    try:
        labels = np.asarray(batch[label_key], dtype=np.int64)
    except (TypeError, ValueError):
        raise EslError(f"{path}: {label_key!r} is not a list of integers") from None
    if labels.shape != (data.shape[0],):
        raise EslError(f"{path}: {label_key!r} has shape {labels.shape}, "
                       f"expected ({data.shape[0]},) to match b'data'")
    _check_labels(labels, num_classes, f"{path} {label_key!r}")
    return data.reshape(-1, *CIFAR_SHAPE), labels


def _cifar_folder(data_dir: Path, folder: str, first_file: str) -> Path:
    """``data_dir/folder`` if it holds ``first_file``, else ``data_dir`` itself if it does."""
    for candidate in (data_dir / folder, data_dir):
        if (candidate / first_file).is_file():
            return candidate
    raise EslError(f"missing file {first_file} in {data_dir / folder} or {data_dir}")


def _cifar_splits(root: Path, train_files: Sequence[str], test_file: str, label_key: bytes, num_classes: int,
                  val_fraction: float) -> DataSplits:
    def read(names: Sequence[str]) -> TensorDataset:
        parts = []
        for name in names:
            path = root / name
            if not path.is_file():
                raise EslError(f"missing file {name} in {root}")
            parts.append(read_cifar_batch(path, label_key, num_classes))
        return _image_dataset(np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]))

    train_full = read(train_files)
    if len(train_full) < 2:
        raise EslError(f"{root}: the training batches hold {len(train_full)} images; need at least 2")
    train, val = split_train_val(train_full, val_fraction)
    return DataSplits(train=train, val=val, test=read([test_file]), input_shape=CIFAR_SHAPE, num_classes=num_classes)


CIFAR10_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))


def load_cifar10(data_dir: Path, val_fraction: float = VAL_FRACTION) -> DataSplits:
    """CIFAR-10 from ``cifar-10-batches-py/`` (or the batches directly in ``data_dir``): (3, 32, 32), 10 classes."""
    root = _cifar_folder(Path(data_dir), "cifar-10-batches-py", CIFAR10_TRAIN[0])
    return _cifar_splits(root, CIFAR10_TRAIN, "test_batch", b"labels", 10, val_fraction)


def load_cifar100(data_dir: Path, val_fraction: float = VAL_FRACTION) -> DataSplits:
    """CIFAR-100 (fine labels) from ``cifar-100-python/`` (or ``train``/``test`` in ``data_dir``): 100 classes."""
    root = _cifar_folder(Path(data_dir), "cifar-100-python", "train")
    return _cifar_splits(root, ("train",), "test", b"fine_labels", 100, val_fraction)


__all__ = ["load_mnist", "load_cifar10", "load_cifar100", "read_idx_ubyte", "read_cifar_batch"]
