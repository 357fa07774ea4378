"""NIR (Neuromorphic Intermediate Representation) files: :mod:`.write` (SpikingNet -> graph),
:mod:`.read` (graph -> SpikingNet), :mod:`.graph` (the one walk over a chain every backend uses) and
:mod:`.flavours` (equivalent graphs for readers with other conventions: Norse, Sinabs, snnTorch)."""
