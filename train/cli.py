"""``esl train``: parse options into a :class:`TrainConfig` and call :func:`train.trainer.train`."""
from __future__ import annotations

import json

import click

from esl_deploy.datasets import DATASETS, ENCODINGS
from esl_deploy.errors import EslError
from esl_deploy.kernels import ENV_VAR, KERNELS, pin
from esl_deploy.masks import DENSITY_MODES
from esl_deploy.models import MODELS, READOUTS, is_factory

from .config import OPTIMIZERS, TrainConfig
from .config_file import NOT_IN_FILE, options_toml, read_config_file
from .losses import LOSSES
from .masking import GROW_RULES, METHODS, SparsityConfig
from .pq_index import SCOPES, PQConfig


def options_to_config(o: dict) -> TrainConfig:
    """The :class:`TrainConfig` of ``esl train``'s parsed options (a bad value raises EslError)."""
    try:
        pq = PQConfig(p=o["pq_p"], q=o["pq_q"], eta=o["pq_eta"], gamma=o["pq_gamma"], beta=o["pq_beta"],
                      rho=o["pq_rho"], scope=o["pq_scope"])
        sparsity = SparsityConfig(method=o["method"], density=o["density"], density_mode=o["density_mode"],
                                  t_iter=o["t_iter"], alpha=o["alpha"], t_end=o["t_end"], grow=o["grow"],
                                  prune_at=o["prune_at"], pq=pq, core_aware=o["core_aware"],
                                  regrow_std=o["regrow_std"], exclude_dead_inputs=not o["keep_dead_inputs"])
        return TrainConfig(model=o["model"], dataset=o["dataset"], data_dir=o["data_dir"], epochs=o["epochs"],
                           seed=o["seed"], T=o["T"], encoding=o["encoding"], frame_size=o["frame_size"],
                           batch_size=o["batch_size"], optimizer=o["optimizer"], lr=o["lr"], lr_end=o["lr_end"],
                           loss=o["loss"], readout=o["readout"], tet_lambda=o["tet_lambda"], width=o["width"],
                           beta=o["beta"], threshold=o["threshold"], sparsity=sparsity,
                           weight_bits=o["weight_bits"], device=o["device"])
    except ValueError as e:
        raise EslError(str(e)) from None


def _load_config(ctx: click.Context, param: click.Parameter, value) -> None:
    """Eager: the file's options become this command's defaults, so the command line overrides them."""
    if value is not None:
        ctx.default_map = {**(ctx.default_map or {}), **read_config_file(value, ctx.command.params, ctx)}


class ModelName(click.ParamType):
    """An architecture of the registry, or ``module.path:factory`` (a function returning the user's nn.Module)."""

    name = "model"

    def convert(self, value, param, ctx):
        if value in MODELS or is_factory(value):
            return value
        self.fail(f"{value!r} is not one of {', '.join(MODELS)}, nor module.path:factory", param, ctx)

    def get_metavar(self, param):
        return "[" + "|".join(MODELS) + "|module.path:factory]"


@click.command(context_settings={"show_default": True})
@click.option("--config", type=click.Path(dir_okay=False), default=None, is_eager=True, expose_value=False,
              callback=_load_config,
              help="TOML file of options (keys = option names, e.g. batch_size; [pq] p = 0.5 is --pq-p); "
                   "options on the command line override it. See configs/.")
@click.option("--model", type=ModelName(), default="mlp",
              help="Architecture, or module.path:factory: a function returning your own snnTorch nn.Module "
                   "(imported from the current folder first; recorded with the run for export, simulate and energy).")
@click.option("--dataset", type=click.Choice(list(DATASETS)), default="digits", help="Data set (digits is embedded).")
@click.option("--data-dir", type=click.Path(), default=None, help="Folder holding the data set's files.")
@click.option("--method", type=click.Choice(list(METHODS)), default="esl", help="Sparse training method.")
@click.option("--density", type=float, default=0.1, help="Target connection density in (0, 1] (for pq the start density: sparse from scratch; 1.0 = gradual pruning from a dense start).")
@click.option("--density-mode", type=click.Choice(DENSITY_MODES), default="erk", help="Per-layer density rule.")
@click.option("--epochs", type=int, default=40)
@click.option("--seed", type=int, default=0)
@click.option("--out", type=click.Path(), required=True, help="Run folder to write.")
@click.option("--T", "T", type=int, default=8, help="Time steps per sample.")
@click.option("--encoding", type=click.Choice(ENCODINGS), default="direct", help="Static input encoding.")
@click.option("--frame-size", type=int, default=None,
              help="Event data sets: frames of this many pixels square (events pooled onto the grid) [default: the sensor's].")
