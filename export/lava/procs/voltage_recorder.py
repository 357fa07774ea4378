"""VoltageLIFReset: Lava's ``LIFReset`` whose float model also writes its voltage ``v`` every step to a file.

The membrane readout (a NIR ``LI`` node, :mod:`export.lava.convert`) is a Lava float LIF whose threshold
is never reached (``vth = inf``); its output is the voltage, which no port carries. Lava's ``Monitor``
probes a Var through a ``RefPort`` into a sink whose buffer comes back one value per message (see
:mod:`export.lava.procs.spike_recorder`), so instead the process model itself writes row
``time_step - 1`` of a ``(steps, *shape)`` float64 file, created (zero-filled) by the caller, right after
the step's update. The dynamics are those of :class:`lava.proc.lif.models.PyLifResetModelFloat` (Lava's
decorator forbids subclassing a model that already implements a process, so this model derives from
the same ``AbstractPyLifModelFloat`` and repeats its few lines): zero ``u`` and ``v`` when
``time_step % reset_interval == reset_offset``, then ``u = u (1 - du) + a_in``,
``v = v (1 - dv) + u + bias``, spike ``v > vth`` and reset ``v`` of the spiking neurons to 0, then
write ``v``. Floating point only.
"""
from __future__ import annotations

import os

import numpy as np
from lava.magma.core.decorator import implements, requires, tag
from lava.magma.core.resources import CPU
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol
from lava.magma.core.model.py.ports import PyOutPort
from lava.magma.core.model.py.type import LavaPyType
from lava.proc.lif.models import AbstractPyLifModelFloat
from lava.proc.lif.process import LIFReset


class VoltageLIFReset(LIFReset):
    """A ``LIFReset`` (same arguments) that records ``v`` after every step into ``path``: (steps, *shape) float64."""

    def __init__(self, *, steps: int, path: str, **kwargs) -> None:
        super().__init__(**kwargs)
        self.proc_params["steps"] = int(steps)
        self.proc_params["path"] = os.fspath(path)


@implements(proc=VoltageLIFReset, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt")
class PyVoltageLIFResetModelFloat(AbstractPyLifModelFloat):
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)
    vth: float = LavaPyType(float, float)

    def __init__(self, proc_params):
        super().__init__(proc_params)
        self.reset_interval = proc_params["reset_interval"]
        self.reset_offset = proc_params["reset_offset"] % self.reset_interval
        self._buffer = None

    def spiking_activation(self):
        return self.v > self.vth

    def run_spk(self) -> None:
        a_in = self.a_in.recv()
        if self.time_step % self.reset_interval == self.reset_offset:
            self.u *= 0
            self.v *= 0
        self.subthr_dynamics(activation_in=a_in)
        s_out = self.spiking_activation()
        self.reset_voltage(spike_vector=s_out)
        self.s_out.send(s_out)
        if self._buffer is None:
            shape = (self.proc_params["steps"],) + tuple(self.proc_params["shape"])
            self._buffer = np.memmap(self.proc_params["path"], dtype=np.float64, mode="r+", shape=shape)
        step = self.time_step - 1
        if step < self._buffer.shape[0]:
            self._buffer[step] = self.v
