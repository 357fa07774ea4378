"""Custom Lava processes used by :mod:`export.lava.convert`.

They live in their own package because Lava's compiler, looking for the ProcessModels of a Process,
imports every module in the Process's folder (``lava/magma/compiler/compiler_graphs.py``,
``_find_proc_models``); a folder of its own keeps it from importing the rest of ``export``.
"""
