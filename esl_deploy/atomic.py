"""Atomic file writes: a reader sees the old file or the complete new one, never half a file.

The writer fills a temporary file in the destination's own folder (same file system, so the final
``os.replace`` is an atomic rename); on any error, and on the signals :mod:`esl_deploy.cli` turns into
exceptions (SIGINT, SIGTERM, SIGHUP), the temporary file is removed and the destination is left
untouched. The temporary file is named ``.NAME.<pid>-<random>.tmp``; one left by a writer that was
killed outright (``kill -9``, a power cut) is removed by the next write of the same file, once its
process is gone. A file that is replaced keeps its permission bits; a new file gets ``0666`` less
the umask, as ``open`` would give it (``mkstemp`` alone would make it private).

Only regular files are ever replaced: a destination that is a FIFO, a device node, a socket, a folder
or a symbolic link is refused (:func:`check_output` says so before any work, :func:`atomic_write`
again when writing).

A write that the file system refuses (read-only ``EROFS``, full ``ENOSPC`` -- which ``torch.save``
reports as a ``RuntimeError`` -- a name too long ``ENAMETOOLONG``, no permission) is a user error:
one :class:`EslError` line naming the file and the reason. :func:`check_free_space` lets a writer
that cannot fail cleanly on a full disk (h5py can crash) refuse beforehand.
"""
from __future__ import annotations

import os
import re
import stat
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Callable, Iterable, Iterator, List, Mapping, Optional, Sequence, Union

from .errors import EslError

PathLike = Union[str, "os.PathLike[str]"]


