"""``esl simulate MODEL --backend ...``: parse options, call :func:`export.simulate.simulate`, print."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import click

from esl_deploy.datasets import DATASETS
from esl_deploy.inputs import input_options

from .simulate import ALL_BACKENDS, SimReport, simulate


def format_report(r: SimReport) -> str:
    """A short human-readable table of a :class:`SimReport`."""
    lines = [
        f"source        {r.source}",
        f"backend       {r.backend}   (reference: {r.reference})",
        (f"data          {r.dataset}, {r.samples} samples, T={r.T}" if r.encoding == "given" else
         f"data          {r.dataset} test, {r.samples} samples, T={r.T}, {r.encoding} encoding"),
        (f"accuracy      {100 * r.accuracy:.2f} %   (snnTorch {100 * r.snntorch_accuracy:.2f} %, "
         f"difference {100 * (r.accuracy - r.snntorch_accuracy):+.2f} points)" if r.accuracy == r.accuracy else
         "accuracy      - (the inputs have no labels)"),
        (f"output spikes {r.output_agreement:.3f} % agree, {r.identical_outputs:.2f} % of samples identical"
         if r.readout != "membrane" else
         f"readout       membrane voltage: argmax of the sum agrees on {r.readout_argmax_agreement:.3f} % of samples, "
         f"max |dV| {r.readout_max_abs_diff:.3g}, {r.identical_outputs:.2f} % of samples within 1e-6 (relative)"),
        f"speed         {r.samples_per_s:.1f} samples/s ({r.wall_s:.1f} s), snnTorch float64 "
        f"{r.snntorch_samples_per_s:.1f} samples/s",
        "",
        f"{'layer':<12}{'spike agreement %':>20}",
    ]
    lines += [f"{name:<12}{value:>20.3f}" for name, value in r.layer_agreement.items()]
    if r.writer is not None:
        lines.insert(3, f"read as       {r.writer} conventions, dt = {r.dt:g}")
    for kind in ("silent", "saturated"):
        names = getattr(r, f"{kind}_layers")
        if names:
            lines.append(f"{kind:<12}{', '.join(names)} (see the warning)")
    w = r.writer_reference
    if w:
        lines += ["", f"{w['tool']} (the writer, as its users load the file): {w['spikes']} output spikes, "
                      f"{w['extra_spikes']} entries with more than one spike",
                  f"  agreement with ours (float64)  {w['ours_agreement']:.3f} % of output entries, "
                  f"{w['ours_samples_identical']:.2f} % of samples identical",
                  f"  agreement with {r.backend:<15} {w['backend_agreement']:.3f} % of output entries, "
                  f"{w['backend_samples_identical']:.2f} % of samples identical"]
        if w["difference"]:
            lines.append(f"  not representable: {w['difference']}")
    if "lava_subset_agreement" in r.details:
        lines += ["", f"Lava fixed point on the first {int(r.details['lava_subset_samples'])} samples: "
                      f"{r.details['lava_subset_agreement']:.3f} % of its spikes equal the emulator's "
                      f"({r.details['lava_subset_s']:.1f} s)"]
    if r.quant_error:
        lines += ["", f"{'layer':<12}{'weight rel err':>16}{'thr rel err':>14}{'beta err':>12}{'scale':>12}"]
        for name, e in r.quant_error.items():
            lines.append(f"{name:<12}{e['weight_rel']:>16.4%}{e['threshold_rel']:>14.2e}{e['beta_abs']:>12.2e}"
                         f"{e['scale']:>12.1f}")
    return "\n".join(lines)


@click.command("simulate")
@click.argument("model", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--backend", type=click.Choice(ALL_BACKENDS), default="lava", show_default=True,
              help="snntorch (float32), lava (floating point), lava-fixed (Loihi 2 fixed point), netx, or "
                   "emulate-fixed (lava-fixed's arithmetic in batched torch, bit-exact: whole test sets).")
@click.option("--dataset", type=click.Choice(list(DATASETS)), default=None,
              help="Test set [default: the one the network was trained on, else digits].")
@click.option("--data-dir", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="Folder holding the data set's files [default: the training run's, for its data set].")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Only the first N test samples.")
@click.option("-T", "--steps", type=click.IntRange(min=1), default=None,
              help="Time steps per sample (default: the T the network was trained with).")
@click.option("--encoding", type=click.Choice(["direct", "rate"]), default=None,
              help="Input encoding (default: the network's).")
@click.option("--synapse", type=click.Choice(["sparse", "dense"]), default="sparse", show_default=True,
              help="Lava process for matrix layers.")
@click.option("--conv", type=click.Choice(["conv", "matrix"]), default="conv", show_default=True,
              help="Lava Conv processes, or convolutions expanded into sparse matrices (faster).")
@click.option("--weight-groups", type=click.IntRange(1, 2), default=None,
              help="8-bit synapse groups per weight in fixed point [default: 2 for lava-fixed; 1 for netx, "
                   "and for networks trained with --weight-bits 8].")
@input_options
@click.option("--seed", type=click.IntRange(min=0, max=2**63 - 1), default=0, show_default=True,
              help="With --random-spikes: the generator's seed.")
@click.option("--writer", type=click.Choice(["nir", "snntorch", "norse", "sinabs"]), default=None,
              help="Read a .nir file in the conventions of the tool that wrote it (norse: dt 1e-3, no r in LIF; "
                   "sinabs: tau in steps, subtractive reset) [default: the --reference tool, ours for our files, "
                   "else NIR's].")
@click.option("--dt", "dt", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Time step to read a .nir file at [default: the writer's, the graph's metadata, else 1e-4 with "
                   "a warning].")
@click.option("--reference", type=click.Choice(["snntorch", "norse", "sinabs"]), default=None,
              help="Also run the .nir file in the tool that wrote it, as its users load it, and report its "
                   "output spikes' agreement with ours and with the backend.")
@click.option("--lava-subset", type=click.IntRange(min=0), default=0, show_default=True,
              help="With --backend emulate-fixed: also run Lava's fixed-point models on the first N samples and "
                   "report the share of their spikes the emulator reproduces (100 %).")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True,
              help="With --backend emulate-fixed: where the emulator runs.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
def simulate_cmd(model: Path, backend: str, dataset: Optional[str], data_dir: Optional[Path], limit: Optional[int],
                 steps: Optional[int], encoding: Optional[str], synapse: str, conv: str,
                 weight_groups: Optional[int], input_file: Optional[str], random_spikes: Optional[float],
                 samples: int, seed: int, writer: Optional[str], dt: Optional[float], reference: Optional[str],
                 lava_subset: int, device: str, as_json: bool, no_progress: bool) -> None:
    """Run MODEL (a checkpoint, .nir or netx file) on a test set, or on inputs of its own shape (--input,
    --random-spikes), and compare its spikes with snnTorch."""
    report = simulate(model, backend, dataset, limit, progress=not no_progress, data_dir=data_dir, T=steps,
                      encoding=encoding, synapse=synapse, conv=conv, weight_groups=weight_groups,
                      inputs=input_file, random_spikes=random_spikes, samples=samples, seed=seed, writer=writer, dt=dt,
                      reference=reference, lava_subset=lava_subset, device=device)
    click.echo(json.dumps(report.to_dict(), sort_keys=True) if as_json else format_report(report))


__all__ = ["format_report", "simulate_cmd"]
