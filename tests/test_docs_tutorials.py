"""The tutorials of the documentation site (``docs/tutorials/*.py``) run end to end, with tiny settings, and
what their pages say they show holds. ``own_snntorch_model.py`` is run by ``tests/test_library.py``."""
from __future__ import annotations

import gzip
import importlib.util
import struct
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
TUTORIALS = ROOT / "docs" / "tutorials"
MNIST = ROOT.parent / "shared" / "data" / "mnist"


def tutorial(name: str):
    spec = importlib.util.spec_from_file_location(f"tutorial_{name}", TUTORIALS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def mnist_slice(dest: Path, train: int, test: int) -> Path:
    """The first images of the real MNIST files, written as plain idx files (what --data-dir reads)."""
    dest.mkdir()
    for split, n in (("train", train), ("t10k", test)):
        for kind, magic, item in (("images", 2051, 784), ("labels", 2049, 1)):
            raw = gzip.open(MNIST / f"{split}-{kind}-idx{3 if kind == 'images' else 1}-ubyte.gz").read()
            head = 16 if kind == "images" else 8
            assert struct.unpack(">I", raw[:4])[0] == magic
            dims = struct.pack(">II", 28, 28) if kind == "images" else b""
            body = raw[head:head + n * item]
            (dest / f"{split}-{kind}-idx{3 if kind == 'images' else 1}-ubyte").write_bytes(
                struct.pack(">II", magic, n) + dims + body)
    return dest


@pytest.mark.skipif(not (MNIST / "train-images-idx3-ubyte.gz").is_file(),
                    reason=f"real MNIST idx files not found in {MNIST}")
def test_mnist_benchmark_tutorial(tmp_path):
    data = mnist_slice(tmp_path / "mnist", 1200, 200)
    rows = tutorial("mnist_benchmark").main(["--data-dir", str(data), "--epochs", "1", "--out", str(tmp_path / "runs"),
                                             "--no-progress"])
    by = {r["config"]: r for r in rows}
    assert list(by) == ["configs/mnist_dense.toml", "configs/mnist_esl.toml", "configs/mnist_pq.toml"]
    assert [r["method"] for r in rows] == ["dense", "esl", "pq"] and all(r["epochs"] == 1 for r in rows)
    assert by["configs/mnist_dense.toml"]["density"] == 1.0
    assert 0.09 <= by["configs/mnist_esl.toml"]["density"] <= 0.1
    assert 0 < by["configs/mnist_pq.toml"]["density"] <= 0.5  # pq: sparse from its 50 % start
    for r in rows:
        assert 1 <= r["cores_lower_bound"] <= r["cores_packed"] and r["truenorth_uj"] > 0
        files = {p.name for p in Path(r["run"]).iterdir()}
        assert {"checkpoint.pt", "config.toml", "summary.json", "metrics.csv"} <= files


def test_deploy_to_lava_tutorial(tmp_path):
    r = tutorial("deploy_to_lava").main(["--epochs", "1", "--width", "0.1", "--limit", "20", "--out", str(tmp_path),
                                         "--no-progress"])
    sims = {(s["network"], s["backend"]): s for s in r["simulate"]}
    assert set(sims) == {("float", "lava"), ("float", "lava-fixed"), ("8-bit QAT", "lava"),
                         ("8-bit QAT", "lava-fixed"), ("8-bit QAT", "netx")}
    for key, s in sims.items():
        assert s["samples"] == 20, key
    for key in (("float", "lava"), ("8-bit QAT", "lava"), ("8-bit QAT", "lava-fixed"), ("8-bit QAT", "netx")):
        assert set(sims[key]["layer_agreement"].values()) == {100.0}, key  # float exact; 8-bit: the trained grid
    assert min(sims["float", "lava-fixed"]["layer_agreement"].values()) > 95
    layers = r["lava_layers"]
    assert [(layer["in"], layer["out"]) for layer in layers] == [((1, 8, 8), (80,)), ((80,), (10,))]
    assert all(layer["weight_error"] < 1e-6 for layer in layers)  # --weight-bits 8: weights on Loihi 2's grid
    for run in r["runs"].values():
        assert (Path(run) / "model.nir").is_file() and (Path(run) / "model.lava").is_file()


def test_truenorth_energy_tutorial(tmp_path):
    r = tutorial("truenorth_energy").main(["--epochs", "1", "--width", "0.1", "--limit", "40", "--out", str(tmp_path),
                                           "--no-progress"])
    papers, chip, tw = r["papers"], r["chip"], r["truenorth_weights"]
    t = papers["totals"]
    assert papers["samples"] == 40 and papers["convention"] == "papers" and chip["convention"] == "chip"
    assert t["cores_lower_bound"] <= t["cores_packed"] <= t["cores_sparse"] <= t["cores_naive"]
    tn = papers["energy_j"]["truenorth"]
    assert tn["static_j"] == 0 and tn["total_j"] == pytest.approx(26e-12 * t["ops"], rel=1e-6)  # 26 pJ per event
    # the chip model: 42 mW for each occupied chip during the T + latency ticks of 1 ms a sample takes
    ct = chip["totals"]
    ticks = chip["T"] + ct["latency_ticks"]
    assert chip["energy_j"]["truenorth"]["static_j"] == pytest.approx(42e-3 * ct["chips"] * ticks * 1e-3)
    assert tw["mode"] == "duplicate" and tw["packed_cores_duplicated"] >= tw["packed_cores"]
    assert 0 <= tw["accuracy_truenorth"] <= 1 and all(0 < layer["rel_error"] < 1 for layer in tw["layers"])


def test_foreign_nir_tutorial(tmp_path):
    r = tutorial("foreign_nir").main(["--steps", "12", "--samples", "6", "--out", str(tmp_path)])
    own = r["snntorch_export"]
    assert own["samples"] == 6 and own["T"] == 12 and own["accuracy"] is None
    assert set(own["layer_agreement"].values()) == {100.0}
    assert own["writer"] == "snntorch" and own["writer_reference"]["ours_agreement"] == 100.0
    assert own["writer_reference"]["spikes"] > 0
    assert set(r["hand_built_lava"]["layer_agreement"].values()) == {100.0}
    assert min(r["hand_built_lava-fixed"]["layer_agreement"].values()) >= 99
    assert r["hand_built_lava"]["silent_layers"] == []
    e = r["hand_built_energy"]
    x = np.load(tmp_path / "spikes.npy")
    assert e["samples"] == 6 and e["T"] == 12
    assert e["layers"][0]["acs"] == pytest.approx(x.sum() / 6 * 30)  # every input spike reaches 30 neurons


def test_torchrun_tutorial(tmp_path):
    r = tutorial("torchrun_training").main(["--epochs", "1", "--out", str(tmp_path), "--no-progress"])
    assert r["world_size"] == 2
    assert r["masks_equal"] and all(r["masks_equal"].values())
    assert r["max_weight_diff"] < 1e-5
