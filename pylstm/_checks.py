"""Argument checks shared by the public API: every failure names the argument, the expected
and the actual shape, dtype or value, and raises one of the package's own exceptions.

The rules, the same everywhere:

* An integer argument is a Python ``int`` or a numpy integer. ``bool`` is never an integer
  here, and a float is not one even when it is whole (``7.0``): PyTorch's ``nn.LSTM`` rejects
  ``hidden_size=7.0`` too. A wrong type is a :class:`~pylstm.DTypeError`, a wrong value an
  :class:`~pylstm.LstmValueError`.
* A number argument is a real, finite ``int``/``float`` (or numpy scalar), never a ``bool`` or
  a string.
* A flag is a ``bool`` (or ``numpy.bool_``), nothing else.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any

import numpy as np

from pylstm import _core
from pylstm.errors import DTypeError, LstmValueError, PylstmMemoryError, ShapeError

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def type_name(value: Any) -> str:
    """``int``, ``float 7.0``, ``str '1'``: the type, and the value where it is short."""
    name = type(value).__name__
    if isinstance(value, (bool, numbers.Number, str, np.generic)) and len(repr(value)) <= 40:
        return f"{name} {value!r}"
    return name


def as_array(name: str, value: Any) -> np.ndarray:
    """``value`` as an array (no copy for an array); anything numpy cannot read as one, or
    reads only as an array of Python objects, is a type error naming ``name``."""
    if isinstance(value, np.ndarray):
        return value
    try:
        arr = np.asarray(value)
    except Exception as exc:  # noqa: BLE001 - any conversion failure is a type error here
        raise DTypeError(f"{name}: expected an array, got {type_name(value)}") from exc
    if arr.dtype == object:
        raise DTypeError(f"{name}: expected an array of numbers, got {type_name(value)}")
    return arr


def float_dtype(name: str, value: Any) -> np.dtype:
    """The dtype of ``value`` (an array, or a nested list numpy reads as one), which must be
    float32 or float64."""
    if not isinstance(value, np.ndarray):
        if not (hasattr(value, "__array__") or isinstance(value, (list, tuple))):
            raise DTypeError(f"{name}: expected a numpy array, got {type_name(value)}")
        value = as_array(name, value)
    if value.dtype not in FLOAT_DTYPES:
        raise DTypeError(f"{name}: expected dtype float32 or float64, got {value.dtype}")
    return value.dtype


def array(name: str, value: Any, dtype: np.dtype, shape: Sequence[int | None] | None = None,
          dims: str = "") -> np.ndarray:
    """``value`` as a C-contiguous array of ``dtype`` (copying only if needed), checked against
    ``shape`` (``None`` entries match anything). ``dims`` names the axes for messages."""
    arr = as_array(name, value)
    if arr.dtype != dtype:
        raise DTypeError(f"{name}: expected dtype {dtype} (one dtype for every array of a call), "
                         f"got {arr.dtype}")
    if shape is not None:
        expect_shape(name, arr, shape, dims)
    return contiguous(name, arr)


def _gib(nbytes: int) -> str:
    return f"{nbytes / 2**30:.1f} GiB"


def contiguous(name: str, arr: np.ndarray) -> np.ndarray:
    """``arr`` as a C-contiguous array: itself, or a copy. A copy bigger than the machine's
    memory (a broadcast view of an impossible size, say) is a ``PylstmMemoryError`` before
    anything is allocated, and one the allocator refuses is one too."""
    if arr.flags.c_contiguous:
        return arr
    limit = _core.machine_memory()
    if limit is not None and arr.nbytes > limit:
        raise PylstmMemoryError(f"{name}: a contiguous copy of shape {list(arr.shape)} needs "
                                f"{_gib(arr.nbytes)}, more than this machine's {_gib(limit)} "
                                "of memory and swap")
    try:
        return np.ascontiguousarray(arr)
    except MemoryError as exc:
        raise PylstmMemoryError(f"{name}: a contiguous copy of shape {list(arr.shape)} "
                                f"({_gib(arr.nbytes)}) cannot be allocated") from exc


def expect_shape(name: str, arr: np.ndarray, shape: Sequence[int | None], dims: str = "") -> None:
    """Raise ``ShapeError`` unless ``arr.shape`` matches ``shape``."""
    if arr.shape == shape:  # the common case, a tuple of sizes: one comparison
        return
    if len(arr.shape) == len(shape) and all(e is None or g == e
                                            for g, e in zip(arr.shape, shape, strict=True)):
        return
    want = "[" + ", ".join("*" if s is None else str(s) for s in shape) + "]"
    if dims:
        want += f" ({dims})"
    if arr.ndim != len(shape):
        raise ShapeError(f"{name}: expected {len(shape)} dimensions {want}, "
                         f"got shape {list(arr.shape)}")
    raise ShapeError(f"{name}: expected shape {want}, got {list(arr.shape)}")


def lengths(name: str, value: Any, batch: int, steps: int) -> list[int]:
    """Per-sequence lengths: integers (an integer dtype: floats are refused even when whole)
    in ``1..=steps``, one per batch row."""
    arr = as_array(name, value)
    if arr.dtype.kind not in "iu":
        raise DTypeError(f"{name}: expected integers, got dtype {arr.dtype}")
    if arr.ndim != 1 or arr.shape[0] != batch:
        raise ShapeError(f"{name}: expected shape [{batch}] (one length per batch row), "
                         f"got {list(arr.shape)}")
    bad = np.flatnonzero((arr < 1) | (arr > steps))
    if bad.size:
        i = int(bad[0])
        raise LstmValueError(f"{name}: expected each length in 1..={steps}, got {int(arr[i])} "
                             f"at batch index {i}")
    return [int(v) for v in arr]


def integer(name: str, value: Any, minimum: int | None = None) -> int:
    """An int (or numpy integer; never a bool or a float), at least ``minimum`` if given."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise DTypeError(f"{name}: expected an int, got {type_name(value)}")
    if minimum is not None and value < minimum:
        raise LstmValueError(f"{name}: expected an int >= {minimum}, got {value}")
    return int(value)


