"""What residual shortcuts and other graph edges cost on TrueNorth, and the synaptic layers of a graph network.

**An identity shortcut on TrueNorth.** A TrueNorth neuron has exactly one target, one axon on one core
(Merolla et al. 2014, SM S4): the spikes of a residual block's input ``x`` already go to the axons of the
block's first convolution (through splitter neurons where the fan-out needs more). Adding ``x`` into the
block's output neurons (``lif2``) needs one more copy of every spike of ``x``: **one relay neuron per element
of x** (threshold 1, weight 1: it fires whenever its input fires, one tick later, which is what our Lava
pipeline's one-step alignment of the shortcut does too) whose axon receives ``x``'s spike, and whose output
reaches the core of the matching ``lif2`` neuron. The model charges exactly that, as one synaptic layer of
``n`` relay neurons with an identity mask: ``n`` neurons, ``n`` axons, ``n`` synapses, placed into cores of
256 x 256 by the same mapper as every other layer (``ceil(n / 256)`` cores when packed alone), and one
synaptic event (26 pJ) per shortcut spike (:mod:`hw_models.sops`, ``kind = "identity"``). Not charged, as for
a projection shortcut (a 1x1 conv mapped as its own neurons, whose partial sums must reach ``lif2`` too):
the axon on ``lif2``'s core that receives the relayed spike; so the count is exact in neurons and synaptic
events of the shortcut and a lower bound on ``lif2``'s axons.

:func:`identity_mask` is that layer's mask; :mod:`hw_models.unroll` adds it for every identity shortcut of a
:class:`esl_deploy.models.BasicBlock`, :mod:`hw_models.graph_map` for every
:class:`esl_deploy.graphnet.IdentityEdge` of a graph read from NIR.
"""
from __future__ import annotations

import scipy.sparse as sp


def identity_mask(n: int) -> sp.csr_matrix:
    """The (neurons, axons) mask of the relay neurons of an identity shortcut of ``n`` elements (module
    docstring): ``n`` relay neurons, each with one synapse from its own axon."""
    if n < 1:
        raise ValueError(f"an identity shortcut needs at least one element, got {n}")
    return sp.identity(int(n), dtype=bool, format="csr")


__all__ = ["identity_mask"]
