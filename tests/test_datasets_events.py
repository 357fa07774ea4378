"""tonic event data sets: tiny files in the real on-disk formats, read through tonic's own reading code.

tonic's existence check wants many files (N-MNIST: 10000 ``.bin`` per split, DVS Gesture: 100 ``.npy``,
CIFAR10-DVS: 1000 ``.aedat4``). DVS Gesture and CIFAR10-DVS are tested with that real count (a few hundred
tiny files are cheap). For N-MNIST, 2 x 10000 files would dominate the run time, so those tests lower only
the threshold (``events.NMNIST.min_files``, which mirrors tonic's number; ``test_thresholds_mirror_tonic``
pins it to the installed tonic source); file discovery, label parsing, ``read_mnist_file`` and ``ToFrame``
are tonic's real code.
"""
from __future__ import annotations

import inspect

import numpy as np
import pytest
import tonic
import torch

from esl_deploy.datasets import events, load_dataset
from esl_deploy.errors import EslError

T = 4
# tonic's n_time_bins slicing: bin width w = (t_last - t_first) // T, bin k = [t_first + k w, t_first + (k+1) w),
# so an event exactly at t_last = t_first + T w lies in no bin. Each file below has one event per bin at
# t = k * 250 (us) plus a closing event at t = 1000 that is (by that rule) not counted.
BIN_TIMES = [0, 250, 500, 750]
END_TIME = 1000


def pixel(label: int, k: int):
    """(x, y, p) of the event in bin k of a sample with this label."""
    return label + 2 * k, 3 * k + 1, k % 2


def expected_frames(label: int, side: int, scale: float = 1.0) -> torch.Tensor:
    frames = torch.zeros(T, 2, side, side)
    for k in range(T):
        x, y, p = pixel(label, k)
        frames[k, p, int(y * scale), int(x * scale)] += 1
    return frames


# --------------------------------------------------------------------------------------------- N-MNIST


def nmnist_bin(label: int) -> bytes:
    """N-MNIST events: 5 bytes each, x, y, p << 7 | t[22:16], t[15:8], t[7:0] (t in us)."""
    out = bytearray()
    events_ = [(*pixel(label, k), t) for k, t in enumerate(BIN_TIMES)] + [(33, 33, 1, END_TIME)]
    for x, y, p, t in events_:
        out += bytes([x, y, (p << 7) | ((t >> 16) & 0x7F), (t >> 8) & 0xFF, t & 0xFF])
    return bytes(out)


def make_nmnist(root, per_digit=(2, 1)):
    """<root>/NMNIST/{train,test}.zip (empty: tonic only checks they exist) and Train|Test/<digit>/*.bin."""
    base = root / "NMNIST"
    for folder, archive, n in (("Train", "train.zip", per_digit[0]), ("Test", "test.zip", per_digit[1])):
        for digit in range(10):
            d = base / folder / str(digit)
            d.mkdir(parents=True)
            for i in range(n):
                (d / f"{digit * 100 + i:05d}.bin").write_bytes(nmnist_bin(digit))
        (base / archive).write_bytes(b"")
    return base


@pytest.fixture
def few_nmnist(monkeypatch):
    monkeypatch.setattr(events.NMNIST, "min_files", 10)


def test_thresholds_mirror_tonic():
    for cls, ours in ((tonic.datasets.NMNIST, events.NMNIST), (tonic.datasets.DVSGesture, events.DVSGesture),
                      (tonic.datasets.CIFAR10DVS, events.CIFAR10DVS)):
        source = inspect.getsource(cls._check_exists)
        assert f'_folder_contains_at_least_n_files_of_type({ours.min_files}, "{ours.file_ext}")' in source
        assert issubclass(ours, cls) and ours.__name__ == cls.__name__  # same folder <save_to>/<ClassName>


def test_nmnist_frames_labels_splits(tmp_path, few_nmnist):
    make_nmnist(tmp_path)
    splits = load_dataset("nmnist", tmp_path, T=T)
    assert splits.temporal and splits.input_shape == (2, 34, 34) and splits.num_classes == 10
    assert (len(splits.train), len(splits.val), len(splits.test)) == (18, 2, 10)
    for i in range(10):
        x, y = splits.test[i]
        assert x.dtype == torch.float32 and x.shape == (T, 2, 34, 34)
        assert y == i  # Test/<digit>/ folders in order; label = the folder's digit
        assert torch.equal(x, expected_frames(i, 34))
    x, y = splits.val[1]
    assert torch.equal(x, expected_frames(y, 34))
    batch = next(iter(torch.utils.data.DataLoader(splits.train, batch_size=5)))
    assert batch[0].shape == (5, T, 2, 34, 34) and batch[1].dtype == torch.int64


