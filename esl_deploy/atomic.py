"""Atomic file writes: a reader sees the old file or the complete new one, never half a file.

The writer fills a temporary file in the destination's own folder (same file system, so the final
``os.replace`` is an atomic rename); on any error the temporary file is removed and the destination
is left untouched. Outputs get ordinary permissions (0644; ``mkstemp`` makes them private).

A write that the file system refuses (read-only ``EROFS``, full ``ENOSPC`` -- which ``torch.save``
reports as a ``RuntimeError`` -- a name too long ``ENAMETOOLONG``, no permission) is a user error:
one :class:`EslError` line naming the file and the reason. :func:`check_free_space` lets a writer
that cannot fail cleanly on a full disk (h5py can crash) refuse beforehand.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import BinaryIO, Callable, List, Mapping, Sequence, Union

from .errors import EslError

PathLike = Union[str, "os.PathLike[str]"]


def atomic_write(path: PathLike, write: Callable[[Path], None], *, parents: bool = False) -> Path:
    """Call ``write(tmp_path)`` on a temporary file next to ``path``, then rename it onto ``path``.

    ``parents``: create a missing parent folder (run folders); otherwise a missing folder is a user
    error (:class:`EslError`), as is a destination that is a folder. Returns the destination path.
    """
    dest = Path(path)
    folder = dest.parent if str(dest.parent) else Path(".")
    try:
        if parents:
            folder.mkdir(parents=True, exist_ok=True)
        if not folder.is_dir():
            raise EslError(f"output folder does not exist: {folder}")
        if dest.is_dir():
            raise EslError(f"output path is a folder: {dest}")
        fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name[:200]}.", suffix=".tmp", dir=folder)
    except OSError as e:
        raise EslError(f"cannot write {dest}: {_reason(e)}") from None
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, dest)
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        if isinstance(e, OSError):
            raise EslError(f"cannot write {dest}: {_reason(e)}") from None
        if isinstance(e, RuntimeError) and "writ" in str(e).lower():  # torch.save's stream writer
            raise EslError(f"cannot write {dest}: {str(e).strip().splitlines()[-1][:160]} "
                           f"(is the disk full or read-only?)") from None
        raise
    return dest


def _reason(e: OSError) -> str:
    return e.strerror or str(e) or type(e).__name__


def check_free_space(folder: PathLike, need_bytes: int) -> None:
    """Refuse (EslError) when ``folder``'s file system has less than ``need_bytes`` (+ 1 MiB) free."""
    import shutil
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return
    if free < need_bytes + (1 << 20):
        raise EslError(f"not enough free space in {folder}: {free:,} bytes free, about {need_bytes:,} needed")


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


def atomic_write_csv(path: PathLike, rows: Sequence[Mapping[str, object]]) -> None:
    """``rows`` as CSV; the columns are every key in order of first appearance (a row lacking one: empty)."""
    import csv
    import io

    keys: List[str] = []
    for row in rows:
        keys += [k for k in row if k not in keys]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=keys)
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(path, buf.getvalue())
