"""MNIST idx and CIFAR pickle loaders: tiny files in the official on-disk formats, read by the real code."""
from __future__ import annotations

import gzip
import os
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from esl_deploy.datasets import load_dataset
from esl_deploy.errors import EslError

# ----------------------------------------------------------------------------------------------- MNIST


def idx_bytes(array: np.ndarray, dtype_code: int = 0x08, ndim: int | None = None) -> bytes:
    """An idx file: 00 00 <type> <ndim>, big-endian uint32 dims, then the raw bytes."""
    ndim = array.ndim if ndim is None else ndim
    header = bytes([0, 0, dtype_code, ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def write(path: Path, data: bytes, gz: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if gz:
        path = path.with_name(path.name + ".gz")
        with gzip.open(path, "wb") as f:
            f.write(data)
    else:
        path.write_bytes(data)
    return path


def make_mnist(folder: Path, n_train: int = 20, n_test: int = 5, gz: bool = False, seed: int = 0):
    rng = np.random.default_rng(seed)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": (np.arange(n_train) % 10).astype(np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": ((np.arange(n_test) * 3) % 10).astype(np.uint8),
    }
    for name, arr in arrays.items():
        write(folder / name, idx_bytes(arr), gz=gz)
    return arrays


def test_mnist_plain_files_in_data_dir(tmp_path):
    arrays = make_mnist(tmp_path)
    splits = load_dataset("mnist", tmp_path)
    assert splits.input_shape == (1, 28, 28) and splits.num_classes == 10 and not splits.temporal
    assert (len(splits.train), len(splits.val), len(splits.test)) == (18, 2, 5)
    # The test set is the t10k files, in order, scaled to [0, 1].
    for i in range(5):
        x, y = splits.test[i]
        assert x.dtype == torch.float32 and x.shape == (1, 28, 28)
        assert torch.allclose(x[0], torch.from_numpy(arrays["t10k-images-idx3-ubyte"][i] / 255.0).float())
        assert int(y) == int(arrays["t10k-labels-idx1-ubyte"][i])
    # Train + val together are exactly the training images with their labels.
    seen = sorted(int(i) for i in list(splits.train.indices) + list(splits.val.indices))
    assert seen == list(range(20))
    idx = splits.val.indices[0]
    x, y = splits.val[0]
    assert torch.equal(x[0], torch.from_numpy(arrays["train-images-idx3-ubyte"][idx].astype(np.float32) / 255.0))
    assert int(y) == idx % 10
    assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0


def test_mnist_gzipped_torchvision_layout(tmp_path):
    arrays = make_mnist(tmp_path / "MNIST" / "raw", gz=True)
    assert (tmp_path / "MNIST" / "raw" / "t10k-images-idx3-ubyte.gz").is_file()
    splits = load_dataset("mnist", tmp_path)
    x, y = splits.test[4]
    assert torch.equal(x[0], torch.from_numpy(arrays["t10k-images-idx3-ubyte"][4].astype(np.float32) / 255.0))
    assert int(y) == 2
    # The fixed validation split does not depend on the file layout.
    assert list(splits.val.indices) == list(load_dataset("mnist", _plain_copy(tmp_path, arrays)).val.indices)


def _plain_copy(tmp_path: Path, arrays) -> Path:
    folder = tmp_path / "plain"
    for name, arr in arrays.items():
        write(folder / name, idx_bytes(arr))
    return folder


def test_missing_data_folder(tmp_path):
    with pytest.raises(EslError, match="data folder not found"):
        load_dataset("mnist", tmp_path / "nope")


def test_mnist_missing_file_is_named(tmp_path):
    make_mnist(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(EslError, match=r"missing file t10k-labels-idx1-ubyte\[\.gz\]"):
        load_dataset("mnist", tmp_path)


@pytest.mark.parametrize("corrupt, message", [
    (lambda b: b[: len(b) - 7], r"truncated idx file: 15673 data bytes, header \(20, 28, 28\) needs 15680"),
    (lambda b: b + b"\x00\x00", "size mismatch: 15682 data bytes"),
    (lambda b: b"\x01\x00" + b[2:], r"bad magic number 0x01000803"),
    (lambda b: b[:2] + b"\x0d" + b[3:], r"element type 0x0d is not unsigned byte"),
    (lambda b: b[:3] + b"\x02" + b[4:], "idx file has 2 dimensions, expected 3"),
    (lambda b: b[:10], r"truncated idx header \(10 of 16 bytes\)"),
    (lambda b: b[:3], "not an idx file"),
])
def test_mnist_corrupt_images_file(tmp_path, corrupt, message):
    make_mnist(tmp_path)
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(corrupt(path.read_bytes()))
    with pytest.raises(EslError, match=message) as err:
        load_dataset("mnist", tmp_path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_mnist_count_mismatch(tmp_path):
    make_mnist(tmp_path)
    write(tmp_path / "train-labels-idx1-ubyte", idx_bytes(np.zeros(19, np.uint8)))
    with pytest.raises(EslError, match="19 labels but train-images-idx3-ubyte has 20 images"):
        load_dataset("mnist", tmp_path)


def test_mnist_label_out_of_range(tmp_path):
    make_mnist(tmp_path)
    write(tmp_path / "t10k-labels-idx1-ubyte", idx_bytes(np.array([0, 1, 2, 3, 12], np.uint8)))
    with pytest.raises(EslError, match=r"labels must lie in 0\.\.9, found 0\.\.12"):
        load_dataset("mnist", tmp_path)


def test_mnist_truncated_gzip(tmp_path):
    make_mnist(tmp_path, gz=True)
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:-20])
    with pytest.raises(EslError, match=r"train-images-idx3-ubyte\.gz: cannot read \(EOFError"):
        load_dataset("mnist", tmp_path)


def test_mnist_not_gzip(tmp_path):
    make_mnist(tmp_path, gz=True)
    (tmp_path / "t10k-images-idx3-ubyte.gz").write_bytes(b"this is not gzip data at all")
    with pytest.raises(EslError, match=r"t10k-images-idx3-ubyte\.gz: cannot read \(BadGzipFile"):
        load_dataset("mnist", tmp_path)


# ----------------------------------------------------------------------------------------------- CIFAR


def cifar_images(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 3, 32, 32), dtype=np.uint8)


def write_pickle(path: Path, obj, protocol: int = 2) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=protocol)