def file_kind(st: os.stat_result) -> str:
    """What a ``stat``/``lstat`` result describes, in words ("a FIFO", "a device node", ...)."""
    mode = st.st_mode
    for test, words in ((stat.S_ISREG, "a regular file"), (stat.S_ISDIR, "a folder"), (stat.S_ISLNK, "a symbolic link"),
                        (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a device node"), (stat.S_ISBLK, "a device node"),
                        (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return words
    return "not a regular file"


def check_regular_input(path: PathLike, what: str = "file") -> Path:
    """Refuse (EslError) to read ``path`` unless it is a regular file (symbolic links to one are fine): a FIFO
    would block the read forever, a device node (``/dev/zero``) never ends. Returns the path."""
    path = Path(path)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise EslError(f"{what} not found: {path}") from None
    except OSError as e:
        raise EslError(f"cannot read {what} {path}: {_reason(e)}") from None
    if not stat.S_ISREG(st.st_mode):
        raise EslError(f"{what} {path} is {file_kind(st)}, not a regular file")
    return path


def check_output(path: PathLike, *, force: bool, inputs: Iterable[PathLike] = (), option: str = "--force") -> Path:
    """Refuse (EslError), before any work, an output ``path`` that exists and is not a regular file (a FIFO, a
    device node, a symbolic link, a folder: never replaced, even with ``force``), that is one of ``inputs``
    (the same file by any name: never replaced), or that exists without ``force``. Returns the path."""
    path = Path(path)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return path
    except OSError as e:
        raise EslError(f"cannot write {path}: {_reason(e)}") from None
    if not stat.S_ISREG(st.st_mode):
        raise EslError(f"output {path} is {file_kind(st)}, not a regular file: esl replaces only regular files")
    for source in inputs:
        try:
            same = os.path.samefile(path, source)
        except OSError:
            same = False
        if same:
            raise EslError(f"the output {path} is this command's input (source {source}); choose another output "
                           f"({option} never replaces a source file)")
    if not force:
        raise EslError(f"{path} already exists; pass {option} to overwrite it")
    return path


def umask() -> int:
    """The process's umask (read from /proc where possible: setting it to read it is not thread-safe)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_TMP = re.compile(r"\.(?P<pid>\d+)-[^.]+\.tmp$")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, someone else's
        return True
    return True


def sweep_stale_temp_files(folder: Path, name: str) -> None:
    """Remove ``folder/.NAME.<pid>-<random>.tmp`` files of writers that died (their process is gone).
    A file whose process is alive -- perhaps another esl writing the same output -- is left alone."""
    prefix = f".{name[:200]}."
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return
    for entry in entries:
        if not entry.name.startswith(prefix):
            continue
        m = _TMP.match(entry.name[len(prefix) - 1:])
        if m is None or _pid_alive(int(m["pid"])):
            continue
        try:
            if entry.is_file(follow_symlinks=False) and entry.stat(follow_symlinks=False).st_uid == os.getuid():
                os.unlink(entry.path)
        except OSError:
            pass


def atomic_write(path: PathLike, write: Callable[[Path], None], *, parents: bool = False) -> Path:
    """Call ``write(tmp_path)`` on a temporary file next to ``path``, then rename it onto ``path``.

    ``parents``: create a missing parent folder (run folders); otherwise a missing folder is a user
    error (:class:`EslError`), as is a destination that is not a regular file (see the module docstring).
    A replaced file keeps its mode; a new one gets ``0666 & ~umask``. Returns the destination path.
    """
    dest = Path(path)
    folder = dest.parent if str(dest.parent) else Path(".")
    try:
        if parents:
            folder.mkdir(parents=True, exist_ok=True)
        if not folder.is_dir():
            raise EslError(f"output folder does not exist: {folder}")
        old = _lstat(dest)
        if old is not None and not stat.S_ISREG(old.st_mode):
            raise EslError(f"output {dest} is {file_kind(old)}, not a regular file: esl replaces only regular files")
        mode = stat.S_IMODE(old.st_mode) if old is not None else 0o666 & ~umask()
        sweep_stale_temp_files(folder, dest.name)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name[:200]}.{os.getpid()}-", suffix=".tmp", dir=folder)
    except OSError as e:
        raise EslError(f"cannot write {dest}: {_reason(e)}") from None
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        os.chmod(tmp, mode)
        os.replace(tmp, dest)
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        if isinstance(e, OSError):
            raise EslError(f"cannot write {dest}: {_reason(e)}") from None
        if isinstance(e, RuntimeError) and _is_write_failure(str(e)):  # torch.save's stream writer
            raise EslError(f"cannot write {dest}: {str(e).strip().splitlines()[-1][:160]} "
                           f"(is the disk full or read-only?)") from None
        raise
    return dest


def _lstat(path: Path) -> Optional[os.stat_result]:
    try:
        return os.lstat(path)
    except FileNotFoundError:
        return None


def _is_write_failure(message: str) -> bool:
    """A RuntimeError of torch.save's zip writer that means the file system refused the bytes: "file write
    failed", or "unexpected pos N vs M" (a short write: the disk filled up)."""
    text = message.lower()
    return "writ" in text or "unexpected pos" in text


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


@contextmanager
def private_temp_dir(prefix: str) -> Iterator[Path]:
    """A fresh folder ``<tmp>/<prefix><pid>-<random>`` for this process's scratch files, removed on the way
    out (errors and the signals :mod:`esl_deploy.cli` turns into exceptions included); while it is open it
    is also ``tempfile``'s default folder, so the temporary files of the libraries called inside (Lava,
    lava-dl) land in it too. First removes the folders of this prefix whose process is gone (``kill -9``)."""
    import shutil

    root = Path(tempfile.gettempdir())
    pattern = re.compile(re.escape(prefix) + r"(?P<pid>\d+)-")
    try:
        entries = list(os.scandir(root))
    except OSError:
        entries = []
    for entry in entries:
        m = pattern.match(entry.name)
        if m is None or _pid_alive(int(m["pid"])):
            continue
        try:
            if entry.is_dir(follow_symlinks=False) and entry.stat(follow_symlinks=False).st_uid == os.getuid():
                shutil.rmtree(entry.path, ignore_errors=True)
        except OSError:
            pass
    try:
        path = Path(tempfile.mkdtemp(prefix=f"{prefix}{os.getpid()}-", dir=root))
    except OSError as e:
        raise EslError(f"cannot make a temporary folder in {root}: {_reason(e)}") from None
    saved = tempfile.tempdir
    tempfile.tempdir = str(path)
    try:
        yield path
    finally:
        tempfile.tempdir = saved
        shutil.rmtree(path, ignore_errors=True)


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
