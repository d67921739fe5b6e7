"""Atomic file writes shared by every part of the package (bottom floor: imports only errors).

Every result file branchspec writes (checkpoints, ``report.html``, JSON/NPZ
results, CSV logs) goes through :func:`atomic_write_bytes`: the bytes are
written to a temporary ``.NAME.<random>.tmp`` in the target's own folder,
flushed and fsync'ed, renamed over the target, and the folder is fsync'ed, so
a reader (or a crash) sees either the old file or the new one, never a torn
one. Temporaries left by a killed process are removed on the next write of
the same target. Log lines are appended with :func:`append_text`. Every
failed write is one line naming the file: a full disk (ENOSPC/EDQUOT) a
:class:`DiskFullError` with the bytes needed, a path that cannot take the file
(a folder in the way, no permission, a read-only file system) an
:class:`OutputPathError` (bad ``--out``, exit 2), anything else (a file-size
limit, an I/O error) a :class:`WriteError`.

Every file branchspec reads from a folder it does not own (a report's
``section.json`` and figures, a shipped model's files) goes through
:func:`read_capped`: only a regular file, at most a given size, and, when a
folder is named, only inside it once links are resolved.

Example:
    >>> import tempfile, json
    >>> from pathlib import Path
    >>> p = atomic_write_json(Path(tempfile.mkdtemp()) / "r.json", {"a": 1})
    >>> json.loads(p.read_text())
    {'a': 1}
"""

from __future__ import annotations

import errno
import json
import os
import stat
import tempfile
from pathlib import Path
from typing import Any

from branchspec.errors import BranchspecError, UsageError

_NO_SPACE = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}
# errors of the path itself: the user's --out (or what it holds) cannot take the file
_BAD_PATH = {errno.EISDIR, errno.ENOTDIR, errno.EACCES, errno.EPERM, errno.EROFS, errno.ENAMETOOLONG, errno.EEXIST,
             errno.ELOOP}


class WriteError(BranchspecError):
    """A result file could not be written (a file-size limit, an I/O error): one line naming it (exit 1)."""


class DiskFullError(WriteError):
    """The disk (or quota) is full: one line naming the folder and the space needed."""


class OutputPathError(WriteError, UsageError):
    """The output path cannot take a file (a folder in the way, no permission, read-only): bad --out, exit 2."""


def safe_stem(stem: str, limit: int | None = 100) -> str:
    """``stem`` as a file name that cannot leave its folder: characters other than ``A-Z a-z 0-9 _ -`` become
    ``_``, cut to ``limit`` characters (None: not cut) (``"cat.3000"`` → ``"cat_3000"``, ``".."`` → ``"__"``);
    ``""`` stays ``""``.

    The one rule for names written from user input (:func:`branchspec.apps.decompose.output_name`), so a
    name given by the user (an eye mark's image) is found again after writing; the report's HTML ids too.
    """
    return "".join(c if (c.isascii() and c.isalnum()) or c in "_-" else "_" for c in stem)[:limit]


def temp_prefix(path: str | os.PathLike) -> str:
    """The prefix of the temporaries :func:`atomic_write_bytes` uses for ``path``."""
    return f".{Path(path).name}."


