"""Energy arithmetic per hardware (hand-computed), constants and overrides, and ``esl energy`` end to end."""
import json
import sys
import types

import pytest
import torch
from torch import nn

import esl_deploy.cli as cli
import esl_deploy
import esl_deploy.hw_models.cli as hw_cli
from esl_deploy.errors import EslError
from esl_deploy.masks import LayerShape, layer_densities, random_mask, sparsifiable
from esl_deploy.models import ModelSpec, SpikingNet, build_model
from esl_deploy.neurons import LIF
from esl_deploy.hw_models.energy import (CONSTANTS, EnergyConstants, cmos45_energy, energies, energy_ratio, gpu_ann_energy,
                              hardware_list, loihi_energy, parse_overrides, truenorth_energy)
from esl_deploy.hw_models.sops import ActivityReport, NeuronActivity, SynapseActivity
from esl_deploy.hw_models.truenorth import CoreSpec, LayerMapping, NetworkMapping


def _activity():
    """T=8; layer a: 1,000 MACs (dense 5,000); layer b: 999,000 ACs (dense 495,000); 100 LIF neurons, 50 spikes."""
    a = SynapseActivity(name="a", kind="linear", in_shape=(10,), out_shape=(500,), synapses=500, weights=5000,
                        acs=0.0, macs=1000.0, ops_per_step=(125.0,) * 8, input_rate=1.0, dense_macs=5000)
    b = SynapseActivity(name="b", kind="linear", in_shape=(500,), out_shape=(990,), synapses=1000, weights=495000,
                        acs=999000.0, macs=0.0, ops_per_step=(124875.0,) * 8, input_rate=0.1, dense_macs=495000)
    return ActivityReport(samples=10, T=8, encoding="direct", layers=(a, b),
                          neurons=(NeuronActivity("n", neurons=100, spikes=50.0, rate=50 / 800),))


def _layer(name, cores):
    return LayerMapping(name=name, strategy="sparse", placement="naive", neurons=1, axons=1, synapses=1, cores=cores,
                        compute_cores=cores, adder_cores=0, splitter_cores=0, orphan_cores=0, partial_sum_neurons=0,
                        partial_sum_levels=0, splitter_neurons=0, splitter_levels=0, latency_ticks=1,
                        crossbar_utilisation=0.0, naive_cores=cores, lower_bound=1)


MAPPING = NetworkMapping(layers=(_layer("a", 4), _layer("b", 6)))  # 10 cores, latency 2 ticks


def test_default_constants_and_derivations():
    c = EnergyConstants()
    assert c["truenorth.sop_pj"] == 26.0 and c["loihi.sop_pj"] == 23.6
    assert (c["loihi.update_active_pj"], c["loihi.update_inactive_pj"]) == (81.0, 52.0)
    assert (c["45nm.mac_pj"], c["45nm.ac_pj"]) == (4.6, 0.9)
    assert (c["truenorth.floor_mw"], c["truenorth.total_mw"]) == (42.0, 72.0)
    # (72 - 42) mW over 1,048,576 neurons x 20 Hz x 128 synapses: the per-event energy without the floor
    assert c.truenorth_dynamic_j == pytest.approx(30e-3 / (4096 * 256 * 20 * 128)) == pytest.approx(11.176e-12, rel=1e-4)
    # and the same figures with the floor give back Merolla's 26 pJ (72 mW over the same event rate)
    assert 72e-3 / (4096 * 256 * 20 * 128) == pytest.approx(26.8e-12, rel=1e-2)
    assert c.gpu_j_per_flop == pytest.approx(300 / 15.7e12) == pytest.approx(19.108e-12, rel=1e-4)
    assert c.core == CoreSpec(256, 256, 4096)
    assert all(k.source and k.unit for k in CONSTANTS)


def test_truenorth_energy_by_hand_papers_convention():
    e = truenorth_energy(_activity(), MAPPING)  # default: the papers' convention
    # 1e6 events x 26 pJ, which already holds the static floor: nothing is added
    assert e.dynamic_j == pytest.approx(26e-6) and e.static_j == 0.0
    assert e.per_layer_j["a"] == pytest.approx(1000 * 26e-12)
    assert sum(e.per_layer_j.values()) == pytest.approx(e.total_j)


