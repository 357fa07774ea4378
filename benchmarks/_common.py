"""What the benchmark scripts share: the command line, run reuse, tables, plots, results files, statistics.

Every benchmark writes its results into ``results/`` (tracked; ``--results`` moves it) as
``NAME.md`` (the Markdown the README shows between ``<!-- results:NAME -->`` markers, see
``benchmarks/readme_tables.py``), ``NAME.json`` (the data, the command and the environment it was made
in: :func:`esl_deploy.env.environment`) and, where it has one, ``NAME.png``. Run folders (checkpoints)
stay under ``runs/results`` (``--out``).

Importing this module pins the CPU kernels to AVX2 (:mod:`esl_deploy.kernels`; ``ESL_CPU_KERNELS=native``
opts out), before any tensor operation, so every table reproduces on any x86-64 CPU with AVX2; the
subprocesses it starts (``esl train``, ``esl simulate``) inherit the pin.
"""
from __future__ import annotations

import argparse
import io
import json
import math
import os
import shlex
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Dict, Iterable, Mapping, Optional, Sequence

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import esl_deploy  # noqa: E402,F401  (lava import hook)
from esl_deploy.atomic import atomic_write_bytes, atomic_write_text  # noqa: E402
from esl_deploy.env import describe, environment  # noqa: E402
from esl_deploy.kernels import KernelPinError, pin_from_env  # noqa: E402

try:
    KERNELS = pin_from_env("avx2").name
except KernelPinError as _e:
    sys.exit(f"{Path(sys.argv[0]).name}: error: {_e}")

RESULTS = ROOT / "results"
RUNS = Path("runs/results")
ALPHA = 0.05  # a difference is stated only below this p of the paired t-test (and with one sign in every seed)


# ---------------------------------------------------------------------------------------------- command line
class OneLineParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose bad-input message is one line on stderr (no usage block), exit code 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (--help for the options)\n")


def parser(doc: str, *, epochs: bool = True, seeds: bool = True, out: bool = True) -> argparse.ArgumentParser:
    """The options every training benchmark has: --epochs, --seeds, --out, --results, --retrain, --json."""
    ap = OneLineParser(description=doc.strip().splitlines()[0])
    if epochs:
        ap.add_argument("--epochs", type=int, default=40)
    if seeds:
        ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    if out:
        ap.add_argument("--out", type=Path, default=RUNS, help="run folders (checkpoints); default runs/results")
    ap.add_argument("--results", type=Path, default=RESULTS,
                    help="where NAME.md / .json / .png go (default: results/ at the repo root)")
    ap.add_argument("--retrain", action="store_true", help="train every run again instead of reusing its folder")
    ap.add_argument("--json", action="store_true", help="print the results as JSON instead of the table")
    return ap


def command(script: str, argv: Optional[Sequence[str]]) -> str:
    """The command line that made a result, as the README should quote it."""
    args = list(sys.argv[1:] if argv is None else argv)
    return shlex.join([".venv/bin/python", f"benchmarks/{Path(script).name}", *args])


# ---------------------------------------------------------------------------------------- the esl commands
def esl_json(args: Sequence, *, cache: Optional[Path] = None, newer_than: Optional[Path] = None,
             who: str = "benchmark") -> dict:
    """``esl ARGS --json`` as a user runs it (a subprocess from the repo root), parsed.

    With ``cache``, the result is written there (atomically) and read back instead of running the command
    again while the file exists (and, with ``newer_than``, is newer than that file). A failed command
    stops the benchmark with its stderr, prefixed by ``who``."""
    if cache is not None and cache.is_file() and (
            newer_than is None or cache.stat().st_mtime_ns > newer_than.stat().st_mtime_ns):
        return json.loads(cache.read_text())
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    r = subprocess.run([sys.executable, "-m", "esl_deploy.cli", *map(str, args), "--json"], cwd=ROOT, env=env,
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"{who}: esl {' '.join(map(str, args[:2]))} failed: {r.stderr.strip()}")
    data = json.loads(r.stdout)
    if cache is not None:
        atomic_write_text(cache, json.dumps(data, indent=1) + "\n")
    return data


