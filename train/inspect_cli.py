"""``esl inspect RUN``: the structure a finished (or interrupted) run learned, as plots and numbers."""
from __future__ import annotations

import json
from pathlib import Path

import click

from esl_deploy.checkpoint import read_checkpoint
from esl_deploy.errors import EslError


@click.command(context_settings={"show_default": True})
@click.argument("run", type=click.Path())
@click.option("--plots/--no-plots", default=True, help="Write the structure PNGs into the run folder.")
@click.option("--json", "as_json", is_flag=True, help="Print the numbers behind the plots as JSON.")
def inspect_cmd(run, plots, as_json):
    """Plot what structure learning learned in RUN (a run folder or its checkpoint.pt): first-layer
    fan-out per input pixel (start vs kept), in/out-degree histograms (kept vs initial), connections
    rewired per rewiring and how many regrown ones survive, and core groups of a core-aware run."""
    from .structure import structure_report, write_structure_plots

    path = Path(run)
    ckpt_path = path / "checkpoint.pt" if path.is_dir() else path
    if not ckpt_path.exists():
        raise EslError(f"no run at {run}: {ckpt_path} does not exist")
    ckpt = read_checkpoint(ckpt_path)
    if not isinstance(ckpt, dict) or "engine" not in ckpt or "config" not in ckpt:
        raise EslError(f"{ckpt_path} is not an esl train checkpoint")
    rep = structure_report(ckpt, str(ckpt_path))
    written = write_structure_plots(ckpt_path.parent, ckpt, rep) if plots else []
    if as_json:
        click.echo(json.dumps({**rep, "plots": [str(p) for p in written]}))
        return
    fan = rep["fanout"]
    click.echo(f"{rep['model']} on {rep['dataset']}, {rep['method']}, kept epoch {rep['kept_epoch']}")
    for l in rep["layers"]:
        click.echo(f"  {l['name']:<14} {str(tuple(l['shape'])):<18} nnz {l['initial_nnz']} -> {l['kept_nnz']}, "
                   f"{100 * l['kept_from_initial'] / max(l['kept_nnz'], 1):.1f} % of the kept ones there from the start")
    if fan is not None:
        click.echo(f"  first layer: {fan['inputs_used_start']} of {fan['inputs']} inputs connected at the start, "
                   f"{fan['inputs_used_kept']} kept")
    else:
        click.echo("  first sparse layer does not read the flattened input (a convolution): no fan-out image")
    surv = [r["survival"] for r in rep["rewirings"] if r["survival"] is not None]
    click.echo(f"  {len(rep['rewirings'])} rewirings, {rep['total_grown']} connections grown"
               + (f", {100 * sum(surv) / len(surv):.1f} % of regrown ones kept by the next rewiring (mean)"
                  if surv else ""))
    for p in written:
        click.echo(f"  wrote {p}")