def test_truenorth_energy_by_hand_chip_model():
    e = truenorth_energy(_activity(), MAPPING, convention="chip")
    e_dyn = 30e-3 / (4096 * 256 * 20 * 128)
    # dynamic: 1e6 events x 11.18 pJ; static: 1 chip (10 cores) x 42 mW x (8 + 2) ticks x 1 ms
    assert e.dynamic_j == pytest.approx(1e6 * e_dyn)
    assert e.static_j == pytest.approx(42e-3 * 1 * 10 * 1e-3) == pytest.approx(4.2e-4)
    two_chips = NetworkMapping(layers=(_layer("a", 4000), _layer("b", 600)))
    assert truenorth_energy(_activity(), two_chips, convention="chip").static_j == pytest.approx(2 * 4.2e-4)
    with pytest.raises(ValueError):
        truenorth_energy(_activity(), MAPPING, convention="both")


def test_loihi_energy_by_hand():
    # papers' convention: 1e6 x 23.6 pJ; chip model: + 50 active x 81 pJ + (800 - 50) inactive x 52 pJ
    assert loihi_energy(_activity()).total_j == pytest.approx(23.6e-6)
    e = loihi_energy(_activity(), convention="chip")
    assert e.total_j == pytest.approx(23.6e-6 + (50 * 81 + 750 * 52) * 1e-12)
    assert e.per_layer_j["b"] == pytest.approx(999000 * 23.6e-12)


def test_45nm_and_gpu_energy_by_hand():
    e = cmos45_energy(_activity())
    assert e.total_j == pytest.approx(1000 * 4.6e-12 + 999000 * 0.9e-12)
    g = gpu_ann_energy(_activity())
    # 2 x 500,000 dense MACs = 1e6 FLOPs at 300 W / 15.7 TFLOPS
    assert g.total_j == pytest.approx(1e6 * 300 / 15.7e12) and g.model == "ann"
    assert "peak-spec bound" in g.note


def test_ratios_and_hardware_selection():
    es = energies(_activity(), MAPPING, ["all"])
    assert list(es) == ["truenorth", "loihi", "45nm", "gpu"]
    assert energy_ratio(es["gpu"], es["45nm"]) == pytest.approx((1e6 * 300 / 15.7e12) / 9.037e-7)
    assert energy_ratio(es["gpu"], es["truenorth"]) == pytest.approx(1.9108280e-5 / 26e-6)
    chip = energies(_activity(), MAPPING, ["all"], convention="chip")
    assert energy_ratio(chip["gpu"], chip["truenorth"]) == pytest.approx(
        1.9108280e-5 / (1e6 * 30e-3 / (4096 * 256 * 20 * 128) + 4.2e-4))
    assert list(energies(_activity(), None, ["loihi"])) == ["loihi", "gpu"]
    assert hardware_list(["45nm", "truenorth", "45nm"]) == ("truenorth", "45nm")
    with pytest.raises(ValueError):
        hardware_list(["tpu"])
    with pytest.raises(ValueError):
        energies(_activity(), None, ["truenorth"])


def test_overrides_change_the_arithmetic():
    c = parse_overrides(["truenorth.sop_pj=30", "gpu.tdp_w = 250", "truenorth.cores_per_chip=2"])
    assert truenorth_energy(_activity(), MAPPING, c).dynamic_j == pytest.approx(30e-6)
    assert c.gpu_j_per_flop == pytest.approx(250 / 15.7e12)
    assert c.core.cores_per_chip == 2
    assert EnergyConstants()["truenorth.sop_pj"] == 26.0  # the defaults are untouched


@pytest.mark.parametrize("bad", ["truenorth.sop_pj=0", "truenorth.sop_pj=-1", "truenorth.sop_pj=inf",
                                 "loihi.sop_pj=nan", "loihi.sop_pj=abc", "loihi.sop_pj", "=3", "tpu.sop_pj=1",
                                 "truenorth.cores_per_chip=2.5"])
