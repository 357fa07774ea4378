"""Atomic file writes: a reader sees the old file or the complete new one, never half a file.

The writer fills a temporary file in the destination's own folder (same file system, so the final
``os.replace`` is an atomic rename); on any error the temporary file is removed and the destination
is left untouched.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable, Union

from esl_deploy.errors import EslError

PathLike = Union[str, "os.PathLike[str]"]


def atomic_write(path: PathLike, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp_path)`` on a temporary file next to ``path``, then rename it onto ``path``.

    Returns the destination path. A missing parent folder is a user error (:class:`EslError`).
    """
    dest = Path(path)
    folder = dest.parent if str(dest.parent) else Path(".")
    if not folder.is_dir():
        raise EslError(f"output folder does not exist: {folder}")
    if dest.is_dir():
        raise EslError(f"output path is a folder: {dest}")
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=folder)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        os.chmod(tmp, 0o644)  # mkstemp makes the file private (0600); outputs are ordinary files
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return dest