def positive_int(name: str, value: Any, allow_zero: bool = False) -> int:
    """An int >= 1 (or >= 0): see :func:`integer`."""
    return integer(name, value, 0 if allow_zero else 1)


def one_of_ints(name: str, value: Any, allowed: Sequence[int]) -> int:
    """An int (see :func:`integer`) among ``allowed``."""
    v = integer(name, value)
    if v not in allowed:
        raise LstmValueError(f"{name}: expected {' or '.join(map(str, allowed))}, got {v}")
    return v


def number(name: str, value: Any) -> float:
    """A real, finite number (an int, a float or a numpy scalar; never a bool or a string)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise DTypeError(f"{name}: expected a number, got {type_name(value)}")
    v = float(value)
    if not np.isfinite(v):
        raise LstmValueError(f"{name}: expected a finite number, got {v}")
    return v


def numbers_list(name: str, value: Any) -> list[float]:
    """A sequence (list, tuple or 1-D array) of real, finite numbers."""
    if isinstance(value, np.ndarray):
        if value.ndim != 1:
            raise ShapeError(f"{name}: expected a 1-D sequence of numbers, got shape "
                             f"{list(value.shape)}")
        value = value.tolist()
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise DTypeError(f"{name}: expected a list of numbers, got {type_name(value)}")
    return [number(f"{name}[{k}]", v) for k, v in enumerate(value)]


def flag(name: str, value: Any) -> bool:
    """A bool (or ``numpy.bool_``)."""
    if not isinstance(value, (bool, np.bool_)):
        raise DTypeError(f"{name}: expected a bool, got {type_name(value)}")
    return bool(value)


def choice(name: str, value: Any, options: Sequence[str]) -> str:
    """One of the strings ``options``."""
    if not isinstance(value, str):
        raise DTypeError(f"{name}: expected a str, one of {', '.join(map(repr, options))}; "
                         f"got {type_name(value)}")
    if value not in options:
        raise LstmValueError(f"{name}: expected {', '.join(map(repr, options))}, got {value!r}")
    return value
