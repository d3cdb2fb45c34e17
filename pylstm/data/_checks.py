"""Argument checks for :mod:`pylstm.data`; every message names the argument, the expected and
the actual value."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from pylstm.errors import DTypeError, LstmValueError, ShapeError


def check_int(value: Any, name: str, *, minimum: int | None = None) -> int:
    """Return ``value`` as a Python int; bools and floats are rejected, not rounded."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise DTypeError(f"{name}: expected an int, got {type(value).__name__} {value!r}")
    value = int(value)
    if minimum is not None and value < minimum:
        raise LstmValueError(f"{name}: expected an int >= {minimum}, got {value}")
    return value


def check_bool(value: Any, name: str) -> bool:
    """Require a real bool (``0``/``"no"`` are mistakes, not flags)."""
    if not isinstance(value, (bool, np.bool_)):
        raise DTypeError(f"{name}: expected a bool, got {type(value).__name__} {value!r}")
    return bool(value)


def check_text(value: Any, name: str) -> str:
    """Require a str."""
    if not isinstance(value, str):
        raise DTypeError(f"{name}: expected a str, got {type(value).__name__}")
    return value


def check_texts(values: Any, name: str) -> list[str]:
    """Require an iterable of str that is not itself a str; returned as a list."""
    if isinstance(values, (str, bytes)):
        raise DTypeError(
            f"{name}: expected an iterable of str, got a single {type(values).__name__}"
        )
    try:
        items = list(values)
    except TypeError as exc:
        raise DTypeError(
            f"{name}: expected an iterable of str, got {type(values).__name__}"
        ) from exc
    for i, item in enumerate(items):
        if not isinstance(item, str):
            raise DTypeError(f"{name}[{i}]: expected a str, got {type(item).__name__}")
    return items


def _is_int(v: Any) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def as_id_sequence(seq: Any, name: str, what: str = "id") -> np.ndarray:
    """One sequence of token ids (list/tuple of ints or a 1-D integer array) as int64.

    ``what`` names one element in messages (``"id"``, ``"length"``).
    """
    if isinstance(seq, np.ndarray):
        if seq.ndim != 1:
            raise ShapeError(f"{name}: expected a 1-D sequence of {what}s, got shape {seq.shape}")
        if not np.issubdtype(seq.dtype, np.integer):
            raise DTypeError(f"{name}: expected integer {what}s, got dtype {seq.dtype}")
        if seq.dtype == np.uint64 and seq.size and seq.max() > np.iinfo(np.int64).max:
            raise LstmValueError(f"{name}: expected {what}s that fit int64, got {seq.max()}")
        arr = seq.astype(np.int64, copy=False)
    elif isinstance(seq, Sequence) and not isinstance(seq, (str, bytes)):
        for j, v in enumerate(seq):
            if not _is_int(v):
                raise DTypeError(
                    f"{name}[{j}]: expected an int {what}, got {type(v).__name__} {v!r}"
                )
        try:
            arr = np.array(seq, dtype=np.int64).reshape(len(seq))
        except OverflowError as exc:
            raise LstmValueError(f"{name}: expected {what}s that fit int64") from exc
    else:
        raise DTypeError(
            f"{name}: expected a sequence of int {what}s (list, tuple or 1-D integer array), "
            f"got {type(seq).__name__}"
        )
    if arr.size and arr.min() < 0:
        j = int(np.argmax(arr < 0))
        raise LstmValueError(f"{name}[{j}]: expected {what} >= 0, got {int(arr[j])}")
    return arr


def as_id_sequences(sequences: Any, name: str) -> list[np.ndarray]:
    """A batch of id sequences, ragged allowed: a sequence of sequences or a 2-D integer array."""
    if isinstance(sequences, np.ndarray):
        if sequences.ndim != 2:
            raise ShapeError(
                f"{name}: expected a 2-D array or a sequence of id sequences, "
                f"got shape {sequences.shape}"
            )
        return [as_id_sequence(row, f"{name}[{i}]") for i, row in enumerate(sequences)]
    if not isinstance(sequences, Sequence) or isinstance(sequences, (str, bytes)):
        raise DTypeError(
            f"{name}: expected a sequence of id sequences, got {type(sequences).__name__}"
        )
    return [as_id_sequence(seq, f"{name}[{i}]") for i, seq in enumerate(sequences)]


def as_lengths(lengths: Any, name: str) -> np.ndarray:
    """Sequence lengths: a 1-D sequence/array of non-negative ints, as int64."""
    return as_id_sequence(lengths, name, "length")


__all__ = [
    "as_id_sequence",
    "as_id_sequences",
    "as_lengths",
    "check_bool",
    "check_int",
    "check_text",
    "check_texts",
]