def clean_stale_temporaries(path: str | os.PathLike) -> int:
    """Remove ``.NAME.*.tmp`` files a killed writer of ``path`` left behind; returns how many."""
    p = Path(path)
    n = 0
    if not p.parent.is_dir():
        return 0
    for t in p.parent.glob(f"{temp_prefix(p)}*.tmp"):
        try:
            t.unlink()
            n += 1
        except OSError:
            pass
    return n


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems refuse fsync on folders; the rename is still atomic
    finally:
        os.close(fd)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_umask()  # read once at import: os.umask can only be read by setting it


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (temp file + fsync + rename + folder fsync); returns ``path``."""
    p = Path(path)
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        _raise_os(exc, p, len(data))
    clean_stale_temporaries(p)
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=temp_prefix(p), suffix=".tmp", dir=p.parent)
        os.fchmod(fd, _FILE_MODE)  # mkstemp makes 0600; give the file what open() would (0666 less the umask)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, p)
        tmp = None
    except OSError as exc:
        _raise_os(exc, p, len(data))
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
    _fsync_dir(p.parent)
    return p


def _raise_os(exc: OSError, path: Path, nbytes: int):
    """The one-line error of a failed write of ``nbytes`` to ``path`` (:class:`WriteError` or a subclass)."""
    if exc.errno in _NO_SPACE:
        raise DiskFullError(f"no space left in {path.parent} to write {path.name} "
                            f"({nbytes / 1e6:.1f} MB needed); free some space and run again") from None
    why = exc.strerror or type(exc).__name__
    if exc.errno in _BAD_PATH:
        raise OutputPathError(f"cannot write {path}: {why}") from None
    if exc.errno == errno.EFBIG:
        why += f" ({nbytes / 1e6:.1f} MB: over the file-size limit, ulimit -f)"
    raise WriteError(f"cannot write {path}: {why}") from None


def append_text(path: str | os.PathLike, text: str) -> Path:
    """Append ``text`` (UTF-8) to the log ``path``, flushed; a failed write is one line naming the file."""
    p = Path(path)
    data = text.encode("utf-8", "backslashreplace")
    try:
        with open(p, "ab") as fh:
            fh.write(data)
            fh.flush()
    except OSError as exc:
        _raise_os(exc, p, len(data))
    return p


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """:func:`atomic_write_bytes` of ``text`` as UTF-8 (a non-UTF-8 file name inside it, held as surrogates,
    backslash-escaped)."""
    return atomic_write_bytes(path, text.encode("utf-8", "backslashreplace"))


def atomic_write_json(path: str | os.PathLike, obj: Any, indent: int | None = 2, **kw) -> Path:
    """:func:`atomic_write_text` of ``json.dumps(obj, indent=indent, **kw)``."""
    return atomic_write_text(path, json.dumps(obj, indent=indent, **kw))


def atomic_write_via(path: str | os.PathLike, write) -> Path:
    """:func:`atomic_write_bytes` of whatever ``write(buffer)`` writes to an in-memory binary buffer
    (``PIL.Image.save``, ``np.save``, ``Figure.savefig`` …): one atomic write for every file format."""
    import io as _bytes_io

    buf = _bytes_io.BytesIO()
    write(buf)
    return atomic_write_bytes(path, buf.getvalue())


def atomic_write_npz(path: str | os.PathLike, arrays: dict, compressed: bool = True) -> Path:
    """:func:`atomic_write_bytes` of ``np.savez_compressed`` (or ``np.savez``) of ``arrays``."""
    import io as _bytes_io

    import numpy as np

    buf = _bytes_io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(buf, **arrays)
    return atomic_write_bytes(path, buf.getvalue())


def probe_writable(folder: str | os.PathLike, nbytes: int = 4096) -> None:
    """Prove ``folder`` takes ``nbytes`` real bytes (an empty file passes on a full disk); raises OSError."""
    fd, tmp = tempfile.mkstemp(prefix=".write-test-", dir=folder)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(b"\0" * nbytes)
            fh.flush()
            os.fsync(fh.fileno())
    finally:
        os.unlink(tmp)


class TooLarge(ValueError):
    """:func:`read_capped` refused a file over its limit; ``size`` is the file's size in bytes."""

    def __init__(self, message: str, size: int):
        super().__init__(message)
        self.size = size


def _reason(exc: OSError) -> str:
    return "missing" if isinstance(exc, FileNotFoundError) else (exc.strerror or type(exc).__name__).lower()


def regular_file(path: str | os.PathLike, limit: int, inside: str | os.PathLike | None = None) -> Path:
    """``path`` resolved, if it is a regular file of at most ``limit`` bytes, else a one-line ``ValueError``
    saying why (:class:`TooLarge` for the size). With ``inside``, the file must lie in that folder once every
    symbolic link is resolved (a link out of it is never followed)."""
    try:
        real = Path(path).resolve(strict=True)
        if inside is not None and not real.is_relative_to(Path(inside).resolve()):
            raise ValueError(f"it leads outside {inside} (links out of the folder are not followed)")
        st = os.stat(real)
    except RuntimeError:  # Python < 3.13 reports a symbolic link loop this way
        raise ValueError("a symbolic link loop") from None
    except OSError as exc:
        raise ValueError(_reason(exc)) from None
    if not stat.S_ISREG(st.st_mode):  # refused before any open: a FIFO blocks, a device may act on open
        raise ValueError("not a regular file")
    if st.st_size > limit:
        raise TooLarge(f"larger than {limit} bytes ({st.st_size})", st.st_size)
    return real


def read_capped(path: str | os.PathLike, limit: int, inside: str | os.PathLike | None = None) -> bytes:
    """The bytes of ``path`` once :func:`regular_file` accepts it; a one-line ``ValueError`` otherwise.

    The file is opened without blocking, checked again on the open file (it may have been replaced since)
    and read no further than ``limit + 1`` bytes (a growing file).
    """
    real = regular_file(path, limit, inside)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NOCTTY", 0)
    try:
        with os.fdopen(os.open(real, flags), "rb") as fh:
            st = os.fstat(fh.fileno())
            if not stat.S_ISREG(st.st_mode):
                raise ValueError("not a regular file")
            data = fh.read(limit + 1)
    except OSError as exc:
        raise ValueError(_reason(exc)) from None
    if len(data) > limit:
        raise TooLarge(f"larger than {limit} bytes (it grew while read)", len(data))
    return data
