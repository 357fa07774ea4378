"""Hardware cost models for sparse spiking networks.

- :mod:`hw_models.sops`: synaptic operations (ACs/MACs) and firing rates counted from real activity,
  and the FLOPs of the equivalent dense ANN;
- :mod:`hw_models.unroll`: a network as per-layer (neurons, axons) connectivity matrices (conv unrolled,
  pooling folded);
- :mod:`hw_models.cores`: the core and chip (CoreSpec) and balanced axon blocks, which the modules
  below share;
- :mod:`hw_models.truenorth`: the per-layer TrueNorth mappers (naive and sparsity-aware, one layer per
  core) and their lower bound;
- :mod:`hw_models.packing`: whole-network packing under TrueNorth's rules (layers share cores) and the
  lower bound on any such placement;
- :mod:`hw_models.conv_geometry`, :mod:`hw_models.conv_mapping`, :mod:`hw_models.conv_bound`: a
  convolution's receptive fields, its conv-aware tiling (spatial tiles x feature groups) and the lower
  bound that understands local connectivity;
- :mod:`hw_models.tn_weights`: TrueNorth's weight rule (4 axon types, per-neuron integer weights);
- :mod:`hw_models.core_aware`: core-sized connectivity patterns for core-aware structure learning;
- :mod:`hw_models.energy`: the table of hardware constants (with sources) and the energy formulas;
- :mod:`hw_models.report` and :mod:`hw_models.cli`: ``esl energy``.
"""
