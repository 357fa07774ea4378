"""LeakyReset: a Lava LIF population that runs snnTorch's ``Leaky`` for every reset mechanism, with
per-neuron decay and threshold, and ``LIFReset``'s per-sample reset.

Lava's stock ``LIF``/``LIFReset`` reset ``v`` to zero in the step of the spike and hold one ``du``, ``dv``
and ``vth`` per population (``Var(shape=(1,))``). ``LeakyReset`` keeps Lava's ports, ``u`` and ``v``
(``u[t] = u[t-1] (1 - du) + a_in[t]``, float; the 24-bit fixed-point ``u`` of Lava's bit-accurate
model; ``u_bias`` is added to the synaptic input every step, ``a_rec`` is a second input gated after each
reset), but ``dv`` and ``vth`` are one value per neuron and the voltage step is snnTorch's, for
``reset_mechanism`` in ``zero``/``subtract``/``none`` and ``reset_delay`` True/False: the formulas are
in :mod:`esl_deploy.export.lava.leaky` (:func:`~esl_deploy.export.lava.leaky.float_step`,
:func:`~esl_deploy.export.lava.leaky.fixed_step`; the reset signal ``r = v > vth`` is computed from the
stored ``v``, so no further state is kept). As in ``LIFReset``, ``u`` and ``v`` are zeroed at the start
of every step with ``time_step % reset_interval == reset_offset``.

Lava's decorator forbids subclassing a model that already implements a process, so the models derive
from ``AbstractPyLifModelFloat``/``AbstractPyLifModelFixed`` (as the voltage recorder does). Fixed
point: ``dv`` 12-bit unsigned, ``vth`` 17-bit unsigned (compared as ``vth << 6``), ``bias_mant`` 13-bit
with ``bias_exp``, ``u``/``v`` 24-bit, Lava's own declarations.
"""
from __future__ import annotations

from typing import Tuple, Union

import numpy as np
from lava.magma.core.decorator import implements, requires, tag
from lava.magma.core.model.py.ports import PyInPort, PyOutPort
from lava.magma.core.model.py.type import LavaPyType
from lava.magma.core.process.ports.ports import InPort, OutPort
from lava.magma.core.process.process import AbstractProcess
from lava.magma.core.process.variable import Var
from lava.magma.core.resources import CPU
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol
from lava.proc.lif.models import AbstractPyLifModelFixed, AbstractPyLifModelFloat

from esl_deploy.export.lava.leaky import check_mode, fixed_current, fixed_step, float_step

Values = Union[float, np.ndarray]


class LeakyReset(AbstractProcess):
    """snnTorch ``Leaky`` neurons of ``shape`` (Lava order): ``LIFReset``'s arguments, with ``dv`` and
    ``vth`` per neuron (scalars are broadcast), plus ``reset_mechanism`` and ``reset_delay``."""

    def __init__(self, *, shape: Tuple[int, ...], du: float, dv: Values, vth: Values, bias_mant: Values = 0,
                 bias_exp: Values = 0, reset_interval: int = 1, reset_offset: int = 0,
                 reset_mechanism: str = "zero", reset_delay: bool = False, v_reset: Values = 0, gate: int = 0,
                 u_bias: Values = 0, name=None) -> None:
        shape = tuple(int(s) for s in shape)
        check_mode(reset_mechanism, reset_delay)
        if int(reset_interval) < 1:
            raise ValueError(f"reset_interval must be positive, got {reset_interval}")
        if not 0 <= int(gate) <= int(reset_interval):
            raise ValueError(f"gate must lie in 0..reset_interval, got {gate}")
        super().__init__(shape=shape, reset_interval=int(reset_interval), reset_offset=int(reset_offset),
                         reset_mechanism=reset_mechanism, reset_delay=bool(reset_delay), gate=int(gate), name=name)
        self.a_in = InPort(shape=shape)
        self.a_rec = InPort(shape=shape)  # the recurrent input: dropped for `gate` steps after each reset
        self.s_out = OutPort(shape=shape)
        self.u = Var(shape=shape, init=0)
        self.v = Var(shape=shape, init=0)
        self.du = Var(shape=(1,), init=du)
        self.dv = Var(shape=shape, init=np.broadcast_to(dv, shape).copy())
        self.vth = Var(shape=shape, init=np.broadcast_to(vth, shape).copy())
        self.bias_mant = Var(shape=shape, init=np.broadcast_to(bias_mant, shape).copy())
        self.bias_exp = Var(shape=shape, init=np.broadcast_to(bias_exp, shape).copy())
        self.v_reset = Var(shape=shape, init=np.broadcast_to(v_reset, shape).copy())
        self.u_bias = Var(shape=shape, init=np.broadcast_to(u_bias, shape).copy())  # added to a_in every step