def test_bad_overrides_are_user_errors(bad):
    with pytest.raises(EslError):
        parse_overrides([bad])


# ----------------------------------------------------------------------------------------------
# The command line
# ----------------------------------------------------------------------------------------------

def _sparse_mlp():
    g = torch.Generator().manual_seed(0)
    net = build_model(ModelSpec("mlp", (1, 8, 8), 10))
    params = sparsifiable(net)
    dens = layer_densities([LayerShape(n, tuple(w.shape)) for n, w in params], 0.1)
    with torch.no_grad():
        for n, w in params:
            w.mul_(random_mask(w.shape, dens[n], g))
    net.meta = {"method": "esl", "dataset": "digits", "T": 4, "encoding": "direct", "density": 0.1}
    return net


@pytest.fixture
def run_esl(monkeypatch, capsys, tmp_path):
    """Run ``esl energy`` through the real entry point with a model made in memory; (rc, stdout, stderr)."""
    model_file = tmp_path / "model.pt"
    model_file.write_bytes(b"")
    models = {"model": _sparse_mlp()}
    monkeypatch.setattr(cli, "_register_commands", lambda: cli.esl.add_command(hw_cli.energy_cmd, "energy"))
    monkeypatch.setattr(hw_cli, "load_source", lambda path, **kw: models["model"])

    def run(*args, model=None):
        if model is not None:
            models["model"] = model
        argv = ["energy", str(model_file), *args]
        try:
            cli.main(argv)
            rc = 0
        except SystemExit as e:
            rc = e.code
        out = capsys.readouterr()
        return rc, out.out, out.err
    return run


@pytest.mark.parametrize("args, message", [
    (["--hw", "tpu"], "tpu"),
    (["--const", "truenorth.sop_pj=0"], "positive"),
    (["--const", "truenorth.sop_pj=many"], "not a number"),
    (["--const", "truenorth.cores_per_chip=2", "--max-chips", "1"], "more than the 1 allowed"),
])
def test_cli_bad_input_is_one_line_and_exit_2(run_esl, args, message):
    rc, out, err = run_esl(*args, "--limit", "5")
    assert rc == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and message in err and "Traceback" not in err


def test_cli_model_it_cannot_cost(run_esl):
    net = SpikingNet([nn.Conv2d(1, 2, 3, padding=1), LIF((2, 8, 8)), nn.MaxPool2d(2), nn.Flatten(),
                      nn.Linear(32, 10), LIF((10,))], ModelSpec("convnet", (1, 8, 8), 10))
    net.meta = {"dataset": "digits", "T": 2, "encoding": "direct"}
    rc, _, err = run_esl("--limit", "5", model=net)
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "cannot cost layer layers.2 (MaxPool2d)" in err


def test_cli_json_and_plot(run_esl, tmp_path):
    png = tmp_path / "plots" / "energy.png"
    rc, out, err = run_esl("--hw", "all", "--limit", "20", "--json", "--plot", str(png))
    assert rc == 0, err
    d = json.loads(out)
    assert d["samples"] == 20 and d["T"] == 4 and d["dataset"] == "digits"
    assert [r["layer"] for r in d["layers"]] == ["layers.1", "layers.3"]
    assert d["layers"][0]["op"] == "MAC"  # direct encoding: analog input
    assert d["totals"]["ops"] == pytest.approx(sum(r["ops"] for r in d["layers"]))
    assert d["totals"]["ann_flops"] == 2 * (64 * 800 + 800 * 10)
    assert d["totals"]["cores_sparse"] <= d["totals"]["cores_naive"]
    assert d["totals"]["cores_lower_bound"] <= d["totals"]["cores_sparse"]
    tn, gpu = d["energy_j"]["truenorth"], d["energy_j"]["gpu"]
    assert d["ratio_ann_gpu_over_snn"]["truenorth"] == pytest.approx(gpu["total_j"] / tn["total_j"])
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not [p for p in png.parent.iterdir() if p.name != "energy.png"]  # no temporary file left


