"""The paper's feed-forward benchmark as a grid: method x density on MNIST 784-800-10, resumable.

    .venv/bin/python benchmarks/mnist_sweep.py [--epochs 10] [--data-dir ../shared/data/mnist]
        [--methods dense static set rigl esl pq_layer pq_neuron magnitude] [--densities 0.01 0.02 0.05 0.1 0.2]
        [--key-density 0.1] [--key-seeds 0 1] [--seeds 0] [--lrs 0.01 0.005 0.002] [--lava-limit N]
        [--no-lava] [--out runs/sweep] [--results results] [--json] [-- EXTRA esl train OPTIONS]

Every run is the user's own commands, run as subprocesses: ``esl train --config configs/mnist_esl.toml``
(784-800-10, batch 100, T_iter 1000; the learning rate as chosen below) with ``--method``, ``--density``, ``--seed`` and
``--epochs`` (the paper trains 300 epochs; this grid uses fewer so it finishes in hours on 2 CPU cores),
then ``esl energy RUN/checkpoint.pt --hw all --json`` (SOPs per sample, TrueNorth cores, energy per
hardware, both conventions' papers default) on the test set, and, for the best model of each method,
``esl simulate RUN/checkpoint.pt --backend lava --json`` (Lava float agreement on the whole test set,
or ``--lava-limit`` images). Each step leaves its JSON in the run folder (``summary.json``,
``energy.json``, ``lava.json``), and a step whose file is there is skipped: an interrupted sweep
continues where it stopped (a run whose training was cut off resumes with ``esl train --resume``).

The learning rate is chosen on the validation split first, never on the test set: dense and ESL at the
key density train once (seed 0) at each of ``--lrs`` (decaying to lr / 100, the paper's 0.01 -> 0.0001
ratio), in ``RUNS/lr_select/``; the lr with the best validation accuracy (``best_val_acc``; ties go to the
first listed, the paper's 0.01) is used by every dense run, and ESL's by every sparse method (they share
ESL's engine and schedule). The choice and every candidate's numbers are in the results.

Methods with a target take each density (``pq_*``: the start density of a sparse start; PQ ends
sparser); ``dense`` runs once per seed. ``--key-seeds`` at ``--key-density``, ``--seeds`` elsewhere.
Writes ``mnist_sweep.{md,json,csv,png}`` into ``--results``: the table, every run's numbers, accuracy
against real (nonzero) density per method, and accuracy against TrueNorth energy with the Pareto front.
"""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C  # noqa: E402
from esl_deploy.atomic import atomic_write_csv  # noqa: E402

NAME = "mnist_sweep"
CONFIG = C.ROOT / "configs" / "mnist_esl.toml"
DEFAULT_DATA = C.ROOT.parent / "shared" / "data" / "mnist"
LR_RATIO = 100.0  # lr_end = lr / 100: the paper's 0.01 -> 0.0001
# grid label -> esl train options (besides --density)
METHODS: Dict[str, List[str]] = {
    "dense": ["--method", "dense"],
    "static": ["--method", "static"],
    "set": ["--method", "set"],
    "rigl": ["--method", "rigl"],
    "esl": ["--method", "esl"],
    "pq_layer": ["--method", "pq", "--pq-scope", "layer"],
    "pq_neuron": ["--method", "pq", "--pq-scope", "neuron"],
    "magnitude": ["--method", "magnitude"],
}


@dataclass(frozen=True)
class Run:
    method: str
    density: float
    seed: int

    @property
    def name(self) -> str:
        return f"{self.method}_d{self.density:g}_s{self.seed}"


def grid(methods: Sequence[str], densities: Sequence[float], seeds: Sequence[int], key_density: float,
         key_seeds: Sequence[int]) -> List[Run]:
    """The runs of the sweep, in order: every method at every density (dense once), the key density
    with ``key_seeds``, the others with ``seeds``."""
    runs = []
    for m in methods:
        if m == "dense":
            runs += [Run(m, 1.0, s) for s in key_seeds]
            continue
        for d in densities:
            runs += [Run(m, d, s) for s in (key_seeds if abs(d - key_density) < 1e-12 else seeds)]
    return runs


