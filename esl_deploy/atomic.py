"""Atomic file writes: a reader sees the old file or the complete new one, never half a file.

The writer fills a temporary file in the destination's own folder (same file system, so the final
``os.replace`` is an atomic rename); on any error the temporary file is removed and the destination
is left untouched. Outputs get ordinary permissions (0644; ``mkstemp`` makes them private).
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import BinaryIO, Callable, Union

from .errors import EslError

PathLike = Union[str, "os.PathLike[str]"]


def atomic_write(path: PathLike, write: Callable[[Path], None], *, parents: bool = False) -> Path:
    """Call ``write(tmp_path)`` on a temporary file next to ``path``, then rename it onto ``path``.

    ``parents``: create a missing parent folder (run folders); otherwise a missing folder is a user
    error (:class:`EslError`), as is a destination that is a folder. Returns the destination path.
    """
    dest = Path(path)
    folder = dest.parent if str(dest.parent) else Path(".")
    if parents:
        folder.mkdir(parents=True, exist_ok=True)
    if not folder.is_dir():
        raise EslError(f"output folder does not exist: {folder}")
    if dest.is_dir():
        raise EslError(f"output path is a folder: {dest}")
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=folder)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return dest


def atomic_write_bytes(path: PathLike, write: Callable[[BinaryIO], object]) -> None:
    """Call ``write(file_object)`` on a temporary file beside ``path`` (parents created), fsync, rename."""
    def fill(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())

    atomic_write(path, fill, parents=True)


def atomic_write_text(path: PathLike, text: str) -> None:
    atomic_write_bytes(path, lambda f: f.write(text.encode("utf-8")))
