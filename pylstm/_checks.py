"""Argument checks shared by the public API: every failure names the argument, the expected
and the actual shape, dtype or value."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from pylstm.errors import DTypeError, LstmValueError, ShapeError

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def float_dtype(name: str, value: Any) -> np.dtype:
    """The dtype of ``value`` (an array), which must be float32 or float64."""
    if not isinstance(value, np.ndarray):
        if hasattr(value, "__array__") or isinstance(value, (list, tuple)):
            value = np.asarray(value)
        else:
            raise DTypeError(f"{name}: expected a numpy array, got {type(value).__name__}")
    if value.dtype not in FLOAT_DTYPES:
        raise DTypeError(f"{name}: expected dtype float32 or float64, got {value.dtype}")
    return value.dtype


def array(name: str, value: Any, dtype: np.dtype, shape: Sequence[int | None] | None = None,
          dims: str = "") -> np.ndarray:
    """``value`` as a C-contiguous array of ``dtype`` (copying only if needed), checked against
    ``shape`` (``None`` entries match anything). ``dims`` names the axes for messages."""
    if isinstance(value, np.ndarray):
        arr = value
    else:
        try:
            arr = np.asarray(value)
        except Exception as exc:  # noqa: BLE001 - any conversion failure is a type error here
            raise DTypeError(f"{name}: expected an array, got {type(value).__name__}") from exc
    if arr.dtype != dtype:
        if arr.dtype.kind in "fiu" and arr.dtype not in FLOAT_DTYPES and arr.dtype.kind != "f":
            raise DTypeError(f"{name}: expected dtype {dtype}, got {arr.dtype}")
        raise DTypeError(f"{name}: expected dtype {dtype} (the dtype of X), got {arr.dtype}")
    if shape is not None:
        expect_shape(name, arr, shape, dims)
    return np.ascontiguousarray(arr)


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
    """Per-sequence lengths: integers in ``1..=steps``, one per batch row."""
    arr = np.asarray(value)
    if arr.dtype.kind not in "iu":
        if arr.dtype.kind == "f" and arr.size and np.all(np.mod(arr, 1) == 0):
            arr = arr.astype(np.int64)
        else:
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


def positive_int(name: str, value: Any, allow_zero: bool = False) -> int:
    """An int >= 1 (or >= 0)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name}: expected an int, got {type(value).__name__}")
    low = 0 if allow_zero else 1
    if value < low:
        raise LstmValueError(f"{name}: expected an int >= {low}, got {value}")
    return int(value)