def config_lr() -> float:
    """The learning rate of ``configs/mnist_esl.toml`` (used where no lr was chosen)."""
    import tomllib

    return float(tomllib.loads(CONFIG.read_text())["lr"])


def train_args(method: str, density: float, seed: int, epochs: int, lr: Optional[float]) -> List:
    """The ``esl train`` options of one run (``--lr`` / ``--lr-end`` = lr / 100 when ``lr`` is given)."""
    lr_args = [] if lr is None else ["--lr", f"{lr:g}", "--lr-end", f"{lr / LR_RATIO:g}"]
    return ["--config", CONFIG, *METHODS[method], "--density", density, "--seed", seed, "--epochs", epochs, *lr_args]


def select_lr(a, data_args: Sequence[str]) -> dict:
    """The validation-chosen learning rate of dense and of ESL (seed 0, key density): ``{"dense": {...},
    "esl": {...}}``, each with ``lr`` (the choice) and ``candidates`` (lr, best_val_acc, test_acc, best_epoch).
    Each candidate is a run folder under ``out/lr_select`` (skipped when finished, like the grid)."""
    from tqdm import tqdm

    chosen = {}
    todo = [(m, lr) for m in ("dense", "esl") for lr in a.lrs]
    for m, lr in tqdm(todo, desc="lr select", unit="run"):
        d = 1.0 if m == "dense" else a.key_density
        folder = a.out / "lr_select" / f"{m}_lr{lr:g}"
        s = train_run(folder, train_args(m, d, 0, a.epochs, lr), data_args, a.extra)
        chosen.setdefault(m, {"candidates": []})["candidates"].append(
            {"lr": lr, "best_val_acc": s["best_val_acc"], "test_acc": s["test_acc"], "best_epoch": s["best_epoch"]})
    for m, c in chosen.items():
        c["lr"] = max(c["candidates"], key=lambda r: r["best_val_acc"])["lr"]  # max keeps the first of ties
    return chosen


def train_run(folder: Path, options: Sequence, data_args: Sequence[str], extra: Sequence[str]) -> dict:
    """``esl train OPTIONS`` into ``folder`` (skipped when finished, resumed when cut off)."""
    summary = folder / "summary.json"
    if summary.is_file():
        return json.loads(summary.read_text())
    args = ["train", *options, *data_args, *extra, "--out", folder, "--no-progress"]
    if (folder / "checkpoint.pt").is_file():
        args.append("--resume")
    return C.esl_json(args, who=f"mnist_sweep: {folder.name}")


def energy_row(e: dict) -> dict:
    t = e["totals"]
    out = {"sops_per_sample": t["ops"], "acs_per_sample": t["acs"], "macs_per_sample": t["macs"],
           "ann_flops": t["ann_flops"], "cores": t.get("cores"), "cores_naive": t.get("cores_naive"),
           "cores_sparse": t.get("cores_sparse"), "cores_lower_bound": t.get("cores_lower_bound"),
           "convention": e.get("convention")}
    if "cores_packed" in t:  # the whole-network placement (hw_models.packing) and its bound
        out["cores_packed"] = t["cores_packed"]
    for hw, v in e["energy_j"].items():
        out[f"energy_{hw}_j"] = v["total_j"]
    return out


def pareto(points: Sequence[tuple]) -> List[int]:
    """Indices of the points (energy, accuracy) that no other point beats on both (lower energy, higher
    accuracy)."""
    front = []
    for i, (e, a) in enumerate(points):
        if not any((e2 <= e and a2 >= a) and (e2 < e or a2 > a) for j, (e2, a2) in enumerate(points) if j != i):
            front.append(i)
    return front