def test_nmnist_real_threshold_and_missing_files(tmp_path):
    with pytest.raises(EslError, match=r"NMNIST: folder .*NMNIST not found"):
        load_dataset("nmnist", tmp_path, T=T)
    base = make_nmnist(tmp_path)
    with pytest.raises(EslError, match=r"NMNIST/Train holds 20 \.bin files, tonic expects at least 10000"):
        load_dataset("nmnist", tmp_path, T=T)
    (base / "train.zip").unlink()
    with pytest.raises(EslError, match=r"NMNIST: missing .*NMNIST/train\.zip \(tonic needs the original archive"):
        load_dataset("nmnist", tmp_path, T=T)


def test_never_downloads(tmp_path, monkeypatch, few_nmnist):
    def no_network(*args, **kwargs):
        raise AssertionError("tonic tried to download")
    monkeypatch.setattr(tonic.dataset, "download_and_extract_archive", no_network)
    base = make_nmnist(tmp_path)
    (base / "test.zip").unlink()
    with pytest.raises(EslError, match=r"missing .*test\.zip"):
        load_dataset("nmnist", tmp_path, T=T)
    ds = events.NMNIST(str(tmp_path), train=True)
    with pytest.raises(EslError, match="downloading is disabled"):
        ds.download()


def test_nmnist_truncated_bin(tmp_path, few_nmnist):
    base = make_nmnist(tmp_path)
    bad = base / "Test" / "3" / "00300.bin"
    bad.write_bytes(nmnist_bin(3)[:-2])
    splits = load_dataset("nmnist", tmp_path, T=T)
    with pytest.raises(EslError, match=r"00300\.bin: N-MNIST \.bin size 23 is not a multiple of 5"):
        splits.test[3]


def test_bad_T(tmp_path):
    with pytest.raises(EslError, match="T must be at least 1, got 0"):
        load_dataset("nmnist", tmp_path, T=0)


# ----------------------------------------------------------------------------------------- DVS Gesture

USERS = range(1, 11)
LIGHTING = ("fluorescent", "fluorescent_led", "lab", "led", "natural")


def gesture_events(label: int, x_offset: int = 0) -> np.ndarray:
    """tonic's DVSGesture .npy: N x 4 (x, y, p, t in ms); tonic multiplies t by 1000 (-> us) on loading.

    Times 0, 25, 50, 75 ms and a closing event at 100 ms: the same binning as ``BIN_TIMES`` in us, x 100.
    """
    rows = [(x + x_offset, y, p, k * 25) for k, (x, y, p) in enumerate(pixel(label, k) for k in range(T))]
    return np.array(rows + [(127, 127, 1, 100)], dtype=np.int64)


def user_folder(u: int) -> str:
    return f"user{u:02d}_{LIGHTING[u % len(LIGHTING)]}"


def make_dvsgesture(root, x_offset: int = 0):
    """10 user folders x 10 gestures = 100 .npy per split (tonic's minimum), plus the (empty) archives."""
    base = root / "DVSGesture"
    for folder in ("ibmGestureTrain", "ibmGestureTest"):
        for u in USERS:
            d = base / folder / user_folder(u)
            d.mkdir(parents=True)
            for k in range(10):
                label = (u + k) % 11
                np.save(d / f"{label}.npy", gesture_events(label, x_offset))
        (base / f"{folder}.tar.gz").write_bytes(b"")
    return base


def test_dvsgesture_frames_labels_splits(tmp_path):
    make_dvsgesture(tmp_path)
    splits = load_dataset("dvsgesture", tmp_path, T=T)
    assert splits.temporal and splits.input_shape == (2, 128, 128) and splits.num_classes == 11
    assert (len(splits.train), len(splits.val), len(splits.test)) == (90, 10, 100)
    test = splits.test
    assert test.data == sorted(test.data)  # fixed order, whatever os.walk gives
    for i in (0, 37, 99):
        x, y = test[i]
        path = test.data[i]
        assert y == int(path.rsplit("/", 1)[1][:-4])
        assert test.users[i] == int(path.split("/user")[1][:2])
        assert path.split("/")[-2].endswith(test.lighting[i])
        assert x.dtype == torch.float32 and x.shape == (T, 2, 128, 128)
        # t in ms (0, 25, 50, 75, 100) -> us: the same binning as the other sets.
        assert torch.equal(x, expected_frames(y, 128))
    assert set(test.lighting) == set(LIGHTING)


