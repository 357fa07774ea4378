"""esl_deploy.env.environment(): what a run records about the machine and the software."""
import json
import time

import torch

from esl_deploy import env as envmod
from esl_deploy.env import cpu_model, describe, environment


def test_environment_has_versions_cpu_and_threads():
    e = environment()
    json.dumps(e)  # JSON-able as it is stored in summary.json and results/*.json
    assert e["python"].count(".") == 2
    for pkg in ("torch", "numpy", "snntorch", "lava-nc"):
        assert pkg in e["packages"]
    assert e["packages"]["torch"] and e["packages"]["numpy"]
    t = e["torch"]
    assert t["version"] == torch.__version__
    assert t["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert t["num_threads"] == torch.get_num_threads()
    assert t["mkl"]["available"] == torch.backends.mkl.is_available()
    assert t["mkldnn"]["available"] == torch.backends.mkldnn.is_available()
    if t["mkldnn"]["available"]:
        assert t["mkldnn"]["version"].startswith("v")
    if t["mkl"]["available"]:
        assert t["mkl"]["version"]
    assert e["cpu"]["count"] >= 1
    assert set(e["env"]) <= set(envmod.ENV_VARS)


def test_environment_is_cached_fast_and_has_no_side_effects():
    environment()
    threads = torch.get_num_threads()
    t0 = time.perf_counter()
    a = environment()
    assert time.perf_counter() - t0 < 0.05
    assert torch.get_num_threads() == threads
    a["torch"]["version"] = "changed"
    a["packages"].clear()
    b = environment()
    assert b["torch"]["version"] == torch.__version__ and b["packages"]


def test_environment_variables_are_recorded_when_set(monkeypatch):
    for k in envmod.ENV_VARS:
        monkeypatch.delenv(k, raising=False)
    assert environment()["env"] == {}
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    monkeypatch.setenv("ATEN_CPU_CAPABILITY", "avx2")
    assert environment()["env"] == {"OMP_NUM_THREADS": "3", "ATEN_CPU_CAPABILITY": "avx2"}


def test_cpu_model_reads_cpuinfo(tmp_path):
    f = tmp_path / "cpuinfo"
    f.write_text("processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R)  Xeon(R) Gold 6248 @ 2.50GHz\n\n"
                 "processor\t: 1\nmodel name\t: Intel(R) Xeon(R) Gold 6248 @ 2.50GHz\n")
    assert cpu_model(str(f)) == "Intel(R) Xeon(R) Gold 6248 @ 2.50GHz"


def test_describe_names_cpu_instruction_set_threads_and_torch():
    e = environment()
    line = describe(e)
    assert str(e["torch"]["cpu_capability"]) in line and f"torch {torch.__version__}" in line
    assert f"{e['torch']['num_threads']} threads" in line
    assert describe({}).startswith("unknown CPU")