def sweep(a) -> dict:
    from tqdm import tqdm

    runs = grid(a.methods, a.densities, a.seeds, a.key_density, a.key_seeds)
    data_args = ["--dataset", a.dataset] + (["--data-dir", a.data_dir] if a.dataset != "digits" else [])
    lrs = select_lr(a, data_args) if a.lrs else {}
    rows = []
    bar = tqdm(runs, desc="sweep", unit="run")
    for run in bar:
        bar.set_postfix_str(run.name)
        folder = a.out / run.name
        lr = lrs.get("dense" if run.method == "dense" else "esl", {}).get("lr")
        s = train_run(folder, train_args(run.method, run.density, run.seed, a.epochs, lr), data_args, a.extra)
        e = C.esl_json(["energy", folder / "checkpoint.pt", "--hw", "all", *data_args], cache=folder / "energy.json",
                       who=NAME)
        rows.append({"run": run.name, "method": run.method, "target_density": run.density, "seed": run.seed,
                     "lr": config_lr() if lr is None else lr, "test_acc": s["test_acc"], "density": s["density"],
                     "best_epoch": s["best_epoch"], "seconds_per_epoch": s["seconds_per_epoch"], **energy_row(e)})
    if not a.no_lava:
        best: Dict[str, dict] = {}
        for r in rows:
            if r["method"] not in best or r["test_acc"] > best[r["method"]]["test_acc"]:
                best[r["method"]] = r
        for r in tqdm(list(best.values()), desc="lava", unit="model"):
            folder = a.out / r["run"]
            lim = ["--limit", a.lava_limit] if a.lava_limit else []
            name = f"lava{'_' + str(a.lava_limit) if a.lava_limit else ''}.json"
            lv = C.esl_json(["simulate", folder / "checkpoint.pt", "--backend", "lava", *data_args, *lim,
                             "--no-progress"], cache=folder / name, who=NAME)
            r["lava_output_agreement"] = lv.get("output_agreement")
            r["lava_samples"] = lv.get("samples", a.lava_limit)
    return {"dataset": a.dataset, "model": "mlp 784-800-10" if a.dataset == "mnist" else "mlp", "epochs": a.epochs,
            "lava_samples": a.lava_limit, "lr_select": lrs,
            "config": str(CONFIG.relative_to(C.ROOT)), "extra_train_options": list(a.extra),
            "runs": rows, "pareto_truenorth": [rows[i]["run"] for i in pareto(
                [(r.get("energy_truenorth_j", 0.0), r["test_acc"]) for r in rows])]}


def table(res: dict) -> str:
    head = ["method", "target", "seed", "lr", "test acc %", "density", "SOPs/sample",
            "TrueNorth cores (naive / per-layer / packed / bound)", "TrueNorth energy µJ",
            f"Lava float agreement % ({res.get('lava_samples') or 'all'} test images, best of each method)"]
    body = []
    for r in res["runs"]:
        lava = r.get("lava_output_agreement")
        body.append([r["method"], f"{r['target_density']:g}", r["seed"], f"{r['lr']:g}", f"{100 * r['test_acc']:.2f}",
                     f"{r['density']:.4f}", f"{r['sops_per_sample']:.0f}",
                     f"{r['cores_naive']} / {r['cores_sparse']} / {r.get('cores_packed', '-')} / {r['cores_lower_bound']}",
                     f"{1e6 * r.get('energy_truenorth_j', float('nan')):.3f}",
                     "-" if lava is None else f"{lava:.3f}"])
    sel = res.get("lr_select") or {}
    lr_part = ""
    if sel:
        rows = [[m, f"{c['lr']:g}", f"{100 * c['best_val_acc']:.2f}", f"{100 * c['test_acc']:.2f}", c["best_epoch"],
                 "**chosen**" if c["lr"] == sel[m]["lr"] else ""] for m in sel for c in sel[m]["candidates"]]
        lr_part = ("Learning rate, chosen on the validation split (seed 0, decaying to lr / 100; dense's choice for "
                   "dense, ESL's for every sparse method):\n\n"
                   + C.md_table(["method", "lr", "best val acc %", "test acc %", "best epoch", ""], rows) + "\n")
    return (lr_part + f"{res['model']} on {res['dataset']}, {res['epochs']} epochs (the paper: 300), from "
            f"`{res['config']}`; target = the density asked for (pq: its start density); density = nonzero weights "
            f"of the kept model; lr = its learning rate; TrueNorth energy per sample in the papers' convention.\n\n"
            + C.md_table(head, body) + "\n"
            + f"Pareto front (TrueNorth energy vs accuracy, in the plot): {', '.join(res['pareto_truenorth'])}.\n\n"
            + "![accuracy vs density and vs TrueNorth energy](results/mnist_sweep.png)\n")


