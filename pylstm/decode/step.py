"""Calling the user's step function and checking what it returns, and the search arguments."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from pylstm.errors import DTypeError, LstmValueError, ShapeError

__all__ = ["StepFn", "StepCaller", "check_int", "check_alpha"]

StepFn = Callable[[np.ndarray, Any], tuple]
"""``step(tokens [N] int64, state) -> (log_probs [N, V], new_state[, aux [N, ...]])``."""

# Log-softmax computed as log(softmax) in float32 can come out a few ulps above 0; anything
# larger is not a log-probability (e.g. raw logits), which the search cannot rank or stop on.
POSITIVE_TOLERANCE = 1e-4


def check_int(name: str, value: Any, minimum: int) -> int:
    """``value`` as an int, which must be an integer (not a bool) of at least ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise LstmValueError(f"{name}: expected an integer >= {minimum}, got {value!r}")
    if value < minimum:
        raise LstmValueError(f"{name}: expected an integer >= {minimum}, got {value}")
    return int(value)


def check_caps(max_len: Any, batch_size: int, min_len: int) -> np.ndarray:
    """``max_len`` as one step cap per row ``[batch_size]`` int64: an integer for every row,
    or a sequence with one integer >= max(1, ``min_len``) per row (a row's own cap, so a
    sentence decodes alike whatever else shares its batch)."""
    if isinstance(max_len, (list, tuple, np.ndarray)):
        caps = [check_int("max_len", v, 1) for v in np.asarray(max_len, dtype=object).ravel()]
        if np.ndim(max_len) != 1 or len(caps) != batch_size:
            raise LstmValueError(f"max_len: expected an integer or one per row "
                                 f"({batch_size}), got shape {list(np.shape(max_len))}")
    else:
        caps = [check_int("max_len", max_len, 1)] * batch_size
    if min_len > min(caps):
        raise LstmValueError(f"min_len: expected at most max_len={min(caps)}, got {min_len}")
    return np.asarray(caps, dtype=np.int64)


def check_alpha(value: Any) -> float:
    """The length penalty exponent: a finite real number >= 0."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise LstmValueError(f"length_penalty: expected a number >= 0, got {value!r}")
    if not math.isfinite(value) or value < 0:
        raise LstmValueError(f"length_penalty: expected a finite number >= 0, got {value}")
    return float(value)


class StepCaller:
    """Calls ``step`` with ``rows`` rows per call and checks its outputs.

    The vocabulary size is read from the first call and must stay the same; ``bos_id`` and
    ``eos_id`` are checked against it. Only the rows still being searched (``live``) are checked
    for NaN, +inf and positive values: finished or padding rows may hold anything finite."""

    def __init__(self, step: StepFn, rows: int, bos_id: int, eos_id: int) -> None:
        if not callable(step):
            raise DTypeError(f"step: expected a callable, got {type(step).__name__}")
        self.step = step
        self.rows = rows
        self.bos_id = bos_id
        self.eos_id = eos_id
        self.vocab: int | None = None
        self.has_aux: bool | None = None
        self.aux_shape: tuple[int, ...] | None = None
        self.calls = 0

    def __call__(self, tokens: np.ndarray, state: Any,
                 live: np.ndarray) -> tuple[np.ndarray, Any, np.ndarray | None]:
        """``(log_probs [rows, V], new_state, aux or None)``; log_probs is the step's own array
        (not copied), aux a copy (steps may reuse their buffers)."""
        at = f"at step {self.calls}"
        out = self.step(tokens, state)
        self.calls += 1
        if not isinstance(out, tuple) or len(out) not in (2, 3):
            got = f"a tuple of {len(out)}" if isinstance(out, tuple) else type(out).__name__
            raise LstmValueError(f"step: expected it to return (log_probs, state) or "
                                 f"(log_probs, state, aux), got {got} {at}")
        has_aux = len(out) == 3
        if self.has_aux is None:
            self.has_aux = has_aux
        elif has_aux != self.has_aux:
            raise LstmValueError(f"step: returned {'3' if has_aux else '2'} values {at} but "
                                 f"{'3' if self.has_aux else '2'} before; aux must be returned "
                                 f"at every step or never")
        log_probs = self._log_probs(out[0], live, at)
        aux = self._aux(out[2], at) if has_aux else None
        return log_probs, out[1], aux

    def _log_probs(self, value: Any, live: np.ndarray, at: str) -> np.ndarray:
        arr = value if isinstance(value, np.ndarray) else np.asarray(value)
        if arr.dtype.kind != "f":
            raise DTypeError(f"step: log_probs: expected a float array, got dtype {arr.dtype} {at}")
        if arr.ndim != 2 or arr.shape[0] != self.rows:
            want = f"[{self.rows}, {self.vocab if self.vocab is not None else 'V'}]"
            raise ShapeError(f"step: log_probs: expected shape {want} (one row per hypothesis), "
                             f"got {list(arr.shape)} {at}")
        if self.vocab is None:
            if arr.shape[1] < 1:
                raise ShapeError(f"step: log_probs: expected a vocabulary of at least 1 token, "
                                 f"got shape {list(arr.shape)} {at}")
            self.vocab = arr.shape[1]
            for name, token in (("bos_id", self.bos_id), ("eos_id", self.eos_id)):
                if token >= self.vocab:
                    raise LstmValueError(f"{name}: expected a token id below the vocabulary size "
                                         f"{self.vocab} (log_probs.shape[1]), got {token}")
        elif arr.shape[1] != self.vocab:
            raise ShapeError(f"step: log_probs: expected {self.vocab} columns (the vocabulary "
                             f"size of the first step), got shape {list(arr.shape)} {at}")
        row_max = arr.max(axis=1)  # NaN where a row has NaN: one pass checks both
        bad = live & (np.isnan(row_max) | (row_max > POSITIVE_TOLERANCE))
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            worst = arr[row][np.isnan(arr[row]) | (arr[row] > POSITIVE_TOLERANCE)][0]
            raise LstmValueError(f"step: log_probs: expected log-probabilities (<= 0, -inf "
                                 f"allowed; e.g. a log_softmax), got {worst} in row {row} {at}")
        return arr

    def _aux(self, value: Any, at: str) -> np.ndarray:
        arr = np.array(value, copy=True)
        if arr.ndim == 0 or arr.shape[0] != self.rows:
            raise ShapeError(f"step: aux: expected a leading axis of {self.rows} rows (one per "
                             f"hypothesis), got shape {list(arr.shape)} {at}")
        if self.aux_shape is None:
            self.aux_shape = arr.shape
        elif arr.shape != self.aux_shape:
            raise ShapeError(f"step: aux: expected shape {list(self.aux_shape)} (the shape of the "
                             f"first step, so the steps stack), got {list(arr.shape)} {at}")
        return arr
