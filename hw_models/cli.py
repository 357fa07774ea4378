"""``esl energy``: synaptic operations, TrueNorth cores and energy of a trained network.

The command parses its options into :class:`hw_models.energy.EnergyConstants` and calls
:func:`hw_models.report.energy_report`; user mistakes raise :class:`EslError` (one line, exit code 2).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import click
import torch
from torch import nn

from esl_deploy.atomic import check_output
from esl_deploy.errors import EslError
from esl_deploy.inputs import input_options

from .energy import CONVENTIONS, HW_CHOICES, EnergyConstants, parse_overrides
from .report import ENERGY_STRATEGIES
from .tn_weights import MODES as TN_MODES


def load_source(path: str, *, writer: Optional[str] = None, dt: Optional[float] = None) -> nn.Module:
    """A SpikingNet from a checkpoint (``.pt``/``.pth``, or a run folder holding ``checkpoint.pt``) or ``.nir``
    (a GraphNet for a graph that is not a chain; read under ``writer``'s conventions at ``dt``).

    The loaders are imported when needed: ``esl_deploy.load`` and ``export.nir.read.load_nir``.
    """
    p = Path(path).expanduser()
    if p.is_dir():
        p = p / "checkpoint.pt"
    if not p.is_file():
        raise EslError(f"model file not found: {p}")
    suffix = p.suffix.lower()
    if suffix == ".nir":
        try:
            from esl_deploy.export.nir.read import load_nir
        except ImportError:
            raise EslError("reading .nir files needs export.nir.read, which is not installed") from None
        return load_nir(str(p), writer=writer, dt=dt)
    if writer is not None or dt is not None:
        raise EslError("--writer and --dt say how to read a .nir file; a checkpoint is read as it was trained")
    if suffix in (".pt", ".pth"):
        import esl_deploy

        load = getattr(esl_deploy, "load", None)
        if load is None:
            raise EslError("reading checkpoints needs esl_deploy.load, which is not installed")
        return load(str(p))
    raise EslError(f"unknown model file type {p.suffix!r}: give a checkpoint (.pt) or a NIR graph (.nir)")


@click.command("energy")
@click.argument("source", metavar="RUN/checkpoint.pt|model.nir", required=False)
@click.option("--hw", "hardware", type=click.Choice(HW_CHOICES), multiple=True, default=("all",),
              show_default=True, help="Hardware to cost (repeatable); the dense ANN on the GPU is always the base.")
@click.option("--dataset", default=None, help="Data set to run (default: the one the model was trained on).")
@click.option("--data-dir", type=click.Path(file_okay=False), default=None, help="Folder of the data set's files.")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Use only the first N test samples.")
@click.option("--batch-size", type=click.IntRange(min=1), default=256, show_default=True)
@click.option("--T", "T", type=click.IntRange(min=1), default=None, help="Time steps (default: the model's).")
@click.option("--encoding", type=click.Choice(("direct", "rate")), default=None,
              help="Input encoding of static data (default: the model's).")
@click.option("--strategy", type=click.Choice(ENERGY_STRATEGIES), default="packed", show_default=True,
              help="TrueNorth placement used for the energy: packed (layers share cores) or per-layer naive / sparse "
                   "(the report shows all and the lower bound).")
@click.option("--max-chips", type=click.IntRange(min=1), default=None,
              help="Refuse a model that needs more TrueNorth chips than this.")
@click.option("--const", "consts", multiple=True, metavar="NAME=VALUE",
              help="Override a hardware constant (repeatable), e.g. --const truenorth.sop_pj=26.")
@click.option("--convention", type=click.Choice(CONVENTIONS), default="papers", show_default=True,
              help="papers: SOPs x energy per op per device (the ESL/PQ papers' comparison); chip: dynamic energy "
                   "without the static floor + static power of the occupied chips.")
@click.option("--truenorth-weights", "tn_weights", type=click.Choice(TN_MODES), default=None, is_flag=False,
              flag_value="duplicate",
              help="Also map the weights onto TrueNorth's rule (4 axon types per core, a 9-bit signed weight per neuron "
                   "and type) and report the weight error, the accuracy with those weights and the extra axons/cores "
                   "of axon duplication; 'cluster': one type per source, no duplication. Alone: duplicate.")
@click.option("--tn-finetune", "tn_finetune", type=click.FloatRange(min=0), default=0.0, show_default=True,
              metavar="EPOCHS",
              help="With --truenorth-weights duplicate: also fine-tune the shared TrueNorth weights (4 levels per "
                   "neuron) this many epochs on the training split, and report the accuracy after it.")
@click.option("--list-constants", is_flag=True, help="Print the table of constants with sources and exit.")
@click.option("--seed", type=click.IntRange(0, 2 ** 63 - 1), default=0, show_default=True, help="Seed of rate encoding.")
@input_options
@click.option("--writer", type=click.Choice(["nir", "snntorch", "norse", "sinabs"]), default=None,
              help="Read a .nir file in the conventions of the tool that wrote it (as esl simulate --writer).")
@click.option("--dt", "dt", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Time step to read a .nir file at [default: the writer's, the graph's, else 1e-4 with a warning].")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--plot", type=click.Path(dir_okay=False), default=None, help="Write a PNG bar chart here.")
@click.option("--force", is_flag=True, help="Let --plot replace an existing file (never the model file itself).")
def energy_cmd(source, hardware, dataset, data_dir, limit, batch_size, T, encoding, strategy, max_chips, consts,
               convention, tn_weights, tn_finetune, list_constants, seed, input_file, random_spikes, samples,
               writer, dt, as_json, plot, force):
    """Count synaptic operations on a data set, map the network onto TrueNorth cores and estimate its
    energy on TrueNorth, Loihi and 45 nm CMOS against the dense ANN on a V100-class GPU."""
    from esl_deploy.datasets import frame_size_for, load_dataset

    from .report import energy_report, plot_energy

    constants = parse_overrides(consts)
    if list_constants:
        defaults = EnergyConstants()
        for c in constants.table:
            mark = "" if c.value == defaults[c.name] else f" [overridden; default {defaults[c.name]:g}]"
            click.echo(f"{c.name:30s} {c.value:<12.6g} {c.unit:24s} {c.source}{mark}")
        return
    if source is None:
        raise click.UsageError("missing the model: give RUN/checkpoint.pt or model.nir")
    if tn_finetune and tn_weights != "duplicate":
        raise EslError("--tn-finetune needs --truenorth-weights duplicate")
    if plot:  # before any work: never onto its own input, an existing file only with --force, a regular file only
        src = Path(source).expanduser()
        check_output(plot, force=force, inputs=[src / "checkpoint.pt" if src.is_dir() else src,
                                                *([input_file] if input_file is not None else [])])
    model = load_source(source, writer=writer, dt=dt)
    meta = dict(getattr(model, "meta", None) or {})
    if input_file is not None or random_spikes is not None:  # the user's inputs, not a data set
        if tn_finetune:
            raise EslError("--tn-finetune trains on a data set's training split: give --dataset, not inputs")
        from esl_deploy.export.simulate import foreign_inputs

        x = foreign_inputs(tuple(model.spec.input_shape), inputs=input_file, random_spikes=random_spikes,
                           T=int(T or meta.get("T") or 8), samples=samples, seed=seed, limit=limit, dataset=dataset)
        frames = torch.from_numpy(x).transpose(0, 1)  # (N, T, ...): counted as given
        name = str(input_file) if input_file is not None else f"random spikes p={random_spikes:g}"
        report = energy_report(model, frames, T=int(x.shape[0]), encoding="direct", temporal=True,
                               source=str(source), dataset=name, hardware=hardware, constants=constants,
                               strategy=strategy, max_chips=max_chips, batch_size=batch_size, seed=seed,
                               progress=not as_json and sys.stderr.isatty(), convention=convention,
                               truenorth_weights=tn_weights)
        _emit(report, plot, as_json)
        return
    dataset = dataset or (meta.get("dataset") if meta.get("dataset") != "unknown" else None)
    if not dataset:
        raise EslError("the model does not say which data set it was trained on: give --dataset")
    T = T or meta.get("T")
    if not T:
        raise EslError("the model does not say how many time steps it runs: give --T")
    encoding = encoding or meta.get("encoding") or "direct"
    spec = getattr(model, "spec", None)
    splits = load_dataset(dataset, data_dir or meta.get("data_dir"), T=int(T),
                          frame_size=frame_size_for(dataset, spec.input_shape if spec is not None else None))
    if spec is not None and tuple(spec.input_shape) != tuple(splits.input_shape):
        raise EslError(f"the model takes input of shape {tuple(spec.input_shape)} but {dataset} gives "
                       f"{tuple(splits.input_shape)}")
    report = energy_report(model, splits.test, T=int(T), encoding=encoding, temporal=splits.temporal,
                           source=str(source), dataset=dataset, hardware=hardware, constants=constants,
                           strategy=strategy, max_chips=max_chips, limit=limit, batch_size=batch_size, seed=seed,
                           progress=not as_json and sys.stderr.isatty(), convention=convention,
                           truenorth_weights=tn_weights, tn_finetune=tn_finetune,
                           train=splits.train if tn_finetune else None)
    _emit(report, plot, as_json)


def _emit(report, plot, as_json: bool) -> None:
    """Write the plot (if asked) and print the report as a table or JSON."""
    from .report import plot_energy

    if plot:
        plot_energy(report, plot)
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2))
    else:
        click.echo(report.format_table())
        if plot:
            click.echo(f"plot written to {plot}")
