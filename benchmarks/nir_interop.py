"""Other tools' NIR readers on our NIR files: does each load our digits MLP and conv net, run a batch, and
give our output spikes? (The README's NIR readers table.)

    .venv/bin/python benchmarks/nir_interop.py [--out runs/results] [--results results] [--epochs 40]
        [--limit N] [--retrain] [--json]

Models: the digits MLP 64-800-10 and conv net 16C3-AP2-32C3-AP2-FC10 trained with ESL at 10 % density
(40 epochs, seed 0; the run folders ``runs/results/{esl,convnet_esl}_s0`` shared with
``benchmarks/digits_results.py`` and ``benchmarks/lava_agreement.py``, trained when missing). Each is
exported twice: the default graph (``esl export --to nir``) and the reader's flavour (``esl export --to
nir --for READER``, :mod:`export.nir.flavours`). Each reader (snnTorch 1.0.0, Norse 1.1.0, Sinabs 2.0.3;
:mod:`export.nir.readers`) loads the file as its users do and runs the whole digits test set (360
samples, direct encoding, the model's T) as one batch; its output spikes are compared with our snnTorch
model's (float32, :func:`export.simulate.snntorch_spikes`): agreement of (step, sample, neuron)
entries, samples whose whole output is identical, equal predictions (most spikes). A reader that fails
to load or run the file has its error in the table. Writes ``nir_interop.{md,json}`` into ``--results``.
"""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C  # noqa: E402
import torch  # noqa: E402
from lava_agreement import ensure_run  # noqa: E402

import esl_deploy  # noqa: E402
from esl_deploy.export.cli import export_file  # noqa: E402
from esl_deploy.export.nir.readers import RUNNERS, compare, load_reader, run_loaded  # noqa: E402
from esl_deploy.export.simulate import encoded_inputs, snntorch_spikes  # noqa: E402

NAME = "nir_interop"
RUNS = [("digits MLP, ESL 10%", "esl_s0", "mlp"), ("digits conv net, ESL 10%", "convnet_esl_s0", "convnet")]


def measure(label: str, ckpt: Path, reader: str, flavour: bool, x, ours, folder: Path) -> dict:
    """One row: export ``ckpt`` (default or the reader's flavour), run it in ``reader``, compare."""
    out = folder / f"{Path(ckpt).parent.name}_{reader if flavour else 'default'}.nir"
    export_file(ckpt, "nir", out, force=True, reader=reader if flavour else None)
    row = {"model": label, "reader": reader, "file": f"--for {reader}" if flavour else "default",
           "loads": False, "runs": False, "error": None}
    try:
        net = load_reader(reader, out, x.shape[1])
        row["loads"] = True
        theirs = run_loaded(reader, net, x)
    except Exception as e:  # the reader's own failure is the measurement
        text = str(e).splitlines()[0] if str(e) else ""
        row["error"] = f"{type(e).__name__}: {text if len(text) <= 60 else text[:60].rsplit(' ', 1)[0] + ' ...'}"
        return row
    row.update(runs=True, **compare(theirs, ours).to_dict())
    return row


def table(rows: list, batch: int) -> str:
    head = ["model", "reader", "file", "loads", f"runs (batch {batch})", "output spike agreement %",
            "samples identical %", "predictions equal %", "steps with > 1 spike"]
    yes = lambda v: "yes" if v else "no"  # noqa: E731
    return C.md_table(head, ([r["model"], r["reader"], f"`{r['file']}`", yes(r["loads"]),
                              yes(r["runs"]) if r["runs"] else f"no: `{r['error']}`",
                              *((f"{r['spikes']:.3f}", f"{r['samples']:.2f}", f"{r['predictions']:.2f}",
                                 str(r["extra_spikes"])) if r["runs"] else ("", "", "", ""))] for r in rows))


def main(argv=None) -> list:
    ap = C.parser(__doc__, seeds=False)
    ap.add_argument("--limit", type=int, default=None, help="first N test samples (default: all 360)")
    a = ap.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for label, folder, model in RUNS:
            ckpt = ensure_run(Path(a.out) / folder, model, "esl", None, a.epochs, a.retrain)
            net = esl_deploy.load(ckpt)
            x, _ = encoded_inputs("digits", int(net.meta["T"]), net.meta["encoding"], limit=a.limit)
            ours = snntorch_spikes(net, x, torch.float32)[-1].astype("float32")
            for reader in RUNNERS:
                for flavour in (False, True):
                    rows.append(measure(label, ckpt, reader, flavour, x, ours, Path(tmp)))
                    r = rows[-1]
                    print(f"{label:26s} {reader:9s} {r['file']:16s} "
                          + (f"agreement {r['spikes']:8.3f} %" if r["runs"] else f"fails: {r['error']}"),
                          file=sys.stderr, flush=True)
    return C.publish(NAME, rows, table(rows, x.shape[1]), a, __file__, argv)


if __name__ == "__main__":
    main()
