"""SpikeRecorder: a Lava sink that writes every received vector into a memory-mapped file.

Lava's own sink (``lava.proc.io.sink.RingBuffer``) keeps its buffer in a Var, and ``Var.get()`` sends
arrays from the process to the runtime one element per message (``PyLoihiProcessModel._get_var``:
whose own comment notes it should send the whole vector), about 17 us per value here: reading the spikes of 800 neurons over
2,900 steps takes ~40 s. This recorder writes row ``time_step - 1`` of a ``(steps, *shape)`` uint8
file instead (``received != 0``), which the caller reads with numpy once the run has returned. The
file is created (zero-filled) by the caller; Linux keeps shared file mappings coherent across the
processes Lava starts.
"""
from __future__ import annotations

import os
from typing import Tuple

import numpy as np
from lava.magma.core.decorator import implements, requires, tag
from lava.magma.core.model.py.model import PyLoihiProcessModel
from lava.magma.core.model.py.ports import PyInPort
from lava.magma.core.model.py.type import LavaPyType
from lava.magma.core.process.ports.ports import InPort
from lava.magma.core.process.process import AbstractProcess
from lava.magma.core.resources import CPU
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol


class SpikeRecorder(AbstractProcess):
    """Records ``a_in != 0`` at every step into ``path``: a (steps, *shape) uint8 file (C order)."""

    def __init__(self, *, shape: Tuple[int, ...], steps: int, path: str) -> None:
        super().__init__(shape=tuple(shape), steps=int(steps), path=os.fspath(path))
        self.a_in = InPort(shape=tuple(shape))


@implements(proc=SpikeRecorder, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt", "fixed_pt")
class PySpikeRecorderModel(PyLoihiProcessModel):
    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, float)

    def __init__(self, proc_params):
        super().__init__(proc_params)
        self._buffer = None

    def run_spk(self) -> None:
        data = self.a_in.recv()
        if self._buffer is None:
            shape = (self.proc_params["steps"],) + tuple(self.proc_params["shape"])
            self._buffer = np.memmap(self.proc_params["path"], dtype=np.uint8, mode="r+", shape=shape)
        step = self.time_step - 1
        if step < self._buffer.shape[0]:
            self._buffer[step] = data != 0
