"""Lava (lava-nc) and lava-dl netx: :mod:`.convert` (NIR chain -> :class:`~.net.LavaNet`), :mod:`.net`
(the records), :mod:`.fixed` (Loihi 2 fixed point), :mod:`.run` (the Lava runner), :mod:`.file` (the
``--to lava`` file), :mod:`.netx` (the netx HDF5 file and its runner), :mod:`.leaky` (snnTorch's reset
mechanisms as one float and one fixed-point step), :mod:`.procs` (custom processes)."""
