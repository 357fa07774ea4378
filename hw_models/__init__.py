"""Hardware cost models for sparse spiking networks.

- :mod:`hw_models.sops`: synaptic operations (ACs/MACs) and firing rates counted from real activity,
  and the FLOPs of the equivalent dense ANN;
- :mod:`hw_models.unroll`: a network as per-layer (neurons, axons) connectivity matrices (conv unrolled,
  pooling folded);
- :mod:`hw_models.truenorth`: the TrueNorth core model, the naive and sparsity-aware mappers and the
  lower bound on cores;
- :mod:`hw_models.core_aware`: core-sized connectivity patterns for core-aware structure learning;
- :mod:`hw_models.energy`: the table of hardware constants (with sources) and the energy formulas;
- :mod:`hw_models.report` and :mod:`hw_models.cli`: ``esl energy``.
"""