def test_cli_table(run_esl):
    rc, out, _ = run_esl("--hw", "loihi", "--limit", "10")
    assert rc == 0
    assert "layers.1" in out and "per-layer naive/sparse/LB" in out and "lower bound" in out and "energy ratio" in out and "loihi" in out


def test_load_source_dispatches_on_file_type(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(esl_deploy, "load", lambda p: calls.append(("pt", p)) or "net", raising=False)
    fake = types.ModuleType("esl_deploy.export.nir.read")
    fake.load_nir = lambda p, **kw: calls.append(("nir", p)) or "graph"
    monkeypatch.setitem(sys.modules, "esl_deploy.export.nir.read", fake)
    run = tmp_path / "run"
    run.mkdir()
    (run / "checkpoint.pt").write_bytes(b"")
    (tmp_path / "m.nir").write_bytes(b"")
    (tmp_path / "m.txt").write_bytes(b"")
    assert hw_cli.load_source(str(run)) == "net"
    assert hw_cli.load_source(str(tmp_path / "m.nir")) == "graph"
    assert calls == [("pt", str(run / "checkpoint.pt")), ("nir", str(tmp_path / "m.nir"))]
    with pytest.raises(EslError, match="unknown model file type"):
        hw_cli.load_source(str(tmp_path / "m.txt"))
    with pytest.raises(EslError, match="not found"):
        hw_cli.load_source(str(tmp_path / "missing.pt"))


def test_cli_list_constants_shows_overrides(run_esl, capsys):
    try:
        cli.main(["energy", "--list-constants", "--const", "gpu.tdp_w=250"])
    except SystemExit as e:
        assert e.code == 0
    out = capsys.readouterr().out
    assert "truenorth.sop_pj" in out and "Merolla" in out and "[overridden; default 300]" in out


def test_cli_strategy_sets_the_chips_and_latency_behind_static_energy(run_esl):
    # chip model: static energy = chips x 42 mW x (T + latency) ticks x 1 ms, with the chosen strategy's mapping
    rc, out, _ = run_esl("--hw", "truenorth", "--limit", "5", "--json", "--strategy", "naive", "--convention", "chip")
    d = json.loads(out)
    naive = d["mappings"]["naive"]
    ticks = d["T"] + naive["latency_ticks"]
    assert d["totals"]["cores"] == naive["cores"] and d["convention"] == "chip"
    assert d["energy_j"]["truenorth"]["static_j"] == pytest.approx(d["totals"]["chips"] * 42e-3 * ticks * 1e-3)
    rc, out, _ = run_esl("--hw", "truenorth", "--limit", "5", "--json")
    d = json.loads(out)
    assert d["convention"] == "papers" and d["energy_j"]["truenorth"]["static_j"] == 0.0


def test_cli_packed_is_the_default_and_truenorth_weights(run_esl):
    rc, out, _ = run_esl("--hw", "truenorth", "--limit", "20", "--json", "--convention", "chip", "--truenorth-weights")
    assert rc == 0
    d = json.loads(out)
    p, t = d["packed"], d["totals"]
    assert d["strategy"] == "packed" and t["cores"] == t["cores_packed"] == p["cores"]
    assert t["cores_lower_bound"] <= t["cores_packed"] <= t["cores_sparse"] <= t["cores_naive"]
    ticks = d["T"] + p["latency_ticks"]
    assert d["energy_j"]["truenorth"]["static_j"] == pytest.approx(p["chips"] * 42e-3 * ticks * 1e-3)
    tn = d["truenorth_weights"]
    assert tn["mode"] == "duplicate" and 0.0 <= tn["accuracy_truenorth"] <= 1.0
    assert tn["accuracy_float"] == d["accuracy"] and tn["extra_axons"] > 0
    assert tn["packed_cores"] == p["cores"] <= tn["packed_cores_duplicated"]
    assert all(0.0 <= l["rel_error"] < 1.0 for l in tn["layers"])
    rc, out, _ = run_esl("--hw", "truenorth", "--limit", "20", "--truenorth-weights", "cluster")
    assert rc == 0 and "TrueNorth weights (cluster" in out and "+0 (source, type) axons" in out