# ------------------------------------------------------------------------------------------------- run folders
def _same_config(folder: Path, cfg) -> bool:
    from esl_deploy.checkpoint import read_checkpoint
    from esl_deploy.train.config import NOT_IDENTITY, config_diff

    try:
        saved = read_checkpoint(folder / "checkpoint.pt")["config"]
    except Exception:  # missing or unreadable checkpoint: train again
        return False
    return not [k for k in config_diff(saved, cfg.to_dict()) if k.split(".")[0] not in NOT_IDENTITY]


def load_or_train(cfg, folder: Path, retrain: bool = False) -> dict:
    """The summary of the run in ``folder``; trained (again) when missing, ``retrain``, or made by another config."""
    from esl_deploy.train.trainer import train

    folder = Path(folder)
    summary = folder / "summary.json"
    if not retrain and summary.is_file():
        if _same_config(folder, cfg):
            return json.loads(summary.read_text())
        print(f"{folder}: its config differs from this benchmark's, training again", file=sys.stderr, flush=True)
    print(f"training {folder} ...", file=sys.stderr, flush=True)
    return train(cfg, folder, force=True, progress=False)


def mask_density(summary: dict) -> float:
    """Mask entries / all weights of the sparse layers (older runs record only ``density``)."""
    return summary.get("mask_density", summary["density"])


def n_test(dataset: str = "digits", split: str = "test") -> int:
    """The number of images in ``split`` (``test``, ``val`` or ``train``) of ``dataset``."""
    from esl_deploy.datasets import load_dataset

    return len(getattr(load_dataset(dataset), split))


