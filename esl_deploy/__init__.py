"""ESL Deploy: sparse spiking networks trained with evolutionary structure learning, deployed to
neuromorphic hardware.

Public API (see :mod:`esl_deploy.library`)::

    load(path)                                    a trained network from a run's checkpoint or a .nir file
    Sparsifier(model, optimizer, method=..., density=..., total_steps=...)   sparse training in your loop
    deployable(net, sample)                       a stock snnTorch network in the form every backend reads
    to_nir(net, sample) / export_network(net, path, to="nir"|"lava"|"netx"|"onnx", sample=...)
    simulate(net, inputs, backend="lava"|"lava-fixed"|"netx"|"snntorch")     spike agreement, layer by layer
    energy(net, inputs, T=..., hw="truenorth"|"loihi"|"cmos45"|"all")       SOPs, cores and energy

The API names other than ``load`` are imported on first use (they pull in the exporters and simulators).
"""
from ._lava_compat import install as _install_lava_compat

_install_lava_compat()

__version__ = "0.1.0"

from .api import load  # noqa: E402

_LIBRARY = ("Sparsifier", "deployable", "energy", "export_network", "simulate", "to_nir")


def __getattr__(name: str):
    """The library API's names, imported from :mod:`esl_deploy.library` on first use (PEP 562)."""
    if name in _LIBRARY:
        from . import library

        return getattr(library, name)
    raise AttributeError(f"module 'esl_deploy' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_LIBRARY))


__all__ = ["load", "__version__", *_LIBRARY]
