"""CIFAR-10 in its python format, read without running pickled code (§6 data).

The folder ``cifar-10-batches-py`` holds ``data_batch_1`` … ``data_batch_5``,
``test_batch`` and ``batches.meta``: Python-2 pickles (protocol 2) of dicts
whose ``data`` is a uint8 numpy array ``(N, 3072)`` (1024 red, 1024 green,
1024 blue values, row-major) and ``labels`` a list of ints. A pickle can
execute arbitrary code on load, so the files go through
:class:`RestrictedUnpickler`, which admits only the three globals numpy needs
to rebuild an array (``numpy.core.multiarray._reconstruct``,
``numpy.ndarray``, ``numpy.dtype``) and refuses everything else in one line.

Example:
    >>> import io, pickle
    >>> bad = pickle.dumps(__import__("os").getcwd, protocol=2)
    >>> try:
    ...     restricted_loads(bad, "x")
    ... except Exception as e:
    ...     print(type(e).__name__)
    DataError
"""

from __future__ import annotations

import io
import os
import pickle
import struct
from pathlib import Path

import numpy as np

from branchspec.errors import BranchspecError, DataError

TRAIN_FILES = [f"data_batch_{i}" for i in range(1, 6)]
TEST_FILE = "test_batch"
META_FILE = "batches.meta"

# (module, name) pairs a CIFAR batch may name: numpy array reconstruction only.
_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
}


class _NdarrayType:
    """Stands for ``numpy.ndarray`` inside a pickle: usable only as ``_reconstruct``'s first
    argument, never callable, so ``ndarray((300000, 3072), 'u1')`` (5.6 GB from a 600 KB
    file, issue 13) cannot be built."""


