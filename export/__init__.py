"""Deployment formats, one subpackage or module each: :mod:`export.nir` (NIR files), :mod:`export.lava`
(Lava processes, Loihi 2 fixed point, lava-dl netx), :mod:`export.onnx` (ONNX); :mod:`export.simulate`
runs a network on every backend against snnTorch; :mod:`export.cli` is ``esl export``."""