class _ResetSchedule:
    """The mode and the per-sample reset of :class:`LeakyReset` (mixed into both models)."""

    def _setup(self, proc_params) -> None:
        self.reset_interval = proc_params["reset_interval"]
        self.reset_offset = proc_params["reset_offset"] % self.reset_interval
        self.reset_mechanism = proc_params["reset_mechanism"]
        self.reset_delay = proc_params["reset_delay"]
        self.gate = proc_params.get("gate", 0)

    def _sample_reset(self) -> None:
        if self.time_step % self.reset_interval == self.reset_offset:
            self.u *= 0
            self.v *= 0

    def _recurrent(self, a_rec):
        """The recurrent input, or 0 in the first ``gate`` steps after a reset (they carry the last sample)."""
        if (self.time_step - self.reset_offset) % self.reset_interval < self.gate:
            return a_rec * 0
        return a_rec


@implements(proc=LeakyReset, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt")
class PyLeakyResetModelFloat(_ResetSchedule, AbstractPyLifModelFloat):
    """Floating point: ``u = u (1 - du) + a_in``, then :func:`~esl_deploy.export.lava.leaky.float_step`."""

    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)
    a_rec: PyInPort = LavaPyType(PyInPort.VEC_DENSE, float)
    dv: np.ndarray = LavaPyType(np.ndarray, float)
    vth: np.ndarray = LavaPyType(np.ndarray, float)
    v_reset: np.ndarray = LavaPyType(np.ndarray, float)
    u_bias: np.ndarray = LavaPyType(np.ndarray, float)

    def __init__(self, proc_params):
        super().__init__(proc_params)
        self._setup(proc_params)

    def run_spk(self) -> None:
        a_in = self.a_in.recv() + self._recurrent(self.a_rec.recv()) + self.u_bias
        self._sample_reset()
        self.u[:] = self.u * (1 - self.du)
        self.u[:] += a_in
        v, s = float_step(self.v, self.u, self.bias_mant, self.dv, self.vth, self.reset_mechanism, self.reset_delay,
                          self.v_reset)
        self.v[:] = v
        self.s_out.send(s)


@implements(proc=LeakyReset, protocol=LoihiProtocol)
@requires(CPU)
@tag("bit_accurate_loihi", "fixed_pt")
class PyLeakyResetModelFixed(_ResetSchedule, AbstractPyLifModelFixed):
    """Loihi 2 fixed point: Lava's 24-bit current (:func:`~esl_deploy.export.lava.leaky.fixed_current`),
    then :func:`~esl_deploy.export.lava.leaky.fixed_step` with ``vth << 6`` and ``bias_mant << bias_exp``."""

    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24)
    a_rec: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int16, precision=16)
    dv: np.ndarray = LavaPyType(np.ndarray, np.uint16, precision=12)
    vth: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=17)
    v_reset: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=24)
    u_bias: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=16)

    def __init__(self, proc_params):
        super().__init__(proc_params)
        self._setup(proc_params)

    def run_spk(self) -> None:
        a_in = self.a_in.recv().astype(np.int64) + self._recurrent(self.a_rec.recv().astype(np.int64)) \
            + self.u_bias.astype(np.int64)
        self._sample_reset()
        self.scale_bias()
        self.u[:] = fixed_current(self.u, a_in, self.du)
        vth6 = np.left_shift(self.vth.astype(np.int64), self.vth_shift)
        v_reset6 = np.left_shift(self.v_reset.astype(np.int64), self.vth_shift)
        v, _, s = fixed_step(self.v, self.u.astype(np.int64), self.effective_bias.astype(np.int64), self.dv, vth6,
                             self.reset_mechanism, self.reset_delay, v_reset6)
        self.v[:] = v
        self.s_out.send(s)


__all__ = ["LeakyReset", "PyLeakyResetModelFixed", "PyLeakyResetModelFloat"]