_NDARRAY = _NdarrayType()


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler whose ``find_class`` admits only numpy array *reconstruction*.

    Plain containers (dict, list, bytes, str, int) need no globals; anything
    else a pickle tries to import (``os.system``, ``builtins.eval``, …) raises
    :class:`~branchspec.errors.BranchspecError`. ``numpy.ndarray`` is a token
    that cannot be called; ``_reconstruct`` only builds an empty array of a
    non-object dtype whose contents then come from the file's own bytes
    (numpy's ``__setstate__`` checks the length), so an array is never larger
    than the file (``limit`` bytes).
    """

    def __init__(self, fh, limit: int, **kw):
        super().__init__(fh, **kw)
        self.limit = limit

    def find_class(self, module: str, name: str):
        if (module, name) not in _ALLOWED:
            raise DataError(f"refusing to unpickle {module}.{name}: a CIFAR-10 batch only contains numpy arrays")
        if name == "_reconstruct":
            return self._reconstruct
        if name == "ndarray":
            return _NDARRAY
        return _dtype

    def _reconstruct(self, subtype, shape, typecode):
        try:
            from numpy._core.multiarray import _reconstruct
        except ImportError:  # numpy < 2
            from numpy.core.multiarray import _reconstruct
        if subtype is not _NDARRAY:
            raise DataError("refusing to unpickle an array of a type other than numpy.ndarray")
        dims = tuple(shape) if isinstance(shape, (tuple, list)) else (shape,)
        if not all(isinstance(n, int) and 0 <= n for n in dims) or int(np.prod(dims, dtype=object)) > self.limit:
            raise DataError(f"refusing to unpickle an array of shape {dims!r:.60}: larger than the file")
        return _reconstruct(np.ndarray, dims, typecode)


def _dtype(spec, align=False, copy=False):
    """``numpy.dtype`` for plain numeric/bytes types only (object arrays would unpickle arbitrary objects)."""
    if not isinstance(spec, (str, bytes)):
        raise DataError(f"refusing to unpickle dtype {spec!r:.40}")
    dt = np.dtype(spec.decode("latin1") if isinstance(spec, bytes) else spec)
    if dt.hasobject or dt.itemsize > 64:
        raise DataError(f"refusing to unpickle dtype {dt}: a CIFAR-10 batch holds plain numbers")
    return dt


def restricted_loads(blob: bytes, what: str):
    """Unpickle ``blob`` (a CIFAR file's bytes) with :class:`RestrictedUnpickler`.

    ``what`` names the source in error messages. Keys stay ``bytes`` as in the
    original Python-2 files.
    """
    try:
        return RestrictedUnpickler(io.BytesIO(blob), limit=len(blob), encoding="bytes").load()
    except BranchspecError as exc:
        raise DataError(f"{what}: {exc}") from None
    except Exception as exc:  # truncated / not a pickle: EOFError, UnpicklingError, ValueError, ...
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataError(f"{what} is truncated or not a CIFAR-10 pickle ({msg})") from None


def _get(d: dict, key: str, what: str):
    for k in (key.encode(), key):
        if k in d:
            return d[k]
    raise DataError(f"{what} has no {key!r} entry; not a CIFAR-10 batch")


def read_batch(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """One batch file -> ``(images uint8 (N, 32, 32, 3), labels int64 (N,))``."""
    path = Path(path)
    try:
        blob = path.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read CIFAR-10 file {path}: {exc.strerror or exc}") from None
    d = restricted_loads(blob, str(path))
    if not isinstance(d, dict):
        raise DataError(f"{path} does not hold a dict; not a CIFAR-10 batch")
    data = _get(d, "data", str(path))
    labels = _get(d, "labels", str(path))
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        shape = getattr(data, "shape", None)
        raise DataError(f"{path}: 'data' must be a uint8 array (N, 3072), got {type(data).__name__} {shape}")
    labels = _int_labels(labels, path)
    if labels.shape != (data.shape[0],):
        raise DataError(f"{path}: {data.shape[0]} images but {labels.size} labels")
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise DataError(f"{path}: labels must lie in 0..9")
    images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)  # (N, 32, 32, 3)
    return np.ascontiguousarray(images), labels


def _int_labels(labels, path: Path) -> np.ndarray:
    """Labels as int64, refusing floats (truncated before), bools and values beyond int64."""
    if isinstance(labels, np.ndarray):
        ok = labels.ndim == 1 and np.issubdtype(labels.dtype, np.integer)
    else:
        ok = isinstance(labels, list) and all(type(v) is int and -(2 ** 63) <= v < 2 ** 63 for v in labels)
    if not ok:
        raise DataError(f"{path}: 'labels' is not a list of integers")
    return np.asarray(labels, dtype=np.int64)


def read_class_names(root: str | os.PathLike) -> list[str]:
    """The 10 class names from ``batches.meta``."""
    path = Path(root) / META_FILE
    if not path.is_file():
        raise DataError(f"CIFAR-10 folder {root}: missing {META_FILE}")
    try:
        blob = path.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read CIFAR-10 file {path}: {exc.strerror or exc}") from None
    d = restricted_loads(blob, str(path))
    names = _get(d, "label_names", str(path)) if isinstance(d, dict) else None
    if not isinstance(names, list) or len(names) != 10:
        raise DataError(f"{path}: 'label_names' must be a list of 10 names")
    try:
        return [n.decode("utf-8") if isinstance(n, bytes) else str(n) for n in names]
    except UnicodeDecodeError:
        raise DataError(f"{path}: a class name in 'label_names' is not UTF-8 text") from None


def load_cifar10(root: str | os.PathLike, train: bool = True) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Load the training (data_batch_1..5) or test (test_batch) split of a CIFAR-10 folder.

    Returns ``(images uint8 (N, 32, 32, 3), labels int64 (N,), class_names)``.
    A missing, wrong or truncated folder raises a one-line
    :class:`~branchspec.errors.BranchspecError`.

    Example (needs the real folder):
        >>> x, y, names = load_cifar10("cifar-10-batches-py", train=False)  # doctest: +SKIP
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"CIFAR-10 folder not found: {root}")
    files = TRAIN_FILES if train else [TEST_FILE]
    missing = [f for f in files + [META_FILE] if not (root / f).is_file()]
    if missing:
        raise DataError(
            f"CIFAR-10 folder {root}: missing {', '.join(missing)} "
            "(expected data_batch_1..5, test_batch, batches.meta of cifar-10-batches-py)"
        )
    names = read_class_names(root)
    parts = [read_batch(root / f) for f in files]
    images = np.concatenate([p[0] for p in parts])  # (N, 32, 32, 3)
    labels = np.concatenate([p[1] for p in parts])  # (N,)
    if not len(labels):  # an empty split would end in a division by zero or a non-finite loss far later
        raise DataError(f"CIFAR-10 folder {root}: {', '.join(files)} hold(s) no images (the "
                        f"{'training' if train else 'test'} split is empty)")
    return images, labels, names


def write_batch(path: str | os.PathLike, images: np.ndarray, labels, meta_names: list[str] | None = None) -> None:
    """Write ``images (N, 32, 32, 3) uint8`` in the exact CIFAR-10 batch format (protocol 2, bytes keys).

    Used by the tests to build tiny folders; ``meta_names`` writes ``batches.meta`` instead.
    """
    if meta_names is not None:
        doc = {b"num_cases_per_batch": 10000, b"label_names": [n.encode() for n in meta_names], b"num_vis": 3072}
    else:
        data = np.ascontiguousarray(np.asarray(images, np.uint8).transpose(0, 3, 1, 2).reshape(len(images), 3072))
        doc = {b"batch_label": b"generated", b"labels": [int(v) for v in labels], b"data": data}
    buf = io.BytesIO()
    _Py2Pickler(buf, protocol=2).dump(doc)
    Path(path).write_bytes(buf.getvalue())


class _Py2Pickler(pickle._Pickler):
    """Protocol-2 pickler writing ``bytes`` as Python-2 ``str`` (SHORT_BINSTRING / BINSTRING).

    That is how the original Python-2 CIFAR files store keys and the array
    data; Python 3's own protocol 2 would instead call ``_codecs.encode``.
    """

    dispatch = pickle._Pickler.dispatch.copy()

    def _save_py2_str(self, obj: bytes) -> None:
        n = len(obj)
        if n < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([n]) + obj)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", n) + obj)
        self.memoize(obj)

    dispatch[bytes] = _save_py2_str