def test_dvsgesture_downsampled(tmp_path):
    make_dvsgesture(tmp_path, x_offset=100)
    splits = events.load_dvsgesture(tmp_path, T=T, size=32)  # ``size`` is not a registry option
    assert splits.input_shape == (2, 32, 32)
    x, y = splits.test[5]
    assert x.shape == (T, 2, 32, 32) and x.sum() == T
    expected = torch.zeros(T, 2, 32, 32)
    for k in range(T):
        px, py, p = pixel(y, k)
        expected[k, p, (py * 32) // 128, ((px + 100) * 32) // 128] += 1
    assert torch.equal(x, expected)


def test_dvsgesture_bad_files(tmp_path):
    base = make_dvsgesture(tmp_path)
    with pytest.raises(EslError, match=r"size must lie in 1\.\.128, got 200"):
        events.load_dvsgesture(tmp_path, T=T, size=200)
    bad = base / "ibmGestureTest" / user_folder(1) / "0.npy"
    bad.write_bytes(b"\x93NUMPY garbage")
    splits = load_dataset("dvsgesture", tmp_path, T=T)
    with pytest.raises(EslError, match=r"_fluorescent_led/0\.npy: unreadable DVSGesture sample \(ValueError"):
        splits.test[splits.test.data.index(str(bad))]
    np.save(base / "ibmGestureTrain" / user_folder(2) / "12.npy", gesture_events(1))
    with pytest.raises(EslError, match=r"DVSGesture: labels \[12\] outside 0\.\.10"):
        load_dataset("dvsgesture", tmp_path, T=T)


def test_dvsgesture_missing_and_layout(tmp_path):
    base = make_dvsgesture(tmp_path)
    (base / "ibmGestureTest.tar.gz").unlink()
    with pytest.raises(EslError, match=r"missing .*DVSGesture/ibmGestureTest\.tar\.gz"):
        load_dataset("dvsgesture", tmp_path, T=T)
    (base / "ibmGestureTest.tar.gz").write_bytes(b"")
    (base / "ibmGestureTest" / "nouser").mkdir()
    with pytest.raises(EslError, match=r"DVSGesture: unexpected file layout under .*DVSGesture \(ValueError"):
        load_dataset("dvsgesture", tmp_path, T=T)


# ----------------------------------------------------------------------------------------- CIFAR10-DVS

CLASSES = list(tonic.datasets.CIFAR10DVS.classes)
# What aedat.Decoder yields per event packet; tonic renames the fields to t, x, y, p.
AEDAT_EVENT = np.dtype([("t", "<u8"), ("x", "<u2"), ("y", "<u2"), ("on", "?")])


def make_cifar10dvs(root, per_class: int = 100, content=None):
    """CIFAR10DVS.zip (empty) and <class>/cifar10_<class>_<i>.aedat4, 100 per class (tonic's 1000 minimum)."""
    base = root / "CIFAR10DVS"
    for label, name in enumerate(CLASSES):
        d = base / name
        d.mkdir(parents=True)
        for i in range(per_class):
            (d / f"cifar10_{name}_{i}.aedat4").write_bytes(b"" if content is None else content(label))
    (base / "CIFAR10DVS.zip").write_bytes(b"")
    return base


def test_cifar10dvs_needs_aedat(tmp_path, monkeypatch):
    with pytest.raises(EslError, match=r"CIFAR10DVS: folder .*CIFAR10DVS not found"):
        load_dataset("cifar10dvs", tmp_path, T=T)
    make_cifar10dvs(tmp_path)
    monkeypatch.setattr(events, "_module_available", lambda name: name != "aedat")
    with pytest.raises(EslError, match=r"needs the 'aedat' package \(pip install aedat\), which is not installed"):
        load_dataset("cifar10dvs", tmp_path, T=T)


def test_cifar10dvs_layout_errors(tmp_path):
    base = make_cifar10dvs(tmp_path, per_class=99)
    with pytest.raises(EslError, match=r"CIFAR10DVS holds 990 \.aedat4 files, tonic expects at least 1000"):
        load_dataset("cifar10dvs", tmp_path, T=T)
    for i in range(10):
        (base / "airplane" / f"extra_{i}.aedat4").write_bytes(b"")
    (base / "airplanes").mkdir()
    (base / "airplanes" / "x.aedat4").write_bytes(b"")
    with pytest.raises(EslError, match=r"CIFAR10DVS: .*airplanes/x\.aedat4 is not in a class folder \(airplane, "):
        load_dataset("cifar10dvs", tmp_path, T=T)


def test_cifar10dvs_split_and_frames_with_stand_in_decoder(tmp_path, monkeypatch):
    """Everything but the AEDAT 4 decoding, which needs the uninstalled ``aedat`` package.

    Only tonic's ``read_aedat4`` is replaced (it returns what ``aedat.Decoder`` would: uint64 t, uint16 x/y,
    bool on); file discovery, labels from class folders, field renaming, the split and ToFrame are real.
    """
    def content(label: int) -> bytes:
        ev = np.zeros(T + 1, AEDAT_EVENT)
        for k, t in enumerate(BIN_TIMES + [END_TIME]):
            x, y, p = pixel(label, k) if k < T else (127, 127, 1)
            ev[k] = (t, x + 90, y, bool(p))
        return ev.tobytes()

    make_cifar10dvs(tmp_path, content=content)
    monkeypatch.setattr(tonic.datasets.cifar10dvs, "read_aedat4",
                        lambda path: np.fromfile(path, dtype=AEDAT_EVENT))
    monkeypatch.setattr(events, "_module_available", lambda name: True)
    splits = events.load_cifar10dvs(tmp_path, T=T, size=64)
    assert splits.temporal and splits.input_shape == (2, 64, 64) and splits.num_classes == 10
    assert (len(splits.train), len(splits.val), len(splits.test)) == (810, 90, 100)
    full = splits.test.dataset
    test_labels = [full.targets[i] for i in splits.test.indices]
    assert np.bincount(test_labels).tolist() == [10] * 10  # 10 % of every class
    assert not set(splits.test.indices) & set(splits.train.dataset.indices)
    x, y = splits.test[7]
    assert x.shape == (T, 2, 64, 64) and y == full.targets[splits.test.indices[7]]
    assert full.data[splits.test.indices[7]].split("/")[-2] == CLASSES[y]
    expected = torch.zeros(T, 2, 64, 64)
    for k in range(T):
        px, py, p = pixel(y, k)
        expected[k, p, py // 2, (px + 90) // 2] += 1
    assert torch.equal(x, expected)
    # The split is fixed: loading again gives the same test recordings.
    again = events.load_cifar10dvs(tmp_path, T=T)
    assert again.test.indices == splits.test.indices and again.input_shape == (2, 128, 128)


def test_stratified_split():
    targets = [i % 3 for i in range(30)] + [3]
    train, test = events.stratified_split(targets, 0.1, seed=0)
    assert sorted(train + test) == list(range(31)) and not set(train) & set(test)
    assert [targets[i] for i in test].count(0) == 1 and 30 in train  # a single-sample class stays in train
    assert events.stratified_split(targets, 0.1, seed=0) == (train, test)
    assert events.stratified_split(targets, 0.1, seed=1) != (train, test)


def test_energy_and_simulate_read_event_data_at_the_frame_size_the_model_was_trained_at(tmp_path, capsys):
    """A model trained with --frame-size 32 takes (2, 32, 32) frames; esl energy and esl simulate load the
    events at that size again (before, they loaded the sensor's 128x128 and stopped on the shape)."""
    import json

    from esl_deploy.datasets import frame_size_for
    from helpers import run_cli

    assert frame_size_for("dvsgesture", (2, 32, 32)) == 32 and frame_size_for("mnist", (1, 28, 28)) is None
    assert frame_size_for("dvsgesture", (2, 32, 16)) is None and frame_size_for("nope", (2, 8, 8)) is None
    make_dvsgesture(tmp_path / "data", x_offset=100)
    run = tmp_path / "run"
    code, _, err = run_cli(capsys, "train", "--model", "convnet", "--dataset", "dvsgesture", "--data-dir",
                           tmp_path / "data", "--frame-size", "32", "--T", T, "--epochs", "1", "--width", "0.25",
                           "--out", run, "--no-progress")
    assert code == 0, err
    code, out, err = run_cli(capsys, "energy", run / "checkpoint.pt", "--hw", "truenorth", "--json")
    assert code == 0, err
    assert json.loads(out)["activity"]["samples"] == 100
    code, out, err = run_cli(capsys, "simulate", run / "checkpoint.pt", "--backend", "snntorch", "--json",
                             "--no-progress")
    assert code == 0, err
    assert json.loads(out)["samples"] == 100