def cifar10_batch(images: np.ndarray, labels, name: str) -> dict:
    """The official batch dict (keys as Python 2 byte strings): rows are R plane, G plane, B plane."""
    return {b"batch_label": name.encode(), b"labels": list(labels), b"data": images.reshape(len(images), 3072),
            b"filenames": [f"img_{i}.png".encode() for i in range(len(images))]}


def make_cifar10(folder: Path, per_batch: int = 4, n_test: int = 3):
    images, labels = [], []
    for b in range(1, 6):
        imgs = cifar_images(per_batch, b)
        labs = [(b + i) % 10 for i in range(per_batch)]
        # Protocols 2 (as the original Python 2 files) and 4 (a Python 3 re-save) must both load.
        write_pickle(folder / f"data_batch_{b}", cifar10_batch(imgs, labs, f"training batch {b} of 5"),
                     protocol=2 if b % 2 else 4)
        images.append(imgs)
        labels += labs
    test_imgs = cifar_images(n_test, 99)
    write_pickle(folder / "test_batch", cifar10_batch(test_imgs, [9, 0, 5], "testing batch 1 of 1"))
    return np.concatenate(images), labels, test_imgs


def test_cifar10_official_layout(tmp_path):
    train_imgs, train_labels, test_imgs = make_cifar10(tmp_path / "cifar-10-batches-py")
    splits = load_dataset("cifar10", tmp_path)
    assert splits.input_shape == (3, 32, 32) and splits.num_classes == 10 and not splits.temporal
    assert (len(splits.train), len(splits.val), len(splits.test)) == (18, 2, 3)
    x, y = splits.test[1]
    assert x.dtype == torch.float32 and x.shape == (3, 32, 32)
    assert torch.equal(x, torch.from_numpy(test_imgs[1].astype(np.float32) / 255.0)) and int(y) == 0
    # A row is 1024 red values, then green, then blue: channel 1, pixel (2, 5) is byte 1024 + 2 * 32 + 5.
    row = test_imgs[2].reshape(3072)
    assert float(splits.test[2][0][1, 2, 5]) == pytest.approx(row[1024 + 2 * 32 + 5] / 255.0)
    # Training batches are concatenated in order 1..5.
    for k in range(2):
        idx = splits.val.indices[k]
        x, y = splits.val[k]
        assert torch.equal(x, torch.from_numpy(train_imgs[idx].astype(np.float32) / 255.0))
        assert int(y) == train_labels[idx]


def test_cifar10_batches_directly_in_data_dir(tmp_path):
    make_cifar10(tmp_path)
    assert len(load_dataset("cifar10", tmp_path).test) == 3


