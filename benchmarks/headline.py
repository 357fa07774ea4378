"""The README's headline table: a few figures of the benchmarks' results files, side by side.

    .venv/bin/python benchmarks/headline.py       # writes results/headline.md (then readme_tables.py --write)

Nothing is measured here: every figure is read from ``results/mnist_sweep.json``, ``results/digits.json``
and ``results/mnist_lava.json`` (written by ``benchmarks/mnist_sweep.py``, ``digits_results.py`` and
``mnist_lava.py``) and printed as those benchmarks' own tables print it, so the README's figures are the
full tables' figures (``tests/test_readme_tables.py`` checks that ``results/headline.md`` is what this
script makes of the current files, and ``readme_tables.py`` that the README shows it). The links point
from the README to the documentation pages that hold the full tables.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "results"
SOURCES = ("mnist_sweep", "digits", "mnist_lava")
DOCS = "docs/results"  # the full tables, relative to the README
NET_NAMES = {"vggsnn": "VGGSNN", "resnet19": "ResNet19"}


def _data(results: Path, name: str):
    return json.loads((Path(results) / f"{name}.json").read_text(encoding="utf-8"))["data"]


def _run(sweep: dict, method: str, density: float, seed: int) -> dict:
    for r in sweep["runs"]:
        if r["method"] == method and r["target_density"] == density and r["seed"] == seed:
            return r
    raise KeyError(f"mnist_sweep has no {method} run at density {density}, seed {seed}")


def _backend(lava: dict, model: str, backend: str) -> dict:
    for r in lava["backends"]:
        if r["model"] == model and r["backend"] == backend:
            return r
    raise KeyError(f"mnist_lava has no {model!r} row for backend {backend}")


def build(results: Path = RESULTS) -> str:
    """``results/headline.md``: the table, made from the results files in ``results``."""
    sweep, digits, lava = (_data(results, name) for name in SOURCES)
    dense0, dense1 = _run(sweep, "dense", 1.0, 0), _run(sweep, "dense", 1.0, 1)
    esl0, esl1 = _run(sweep, "esl", 0.1, 0), _run(sweep, "esl", 0.1, 1)
    d_dense, d_esl = digits["methods"]["dense"], digits["methods"]["esl"]
    float_esl = _backend(lava, "ESL 10 %", "lava")
    qat = _backend(lava, "ESL 10 %, 8-bit QAT", "lava-fixed")
    dense_lava = next(r for r in (dense0, dense1) if "lava_output_agreement" in r)
    pct = lambda x: f"{100 * x:.2f}"  # noqa: E731
    uj = lambda j: f"{j * 1e6:.3f}"  # noqa: E731
    e = sweep["epochs"]
    rows = [
        (f"MNIST 784-800-10, {e} epochs: test accuracy % (seed 0 / seed 1)",
         f"{pct(dense0['test_acc'])} / {pct(dense1['test_acc'])}",
         f"{pct(esl0['test_acc'])} / {pct(esl1['test_acc'])}", f"[MNIST]({DOCS}/mnist.md)"),
        ("MNIST: density of nonzero weights (seed 0)", f"{dense0['density']:.4f}", f"{esl0['density']:.4f}", ""),
        (f"digits 64-800-10, {digits['epochs']} epochs: test accuracy %, mean ± sd of seeds "
         + " ".join(map(str, digits["seeds"])),
         f"{pct(d_dense['mean_test_acc'])} ± {pct(d_dense['std_test_acc'])}",
         f"{pct(d_esl['mean_test_acc'])} ± {pct(d_esl['std_test_acc'])}", f"[digits]({DOCS}/digits.md)"),
        ("MNIST: TrueNorth cores, packed / lower bound (seed 0)",
         f"{dense0['cores_packed']} / {dense0['cores_lower_bound']}",
         f"{esl0['cores_packed']} / {esl0['cores_lower_bound']}", f"[energy and cores]({DOCS}/energy.md)"),
        (f"MNIST: TrueNorth energy per sample, µJ, papers' convention (the dense ANN on a GPU: "
         f"{uj(dense0['energy_gpu_j'])})", uj(dense0["energy_truenorth_j"]), uj(esl0["energy_truenorth_j"]), ""),
        (f"MNIST: Lava float (Loihi 2 models), output spikes equal to snnTorch's, % of {float_esl['samples']:,} "
         f"test images (dense: seed {dense_lava['seed']}, ESL: seed 0)",
         f"{dense_lava['lava_output_agreement']:.3f}", f"{float_esl['output_agreement']:.3f}",
         f"[Lava]({DOCS}/lava.md)"),
        ("MNIST: Lava fixed point after 8-bit QAT: output spike agreement % / accuracy %", "-",
         f"{qat['output_agreement']:.3f} / {pct(qat['accuracy'])}", ""),
    ]
    own_file = Path(results) / "own_snntorch_mnist.json"
    if own_file.is_file():  # snnTorch's tutorial MLP through the library API (benchmarks/own_snntorch_mnist.py)
        own = _data(results, "own_snntorch_mnist")
        agree = " / ".join(f"{v:.3f}" for v in own["simulate"]["lava"]["layer_agreement"].values())
        rows.append((f"Your own snnTorch net (snnTorch's tutorial MLP, subtract reset, your loop + 2 lines), "
                     f"{own['epochs']} epochs on {own['train_images']:,} MNIST images: test accuracy % / nonzero "
                     f"density / Lava float spikes equal to the snnTorch net's, % per layer "
                     f"({own['simulate']['lava']['samples']:,} images)", "-",
                     f"{pct(own['accuracy'])} / {own['density']:.4f} / {agree}", f"[MNIST]({DOCS}/mnist.md)"))
    deep_file = Path(results) / "deep_fixed.json"
    if deep_file.is_file():  # the seeds' deep nets, 8-bit, on Loihi 2 fixed point (benchmarks/deep_fixed.py)
        deep = _data(results, "deep_fixed")
        for net, e in deep["nets"].items():
            lava, emu = e["lava"], e["emulator"]
            rows.append((f"{NET_NAMES.get(net, net)}, width {deep['width']}, 8-bit QAT, {e['train']['epochs']} epochs on "
                         f"{deep['train_images']:,} MNIST images: Lava fixed point, lowest layer's spike agreement % "
                         f"({lava['samples']} images) / emulator's ({emu['samples']:,} images) / accuracy % vs the "
                         f"trained net's", "-",
                         f"{min(lava['layer_agreement'].values()):.3f} / {min(emu['layer_agreement'].values()):.3f} / "
                         f"{pct(emu['accuracy'])} vs {pct(emu['trained_accuracy'])}", f"[Lava]({DOCS}/lava.md)"))
    lines = ["| | dense | ESL, 10 % density | full tables |", "|---|---|---|---|"]
    lines += [f"| {what} | {dense} | {esl} | {link} |" for what, dense, esl, link in rows]
    used = SOURCES + (("own_snntorch_mnist",) if own_file.is_file() else ()) + (
        ("deep_fixed",) if deep_file.is_file() else ())
    sources = ", ".join(f"`results/{name}.json`" for name in used)
    return "\n".join(lines) + f"\n\n*made by `.venv/bin/python benchmarks/headline.py` from {sources}*\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--results", type=Path, default=RESULTS)
    a = ap.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    from esl_deploy.atomic import atomic_write_text

    atomic_write_text(a.results / "headline.md", build(a.results))
    print(f"{a.results / 'headline.md'} written", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