@click.option("--batch-size", type=int, default=100)
@click.option("--optimizer", type=click.Choice(OPTIMIZERS), default="adam")
@click.option("--lr", type=float, default=0.01, help="Initial learning rate.")
@click.option("--lr-end", type=float, default=0.0001, help="Learning rate at the last epoch (exponential decay).")
@click.option("--loss", type=click.Choice(LOSSES), default="ce")
@click.option("--readout", type=click.Choice(READOUTS), default="spikes",
              help="Output layer: LIF spikes (counts decide), or a non-spiking leaky integrator whose "
                   "membrane potential per step is the output (the form TET is defined on).")
@click.option("--tet-lambda", type=float, default=1e-3, help="TET's lambda.")
@click.option("--width", type=float, default=1.0, help="Multiplier of hidden sizes / channels.")
@click.option("--beta", type=float, default=0.9, help="Membrane decay of every LIF neuron.")
@click.option("--threshold", type=float, default=1.0, help="Firing threshold of every LIF neuron.")
@click.option("--t-iter", type=int, default=None,
              help="Iterations between rewirings [default: 1000 (paper), or total/20 on small data].")
@click.option("--alpha", type=float, default=0.3, help="Initial rewiring fraction.")
@click.option("--t-end", type=float, default=0.75, help="Stop rewiring after this fraction of training.")
@click.option("--grow", type=click.Choice(GROW_RULES), default=None, help="Regrowth rule [default: the method's].")
@click.option("--prune-at", type=float, default=0.5, help="magnitude: prune after this fraction of training.")
@click.option("--pq-p", type=float, default=0.5)
@click.option("--pq-q", type=float, default=1.0)
@click.option("--pq-eta", type=float, default=0.001)
@click.option("--pq-gamma", type=float, default=1.0)
@click.option("--pq-beta", type=float, default=0.9)
@click.option("--pq-rho", type=float, default=0.25, help="Weights regrown per weight pruned.")
@click.option("--pq-scope", type=click.Choice(SCOPES), default="layer")
@click.option("--regrow-std", type=float, default=0.1,
              help="set: regrown weights ~ N(0, std^2) (SET's reference code: randn / 10).")
@click.option("--keep-dead-inputs", is_flag=True,
              help="Let masks hold inputs that are 0 in every training sample (excluded by default: they cannot learn).")
@click.option("--core-aware", type=click.Choice(["truenorth"]), default=None,
              help="Keep rewiring inside core-sized groups.")
@click.option("--weight-bits", type=click.IntRange(2, 16), default=None,
              help="Quantisation-aware training: synapse weights on a signed grid of this many bits "
                   "(8: exactly what one Loihi 2 / netx synapse holds).")
@click.option("--device", default="cpu", help="cpu or cuda.")
@click.option("--cpu-kernels", type=click.Choice(list(KERNELS)), default="native", envvar=ENV_VAR,
              help="CPU kernels: native (this CPU's best, its own last bits) or avx2 (ATen, MKL and oneDNN pinned "
                   "to AVX2, at least 2 threads: the same result on every x86-64 CPU with AVX2; what make demo "
                   "and the benchmarks use). Recorded in summary.json.")
@click.option("--distributed/--no-distributed", default=None,
              help="Train on several processes with DistributedDataParallel (NCCL on GPUs, gloo on CPUs), "
                   "reading RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT  [default: on when started "
                   "by torchrun]. --batch-size is the global batch; rank 0 writes the run folder.")
@click.option("--resume", is_flag=True, help="Continue an interrupted run in --out.")
@click.option("--force", is_flag=True, help="Overwrite an existing run folder.")
@click.option("--no-progress", is_flag=True, help="No progress bars.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def train_cmd(**o):
    """Train a sparse SNN and write a run folder (checkpoint.pt, metrics.csv, summary.json, config.toml,
    curves.png and the structure plots of ``esl inspect``)."""
    from .distributed import launched_by_torchrun, world_from_env
    from .trainer import train

    pin(o["cpu_kernels"])  # before the first tensor operation of this process
    cfg = options_to_config(o)
    params = click.get_current_context().command.params  # the file lists options in --help's order
    record = options_toml({p.name: o[p.name] for p in params if p.name in o and p.name not in (*NOT_IN_FILE, "out")},
                          header="The options of this run (esl train --config reads this file back).")
    world = None
    if o["distributed"] or (o["distributed"] is None and launched_by_torchrun()):
        world = world_from_env()
    summary = train(cfg, o["out"], resume=o["resume"], force=o["force"], progress=not o["no_progress"],
                    options_file=record, world=world)
    if summary is None:  # a distributed run's rank > 0: rank 0 reports
        return
    if o["as_json"]:
        click.echo(json.dumps(summary, indent=2))
    else:
        click.echo(f"test accuracy {summary['test_acc']:.4f} (best val {summary['best_val_acc']:.4f} at epoch "
                   f"{summary['best_epoch']}), density {summary['density']:.4f}, "
                   f"{summary['seconds_per_epoch']:.2f} s/epoch -> {o['out']}")