def test_cifar100_fine_labels(tmp_path):
    folder = tmp_path / "cifar-100-python"
    train_imgs, test_imgs = cifar_images(10, 1), cifar_images(2, 2)
    fine = [0, 99, 5, 17, 42, 63, 7, 88, 23, 50]
    write_pickle(folder / "train", {b"filenames": [], b"batch_label": b"training batch 1 of 1", b"fine_labels": fine,
                                    b"coarse_labels": [f // 5 for f in fine], b"data": train_imgs.reshape(10, 3072)})
    write_pickle(folder / "test", {b"fine_labels": [99, 3], b"coarse_labels": [19, 0],
                                   b"data": test_imgs.reshape(2, 3072)}, protocol=5)
    splits = load_dataset("cifar100", tmp_path)
    assert splits.num_classes == 100 and splits.input_shape == (3, 32, 32)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (9, 1, 2)
    assert [int(splits.test[i][1]) for i in range(2)] == [99, 3]
    assert torch.equal(splits.test[0][0], torch.from_numpy(test_imgs[0].astype(np.float32) / 255.0))
    idx = splits.val.indices[0]
    assert int(splits.val[0][1]) == fine[idx]


def test_cifar_missing_folder_and_files(tmp_path):
    with pytest.raises(EslError, match="missing file data_batch_1 in .*cifar-10-batches-py or"):
        load_dataset("cifar10", tmp_path)
    make_cifar10(tmp_path / "cifar-10-batches-py")
    (tmp_path / "cifar-10-batches-py" / "data_batch_4").unlink()
    with pytest.raises(EslError, match="missing file data_batch_4 in .*cifar-10-batches-py"):
        load_dataset("cifar10", tmp_path)
    with pytest.raises(EslError, match="missing file train in .*cifar-100-python or"):
        load_dataset("cifar100", tmp_path)


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


@pytest.mark.parametrize("content, message", [
    (b"definitely not a pickle", "not a readable CIFAR python pickle"),
    (pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 1]})[:-30],
     "not a readable CIFAR python pickle"),
    (pickle.dumps([1, 2, 3]), "pickle holds a list, expected a dict"),
    (pickle.dumps({b"labels": [0, 1]}), r"has no key b'data'"),
    (pickle.dumps({b"data": np.zeros((2, 3072), np.uint8)}), r"has no key b'labels'"),
    (pickle.dumps({b"data": np.zeros((2, 3, 32, 32), np.uint8), b"labels": [0, 1]}),
     r"b'data' must be a uint8 array \(N, 3072\), got uint8 array \(2, 3, 32, 32\)"),
    (pickle.dumps({b"data": np.zeros((2, 3072), np.float32), b"labels": [0, 1]}), "got float32 array"),
    (pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 1, 2]}),
     r"b'labels' has shape \(3,\), expected \(2,\)"),
    (pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 10]}), r"labels must lie in 0\.\.9"),
    (pickle.dumps({b"data": _Evil(), b"labels": [0]}), "refusing to load global posix.system"),
])
def test_cifar_bad_batch(tmp_path, content, message):
    folder = tmp_path / "cifar-10-batches-py"
    make_cifar10(folder)
    bad = folder / "data_batch_3"
    bad.write_bytes(content)
    with pytest.raises(EslError, match=message) as err:
        load_dataset("cifar10", tmp_path)
    assert str(bad) in str(err.value) and "\n" not in str(err.value)


def test_mnist_dotted_spelling_plain_and_gz(tmp_path):
    """``train-images.idx3-ubyte`` (the spelling many mirrors use) is read like the official names."""
    for gz in (False, True):
        folder = tmp_path / f"dotted_{gz}"
        arrays = make_mnist(folder, gz=gz)
        for p in list(folder.iterdir()):
            p.rename(p.with_name(p.name.replace("-idx", ".idx")))
        assert all(".idx" in p.name for p in folder.iterdir())
        splits = load_dataset("mnist", folder)
        x, y = splits.test[1]
        assert torch.allclose(x[0], torch.from_numpy(arrays["t10k-images-idx3-ubyte"][1] / 255.0).float())


REAL_MNIST = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"


@pytest.mark.skipif(not (REAL_MNIST / "train-images-idx3-ubyte.gz").is_file(),
                    reason=f"real MNIST files not found at {REAL_MNIST} (a benchmark fixture of this project)")
def test_mnist_reader_on_the_real_files():
    splits = load_dataset("mnist", REAL_MNIST)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (54000, 6000, 10000)
    counts = torch.bincount(splits.test.tensors[1].long(), minlength=10).tolist()
    assert counts == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]  # the published test split
    x, _ = splits.test[0]
    assert x.shape == (1, 28, 28) and 0.0 <= float(x.min()) and float(x.max()) == 1.0
