"""``esl export``: write a trained network (checkpoint or ``.nir``) as NIR, Lava, lava-dl netx or ONNX.

The command parses options and calls :func:`export_file`; the Python API does the same thing.
``--to nir --for READER`` writes the graph in the conventions of another tool's NIR reader
(:mod:`export.nir.flavours`: snntorch, norse, sinabs).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Dict, Optional, Union

import click

import esl_deploy
from esl_deploy.atomic import check_output
from esl_deploy.errors import EslError
from esl_deploy.models import SpikingNet

from .nir.flavours import READERS

TARGETS = ("nir", "lava", "netx", "onnx")


def load_source(path: Union[str, os.PathLike]) -> SpikingNet:
    """A trained network from a ``.nir`` file (:func:`export.nir.read.load_nir`) or a checkpoint
    (``esl_deploy.load``), with ``.meta``."""
    path = Path(path)
    if not path.exists():
        raise EslError(f"no such file: {path}")
    if path.is_dir():
        raise EslError(f"expected a checkpoint or .nir file, got a folder: {path}")
    if path.suffix.lower() == ".nir":
        from .nir.read import load_nir

        return load_nir(path)
    return esl_deploy.load(path)


def export_file(source: Union[str, os.PathLike], to: str, out: Union[str, os.PathLike], *,
                T: Optional[int] = None, force: bool = False, reader: Optional[str] = None) -> Dict[str, Any]:
    """Export ``source`` to ``out`` in format ``to`` (one of :data:`TARGETS`); returns a summary dict.

    Refuses to replace an existing ``out`` unless ``force``, and never replaces ``source`` itself nor
    anything that is not a regular file (:func:`esl_deploy.atomic.check_output`). ONNX is unrolled over ``T`` steps,
    defaulting to the ``T`` recorded with the network. Lava and netx go through the NIR graph.
    ``reader`` (NIR only, one of :data:`export.nir.flavours.READERS`) writes that reader's flavour.
    """
    if to not in TARGETS:
        raise EslError(f"unknown export format {to!r}; choose one of: {', '.join(TARGETS)}")
    if reader is not None and to != "nir":
        raise EslError(f"--for {reader} applies to --to nir only")
    if reader is not None and reader not in READERS:
        raise EslError(f"unknown NIR reader {reader!r}; choose one of: {', '.join(sorted(READERS))}")
    out = check_output(out, force=force, inputs=[source])
    model = load_source(source)
    graph = None
    if not isinstance(model, SpikingNet):  # a graph (residual, recurrent, CubaLIF, ...): export the graph as read
        from .nir.read import read_graph

        graph = read_graph(source)
    return write_network(model, to, out, T=T, reader=reader, source=str(source), graph=graph)


def write_network(model: SpikingNet, to: str, out: Union[str, os.PathLike], *, T: Optional[int] = None,
                   reader: Optional[str] = None, source: str = "network",
                   graph: Optional[Any] = None) -> Dict[str, Any]:
    """Write ``model`` to ``out`` in format ``to`` (the work of :func:`export_file` once the network is
    loaded; ``out`` is replaced if it exists); returns the summary dict. ``graph``: the NIR graph of a
    network that is not a chain (a :class:`esl_deploy.graphnet.GraphNet` read from a ``.nir`` file),
    written as it is; such a network has no ONNX unrolling."""
    if to not in TARGETS:
        raise EslError(f"unknown export format {to!r}; choose one of: {', '.join(TARGETS)}")
    out = Path(out)
    if to in ("lava", "netx") and getattr(model.spec, "readout", "spikes") == "membrane":
        raise EslError(f"--to {to} does not support the membrane readout (a non-spiking LI output layer; its "
                       "fixed-point form is not implemented): export --to nir and run it with esl simulate "
                       "--backend lava (floating point)")
    meta = dict(getattr(model, "meta", None) or {})
    summary: Dict[str, Any] = {"source": str(source), "format": to, "output": str(out),
                               "model": model.spec.name, "method": meta.get("method")}
    if graph is None and not isinstance(model, SpikingNet):
        raise EslError(f"{source}: this network is a graph (branches, merges, recurrent edges or neuron kinds "
                       "beyond LIF/LI); export it from its .nir file")
    if to == "onnx":
        if graph is not None:
            raise EslError(f"--to onnx unrolls chains of LIF layers only; {source} is a graph (branches, merges, "
                           "recurrent edges or neuron kinds such as CubaLIF): export --to nir or --to lava")
        from .onnx import to_onnx

        steps = T if T is not None else meta.get("T")
        if steps is None:
            raise EslError(f"{source} records no number of time steps; pass --steps")
        to_onnx(model, out, int(steps), meta=meta)
        summary["T"] = int(steps)
    else:
        from .nir.write import to_nir, write_graph

        if to == "nir":
            graph = to_nir(model, meta) if graph is None else graph
            if reader is not None:
                from .nir.flavours import flavour, reader_read_hint

                graph = flavour(graph, reader)
                summary["reader"], summary["read_with"] = reader, reader_read_hint(reader, graph)[0]
            write_graph(graph, out)
        else:
            graph = to_nir(model, meta) if graph is None else graph
            try:
                if to == "lava":
                    from .lava.file import write_lava as write
                else:
                    from .lava.netx import write_netx as write
            except ImportError as e:
                raise EslError(f"--to {to} is not available in this installation ({e})") from e
            write(graph, out)
    if out.is_file():
        summary["bytes"] = out.stat().st_size
    return summary


@click.command("export")
@click.argument("source", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--to", "to", type=click.Choice(TARGETS), required=True, help="Output format.")
@click.option("-o", "--output", "out", type=click.Path(path_type=Path), required=True, help="Output path.")
@click.option("-T", "--steps", type=click.IntRange(min=1), default=None,
              help="Time steps to unroll for ONNX (default: the T the network was trained with).")
@click.option("--for", "reader", type=click.Choice(sorted(READERS)), default=None,
              help="With --to nir: write the graph as this tool's NIR reader reads it (see the README's NIR "
                   "readers table).")
@click.option("--force", is_flag=True, help="Overwrite an existing output.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary instead of a sentence.")
def export_cmd(source: Path, to: str, out: Path, steps: Optional[int], reader: Optional[str], force: bool,
               as_json: bool) -> None:
    """Export SOURCE (a checkpoint or a .nir file) to NIR, Lava, netx or ONNX."""
    summary = export_file(source, to, out, T=steps, force=force, reader=reader)
    if as_json:
        click.echo(json.dumps(summary, sort_keys=True))
    else:
        size = f" ({summary['bytes']} bytes)" if "bytes" in summary else ""
        flavour = f" for {reader} (read it with {summary['read_with']})" if reader else ""
        click.echo(f"wrote {to} export of {source} to {out}{size}{flavour}")