def plot(res: dict):
    fig, axes = C.figure(1, 2, figsize=(11, 4))
    by: Dict[str, list] = {}
    for r in res["runs"]:
        by.setdefault(r["method"], []).append(r)
    for m, rs in by.items():
        rs = sorted(rs, key=lambda r: r["density"])
        axes[0].plot([100 * r["density"] for r in rs], [100 * r["test_acc"] for r in rs], "o-", ms=3, label=m)
        axes[1].scatter([1e6 * r.get("energy_truenorth_j", 0) for r in rs], [100 * r["test_acc"] for r in rs], s=12,
                        label=m)
    front = sorted((r for r in res["runs"] if r["run"] in res["pareto_truenorth"]),
                   key=lambda r: r.get("energy_truenorth_j", 0))
    axes[1].plot([1e6 * r.get("energy_truenorth_j", 0) for r in front], [100 * r["test_acc"] for r in front], "k--",
                 lw=1, label="Pareto front")
    axes[0].set(xscale="log", xlabel="real (nonzero) density %", ylabel="test accuracy %",
                title="accuracy vs density")
    axes[1].set(xscale="log", xlabel="TrueNorth energy per sample (µJ, papers' convention)", ylabel="test accuracy %",
                title="accuracy vs TrueNorth energy")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return fig


def main(argv: Optional[Sequence[str]] = None) -> dict:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    own = argv[:argv.index("--")] if "--" in argv else argv
    ap = C.parser(__doc__, seeds=False, epochs=False, out=False)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--dataset", default="mnist", choices=["mnist", "digits"], help="digits: a quick check of the sweep")
    ap.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    ap.add_argument("--densities", nargs="+", type=float, default=[0.01, 0.02, 0.05, 0.1, 0.2])
    ap.add_argument("--key-density", type=float, default=0.1)
    ap.add_argument("--key-seeds", nargs="+", type=int, default=[0, 1])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0])
    ap.add_argument("--lrs", nargs="*", type=float, default=[0.01, 0.005, 0.002],
                    help="learning rates tried for dense and ESL (seed 0), chosen on validation; none: the config's")
    ap.add_argument("--lava-limit", type=int, default=None, help="Lava on the first N test images (default: all)")
    ap.add_argument("--no-lava", action="store_true", help="skip the Lava agreement of the best models")
    ap.add_argument("--out", type=Path, default=Path("runs/sweep"), help="run folders")
    a = ap.parse_args(own)
    a.extra = extra
    if a.dataset == "mnist" and not a.data_dir.is_dir():
        sys.exit(f"mnist_sweep: MNIST folder not found: {a.data_dir} (give --data-dir)")
    res = sweep(a)
    name = NAME if a.dataset == "mnist" else f"{NAME}_{a.dataset}"
    a.results.mkdir(parents=True, exist_ok=True)
    atomic_write_csv(a.results / f"{name}.csv", res["runs"])
    return C.publish(name, res, table(res), a, __file__, argv, fig=plot(res))


if __name__ == "__main__":
    main()
