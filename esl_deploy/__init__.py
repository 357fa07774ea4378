"""ESL Deploy: sparse spiking networks trained with evolutionary structure learning, deployed to
neuromorphic hardware. Public API: :func:`load` (a trained network from a checkpoint)."""
from ._lava_compat import install as _install_lava_compat

_install_lava_compat()

__version__ = "0.1.0"

from .api import load  # noqa: E402

__all__ = ["load", "__version__"]
