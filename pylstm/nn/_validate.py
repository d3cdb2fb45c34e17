"""Small argument checks shared by the toolkit; every message names the argument."""

from __future__ import annotations

from typing import Any

import numpy as np

from ._errors import DTypeError, LstmValueError, ShapeError

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def as_float_dtype(dtype: Any, name: str = "dtype") -> np.dtype:
    """Normalise ``dtype`` to float32/float64 or raise :class:`DTypeError`."""
    try:
        dt = np.dtype(dtype)
    except TypeError as exc:
        raise DTypeError(f"{name}: expected float32 or float64, got {dtype!r}") from exc
    if dt not in FLOAT_DTYPES:
        raise DTypeError(f"{name}: expected float32 or float64, got {dt}")
    return dt


def check_array(x: Any, name: str) -> np.ndarray:
    """Require a numpy array (no silent conversion of lists of mixed types)."""
    if not isinstance(x, np.ndarray):
        raise DTypeError(f"{name}: expected a numpy.ndarray, got {type(x).__name__}")
    return x


def check_float(x: Any, name: str, dtype: np.dtype | None = None) -> np.ndarray:
    """Require a float array, of exactly ``dtype`` when given."""
    x = check_array(x, name)
    if dtype is not None:
        if x.dtype != dtype:
            raise DTypeError(f"{name}: expected dtype {dtype}, got {x.dtype}")
    elif x.dtype not in FLOAT_DTYPES:
        raise DTypeError(f"{name}: expected dtype float32 or float64, got {x.dtype}")
    return x


def check_int(x: Any, name: str) -> np.ndarray:
    """Require an integer array."""
    x = check_array(x, name)
    if not np.issubdtype(x.dtype, np.integer):
        raise DTypeError(f"{name}: expected an integer dtype, got {x.dtype}")
    return x


def check_ndim(x: np.ndarray, name: str, ndims: tuple[int, ...]) -> None:
    """Require ``x.ndim`` in ``ndims``."""
    if x.ndim not in ndims:
        want = " or ".join(str(n) for n in ndims)
        raise ShapeError(f"{name}: expected {want} dimensions, got shape {x.shape}")


def check_shape(x: np.ndarray, name: str, shape: tuple[int, ...]) -> None:
    """Require ``x.shape == shape``."""
    if x.shape != tuple(shape):
        raise ShapeError(f"{name}: expected shape {tuple(shape)}, got {x.shape}")


def check_mask(mask: Any, name: str, shape: tuple[int, ...]) -> np.ndarray:
    """Require a boolean (or 0/1 integer) mask of exactly ``shape``; return it as bool."""
    mask = check_array(mask, name)
    if mask.dtype != np.bool_:
        if not np.issubdtype(mask.dtype, np.integer):
            raise DTypeError(f"{name}: expected a bool (or 0/1 integer) mask, got {mask.dtype}")
        if mask.size and (mask.min() < 0 or mask.max() > 1):
            raise LstmValueError(f"{name}: integer mask must hold only 0 and 1")
        mask = mask.astype(bool)
    if mask.shape != tuple(shape):
        raise ShapeError(f"{name}: expected shape {tuple(shape)}, got {mask.shape}")
    return mask


def positive_int(value: Any, name: str) -> int:
    """Require a positive Python/numpy integer (not bool)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name}: expected a positive int, got {value!r}")
    if value <= 0:
        raise LstmValueError(f"{name}: expected a positive int, got {value}")
    return int(value)


def nonneg_float(value: Any, name: str) -> float:
    """Require a finite float >= 0."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise TypeError(f"{name}: expected a number, got {value!r}")
    v = float(value)
    if not np.isfinite(v) or v < 0:
        raise LstmValueError(f"{name}: expected a finite number >= 0, got {value}")
    return v


def make_rng(seed: int | np.random.Generator | None) -> np.random.Generator:
    """A per-layer generator; never the global numpy RNG."""
    if isinstance(seed, np.random.Generator):
        return seed
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer))):
        raise TypeError(f"seed: expected an int, a numpy.random.Generator or None, got {seed!r}")
    return np.random.default_rng(seed)
