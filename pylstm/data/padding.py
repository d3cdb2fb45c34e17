"""Padding ragged id sequences into the rectangular arrays the engine and ``nn`` take."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from pylstm.errors import DTypeError, LstmValueError

from ._checks import as_id_sequences, as_lengths, check_bool, check_int
from .specials import BOS_ID, EOS_ID


@dataclass(frozen=True, eq=False)
class Padded:
    """A padded batch.

    Attributes:
        ids: ``[B, T]`` token ids (``[T, B]`` when ``time_major``), ``pad_id`` after each end.
        lengths: ``[B]`` int64, the real length of each row (bos/eos included when added).
        mask: bool, shaped like ``ids``: True at real tokens, False at padding.
        time_major: whether ``ids`` and ``mask`` are ``[T, B]``.
    """

    ids: np.ndarray
    lengths: np.ndarray
    mask: np.ndarray
    time_major: bool

    @property
    def batch_size(self) -> int:
        """Number of sequences ``B``."""
        return int(self.lengths.shape[0])

    @property
    def max_len(self) -> int:
        """Padded length ``T``."""
        return int(self.ids.shape[0] if self.time_major else self.ids.shape[1])


def lengths_to_mask(
    lengths: Sequence[int] | np.ndarray, max_len: int | None = None, *, time_major: bool = False
) -> np.ndarray:
    """Bool mask ``[B, max_len]`` (``[max_len, B]`` when ``time_major``), True where
    ``t < lengths[b]``. ``max_len`` defaults to ``max(lengths)``."""
    lens = as_lengths(lengths, "lengths")
    time_major = check_bool(time_major, "time_major")
    longest = int(lens.max()) if lens.size else 0
    if max_len is None:
        max_len = longest
    else:
        max_len = check_int(max_len, "max_len", minimum=0)
        if max_len < longest:
            raise LstmValueError(
                f"max_len: expected at least the longest length {longest}, got {max_len}"
            )
    mask = np.arange(max_len)[None, :] < lens[:, None]
    return np.ascontiguousarray(mask.T) if time_major else mask


def pad(
    sequences: Sequence[Sequence[int]] | np.ndarray,
    pad_id: int,
    *,
    add_bos: bool = False,
    add_eos: bool = False,
    bos_id: int = BOS_ID,
    eos_id: int = EOS_ID,
    time_major: bool = False,
    dtype: Any = np.int64,
) -> Padded:
    """Pad ragged id sequences to one rectangle.

    Args:
        sequences: ``B >= 1`` sequences of non-negative int ids (lists, tuples, 1-D integer
            arrays, or a 2-D integer array); empty sequences are allowed.
        pad_id: id written after each sequence's end.
        add_bos / add_eos: prepend ``bos_id`` / append ``eos_id`` to every sequence (counted in
            ``lengths``); the defaults are the fixed special ids of :mod:`pylstm.data.specials`.
        time_major: return ``ids`` and ``mask`` as ``[T, B]`` instead of ``[B, T]``.
        dtype: a signed integer dtype for ``ids`` (int64 default, int32 to halve the memory).

    Returns:
        :class:`Padded` with ``ids``, ``lengths`` (int64) and ``mask`` (bool, shaped like ids).
    """
    seqs = as_id_sequences(sequences, "sequences")
    if not seqs:
        raise LstmValueError("sequences: expected at least one sequence, got 0")
    pad_id = check_int(pad_id, "pad_id", minimum=0)
    add_bos = check_bool(add_bos, "add_bos")
    add_eos = check_bool(add_eos, "add_eos")
    bos_id = check_int(bos_id, "bos_id", minimum=0)
    eos_id = check_int(eos_id, "eos_id", minimum=0)
    time_major = check_bool(time_major, "time_major")
    try:
        dt = np.dtype(dtype)
    except TypeError as exc:
        raise DTypeError(f"dtype: expected a signed integer dtype, got {dtype!r}") from exc
    if not np.issubdtype(dt, np.signedinteger):
        raise DTypeError(f"dtype: expected a signed integer dtype (int64, int32), got {dt}")

    parts: list[np.ndarray] = []
    bos = np.array([bos_id], dtype=np.int64)
    eos = np.array([eos_id], dtype=np.int64)
    for seq in seqs:
        if add_bos:
            parts.append(bos)
        parts.append(seq)
        if add_eos:
            parts.append(eos)
    flat = np.concatenate(parts) if parts else np.zeros(0, np.int64)
    largest = max(int(flat.max()) if flat.size else 0, pad_id)
    if largest > np.iinfo(dt).max:
        raise LstmValueError(f"dtype: ids up to {largest} do not fit {dt}; use int64")

    lengths = np.fromiter(
        (len(s) + add_bos + add_eos for s in seqs), dtype=np.int64, count=len(seqs)
    )
    mask = lengths_to_mask(lengths)
    ids = np.full(mask.shape, pad_id, dtype=dt)
    # Row-major True positions of a prefix mask are exactly the concatenated sequences' order.
    ids[mask] = flat
    if time_major:
        ids = np.ascontiguousarray(ids.T)
        mask = np.ascontiguousarray(mask.T)
    return Padded(ids=ids, lengths=lengths, mask=mask, time_major=time_major)


__all__ = ["Padded", "lengths_to_mask", "pad"]
