"""Make lava-nc 0.10.0 importable on Python 3.11 without touching site-packages.

lava-nc 0.10.0 declares ``Requires-Python < 3.11``. On 3.11 its module
``lava/magma/compiler/var_model.py`` fails at import time::

    ValueError: mutable default <class '...ByteEncoder'> for field x is not allowed:
    use default_factory

because several dataclasses write ``x: ByteEncoder = ByteEncoder()``, and Python 3.11 refuses
unhashable dataclass instances as field defaults. The fix is the one Python suggests:
``x: ByteEncoder = field(default_factory=ByteEncoder)``.

:func:`install` puts a meta-path finder in front of the normal ones. When (and only when) that one
module is imported, the finder loads it from the installed source with those defaults rewritten,
compiles it in memory and never writes a ``.pyc`` back. Where lava imports cleanly (Python 3.10, or a
fixed lava release whose source has no such default) the rewrite finds nothing to change and the
module loads as it is. ``esl_deploy`` calls :func:`install` when it is imported, so every entry point
(CLI, tests, the public API) has it before lava is first imported.

:func:`import_lava` is the second fix: it imports Lava's runtime even after the multiprocessing start
method was fixed by someone else (tqdm does), which Lava's runtime module otherwise refuses.
"""
from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import re
import sys

TARGET = "lava.magma.compiler.var_model"

# ``    x: ByteEncoder = ByteEncoder()``  ->  ``    x: ByteEncoder = _esl_field(default_factory=ByteEncoder)``
_MUTABLE_DEFAULT = re.compile(r"^(\s+\w+\s*:\s*ByteEncoder\s*)=\s*ByteEncoder\(\)\s*$", re.MULTILINE)


def patch_source(source: str) -> str:
    """Rewrite ``ByteEncoder()`` dataclass defaults as ``field(default_factory=ByteEncoder)``.

    Returns the source unchanged when there is nothing to rewrite.
    """
    patched, count = _MUTABLE_DEFAULT.subn(r"\1= _esl_field(default_factory=ByteEncoder)", source)
    if count == 0:
        return source
    header = "from dataclasses import field as _esl_field  # added by esl_deploy._lava_compat\n"
    # ``from __future__`` imports must stay first: add ours right after them.
    future = list(re.finditer(r"^from __future__ import .*\n", patched, re.MULTILINE))
    at = future[-1].end() if future else 0
    return patched[:at] + header + patched[at:]


class _PatchedLoader(importlib.machinery.SourceFileLoader):
    """Source loader that compiles the patched text and bypasses the bytecode cache."""

    def get_code(self, fullname):  # noqa: D102 - importlib protocol
        source = self.get_data(self.get_filename(fullname)).decode("utf-8")
        return compile(patch_source(source), self.get_filename(fullname), "exec", dont_inherit=True)

    def set_data(self, path, data, *, _mode=0o666):  # never write a .pyc into site-packages
        return None


class _LavaCompatFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path, target=None):
        if fullname != TARGET:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None and spec.origin and spec.origin.endswith(".py"):
                loader = _PatchedLoader(fullname, spec.origin)
                return importlib.util.spec_from_file_location(fullname, spec.origin, loader=loader)
        return None


def install() -> None:
    """Install the finder once (idempotent). A no-op before Python 3.11, where lava imports as is."""
    if sys.version_info < (3, 11):
        return
    if any(isinstance(f, _LavaCompatFinder) for f in sys.meta_path):
        return
    sys.meta_path.insert(0, _LavaCompatFinder())


def import_lava() -> None:
    """Import Lava's runtime, even after something fixed the multiprocessing start method.

    ``lava/magma/runtime/message_infrastructure/multiprocessing.py`` calls
    ``multiprocessing.set_start_method('fork')`` when first imported, which raises "context has already
    been set" once anything used the default context (tqdm's write lock does). When that context is
    already ``fork`` (Linux's default), we clear the choice so Lava's own call sets the same one again.
    """
    if "lava.magma.runtime.message_infrastructure.multiprocessing" in sys.modules:
        return
    import multiprocessing

    method = multiprocessing.get_start_method(allow_none=True)
    if method is not None:
        if method != "fork":
            from .errors import EslError

            raise EslError(f"Lava needs the 'fork' multiprocessing start method, but {method!r} is already set")
        multiprocessing.context._default_context._actual_context = None
    import lava.magma.core.process.process  # noqa: F401