# ---------------------------------------------------------------------------------------------- tables, files
def md_table(header: Sequence[str], rows: Iterable[Sequence]) -> str:
    lines = ["| " + " | ".join(map(str, header)) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(map(str, r)) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def footer(cmd: str, env: dict) -> str:
    return f"*made by `{cmd}` on {describe(env)}*\n"


def figure(*args, **kwargs):
    """A matplotlib (fig, ax) on the Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(*args, **kwargs)


def write_results(name: str, markdown: str, data, cmd: str, results: Path = RESULTS, fig=None) -> Path:
    """Write ``results/NAME.md`` (markdown + the environment footer), ``NAME.json`` and ``NAME.png`` (if ``fig``).

    ``data`` (a dict or a list) goes under ``"data"`` in the JSON, beside ``name``, ``command`` and
    ``environment``. Every file is written atomically. Returns the path of the Markdown file.
    """
    env = environment()
    results = Path(results)
    doc = {"name": name, "command": cmd, "environment": env, "data": data}
    atomic_write_text(results / f"{name}.json", json.dumps(doc, indent=2) + "\n")
    md = results / f"{name}.md"
    atomic_write_text(md, markdown.rstrip("\n") + "\n\n" + footer(cmd, env))
    if fig is not None:
        import matplotlib.pyplot as plt

        buf = io.BytesIO()
        fig.tight_layout()
        fig.savefig(buf, format="png", dpi=110)
        plt.close(fig)
        atomic_write_bytes(results / f"{name}.png", lambda f: f.write(buf.getvalue()))
    return md


def publish(name: str, res, markdown: str, args: argparse.Namespace, script: str, argv, fig=None):
    """A benchmark's last step: write its results files (:func:`write_results`) and print the table
    (or the JSON with ``--json``); returns ``res``."""
    write_results(name, markdown, res, command(script, argv), args.results, fig=fig)
    print(json.dumps(res, indent=2) if args.json else markdown)
    return res


# -------------------------------------------------------------------------------------------------- statistics
def mean_sd(xs: Sequence[float]) -> tuple:
    xs = list(xs)
    return statistics.mean(xs), (statistics.stdev(xs) if len(xs) > 1 else 0.0)


def fmt(x: float, spec: str) -> str:
    """``format(x, spec)`` without a negative zero ("-0.00" is written "0.00", or "+0.00")."""
    s = format(x, spec)
    return format(0.0, spec) if float(s) == 0 else s


def pm(xs: Sequence[float], scale: float = 100.0, digits: int = 2, sign: bool = False) -> str:
    """``mean ± sd`` of ``xs`` times ``scale`` (percentage points by default)."""
    m, s = mean_sd(xs)
    spec = f"{'+' if sign else ''}.{digits}f"
    return f"{fmt(scale * m, spec)} ± {scale * s:.{digits}f}"


def compare(a: Mapping[int, float], ref: Mapping[int, float], ref_name: str = "dense",
            n_test: Optional[int] = None) -> Dict:
    """Method ``a`` against ``ref``, paired by seed (accuracies as fractions).

    Returns the means and sds of both, the per-seed differences a - ref with their mean and sd, the
    p-value of a paired t-test (``scipy.stats.ttest_rel``; None with fewer than two seeds or no spread
    at all), the mean difference in test images when ``n_test`` is given, and the verdict:
    ``"below REF"`` / ``"above REF"`` only when every seed's difference has the same (non-zero) sign
    and p < 0.05; else ``"within noise"``.
    """
    seeds = sorted(set(a) & set(ref))
    if not seeds:
        raise ValueError("no seed in common")
    xa, xr = [a[s] for s in seeds], [ref[s] for s in seeds]
    diffs = [x - y for x, y in zip(xa, xr)]
    p = None
    if len(seeds) > 1:
        import warnings

        from scipy.stats import ttest_rel

        # on a test set of n images the accuracies are counts / n: test the counts, so that rounding
        # noise of the fractions cannot pass for a spread (or for none)
        ta, tr = ([round(x * n_test) for x in xa], [round(x * n_test) for x in xr]) if n_test else (xa, xr)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # zero spread of the differences
            p = float(ttest_rel(ta, tr).pvalue)
        if math.isnan(p):  # every difference 0: nothing to test
            p = None
    verdict = "within noise"
    if p is not None and p < ALPHA:
        if all(d < 0 for d in diffs):
            verdict = f"below {ref_name}"
        elif all(d > 0 for d in diffs):
            verdict = f"above {ref_name}"
    m_a, s_a = mean_sd(xa)
    m_r, s_r = mean_sd(xr)
    m_d, s_d = mean_sd(diffs)
    out = {"seeds": seeds, "mean": m_a, "sd": s_a, "ref_mean": m_r, "ref_sd": s_r, "diffs": diffs,
           "diff_mean": m_d, "diff_sd": s_d, "p": p, "verdict": verdict}
    if n_test:
        out["n_test"] = n_test
        out["diff_images"] = m_d * n_test
    return out


def comparison_cells(c: dict) -> list:
    """Table cells of :func:`compare`: Δ mean ± sd (points), Δ in test images, p, verdict."""
    images = fmt(c["diff_images"], "+.1f") if "diff_images" in c else "-"
    p = "-" if c["p"] is None else (f"{c['p']:.3f}" if c["p"] >= 0.001 else "<0.001")
    return [f"{fmt(100 * c['diff_mean'], '+.2f')} ± {100 * c['diff_sd']:.2f}", images, p, c["verdict"]]


COMPARISON_HEADER = ["Δ points (mean ± sd over seeds)", "Δ test images", "p (paired t)", "verdict"]


def verdict_note(n: Optional[int]) -> str:
    img = f" One test image is {100 / n:.2f} points ({n} test images)." if n else ""
    return (f"Differences are paired by seed. The verdict says 'below' or 'above' only when every seed's "
            f"difference has the same sign and a paired t-test over the seeds gives p < {ALPHA}; "
            f"otherwise 'within noise'.{img}\n")
