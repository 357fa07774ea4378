"""``esl export``: write a trained network (checkpoint or ``.nir``) as NIR, Lava, lava-dl netx or ONNX.

The command parses options and calls :func:`export_file`; the Python API does the same thing.
``simulate_cmd`` is re-exported from :mod:`export.simulate_cli` when that module is installed.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Dict, Optional, Union

import click

import esl_deploy
from esl_deploy.errors import EslError
from esl_deploy.models import SpikingNet

TARGETS = ("nir", "lava", "netx", "onnx")


def load_source(path: Union[str, os.PathLike]) -> SpikingNet:
    """A trained network from a ``.nir`` file (:func:`export.nir_import.load_nir`) or a checkpoint
    (``esl_deploy.load``), with ``.meta``."""
    path = Path(path)
    if not path.exists():
        raise EslError(f"no such file: {path}")
    if path.is_dir():
        raise EslError(f"expected a checkpoint or .nir file, got a folder: {path}")
    if path.suffix.lower() == ".nir":
        from .nir_import import load_nir

        return load_nir(path)
    load = getattr(esl_deploy, "load", None)
    if load is None:
        raise EslError(f"cannot read checkpoint {path}: this esl_deploy has no checkpoint loader (esl_deploy.load)")
    return load(path)


def export_file(source: Union[str, os.PathLike], to: str, out: Union[str, os.PathLike], *,
                T: Optional[int] = None, force: bool = False) -> Dict[str, Any]:
    """Export ``source`` to ``out`` in format ``to`` (one of :data:`TARGETS`); returns a summary dict.

    Refuses to replace an existing ``out`` unless ``force``. ONNX is unrolled over ``T`` steps,
    defaulting to the ``T`` recorded with the network. Lava and netx go through the NIR graph.
    """
    if to not in TARGETS:
        raise EslError(f"unknown export format {to!r}; choose one of: {', '.join(TARGETS)}")
    out = Path(out)
    if out.exists() and Path(source).exists() and out.resolve() == Path(source).resolve():
        raise EslError(f"the output {out} is the source file itself; choose another -o (--force never replaces "
                       f"the file being exported)")
    if out.exists() and not force:
        raise EslError(f"{out} already exists; pass --force to overwrite it")
    model = load_source(source)
    if to in ("lava", "netx") and getattr(model.spec, "readout", "spikes") == "membrane":
        raise EslError(f"--to {to} does not support the membrane readout (a non-spiking LI output layer; its "
                       "fixed-point form is not implemented): export --to nir and run it with esl simulate "
                       "--backend lava (floating point)")
    meta = dict(getattr(model, "meta", None) or {})
    summary: Dict[str, Any] = {"source": str(source), "format": to, "output": str(out),
                               "model": model.spec.name, "method": meta.get("method")}
    if to == "onnx":
        from .onnx_export import to_onnx

        steps = T if T is not None else meta.get("T")
        if steps is None:
            raise EslError(f"{source} records no number of time steps; pass --steps")
        to_onnx(model, out, int(steps), meta=meta)
        summary["T"] = int(steps)
    else:
        from .nir_export import to_nir, write_nir

        if to == "nir":
            write_nir(model, out, meta)
        else:
            graph = to_nir(model, meta)
            try:
                if to == "lava":
                    from .lava_export import write_lava as write
                else:
                    from .netx_export import write_netx as write
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
@click.option("--force", is_flag=True, help="Overwrite an existing output.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary instead of a sentence.")
def export_cmd(source: Path, to: str, out: Path, steps: Optional[int], force: bool, as_json: bool) -> None:
    """Export SOURCE (a checkpoint or a .nir file) to NIR, Lava, netx or ONNX."""
    summary = export_file(source, to, out, T=steps, force=force)
    if as_json:
        click.echo(json.dumps(summary, sort_keys=True))
    else:
        size = f" ({summary['bytes']} bytes)" if "bytes" in summary else ""
        click.echo(f"wrote {to} export of {source} to {out}{size}")


try:  # written separately; `esl export` must work without it
    from export.simulate_cli import simulate_cmd  # noqa: F401
except ImportError:
    pass
