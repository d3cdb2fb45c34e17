"""Batches of dataset indices: by sentence count, or by padded token count with length bucketing.

Every function is seeded and epoch-deterministic: the batches depend only on the arguments
(``np.random.default_rng([seed, epoch])``), never on global random state or on what ran before,
so a training run resumed at epoch ``e`` sees exactly the batches it would have seen.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np

from pylstm.errors import LstmValueError

from ._checks import as_lengths, check_bool, check_int


class OverlongSequenceWarning(UserWarning):
    """A sequence alone costs more than ``max_tokens``; it was given a batch of its own."""


def _epoch_rng(seed: int, epoch: int) -> np.random.Generator:
    seed = check_int(seed, "seed", minimum=0)
    epoch = check_int(epoch, "epoch", minimum=0)
    return np.random.default_rng([seed, epoch])


def batches_by_count(
    n: int, batch_size: int, *, shuffle: bool, seed: int = 0, epoch: int = 0
) -> list[np.ndarray]:
    """Split ``range(n)`` into batches of ``batch_size`` indices (the last may be smaller).

    With ``shuffle`` the indices are permuted by ``default_rng([seed, epoch])`` first.
    Returns int64 index arrays covering every index exactly once.
    """
    n = check_int(n, "n", minimum=1)
    batch_size = check_int(batch_size, "batch_size", minimum=1)
    shuffle = check_bool(shuffle, "shuffle")
    rng = _epoch_rng(seed, epoch)
    order = rng.permutation(n) if shuffle else np.arange(n, dtype=np.int64)
    return [order[i : i + batch_size].astype(np.int64) for i in range(0, n, batch_size)]


def _greedy(
    order: np.ndarray, cost_len: np.ndarray, max_tokens: int, max_sentences: int | None
) -> list[np.ndarray]:
    """Cut ``order`` into consecutive batches whose ``count * max length`` fits ``max_tokens``."""
    batches: list[np.ndarray] = []
    start, longest = 0, 0
    lens = cost_len[order].tolist()
    for pos, length in enumerate(lens):
        count = pos - start
        new_longest = max(longest, length)
        full = max_sentences is not None and count >= max_sentences
        if count and (full or (count + 1) * new_longest > max_tokens):
            batches.append(order[start:pos])
            start, new_longest = pos, length
        longest = new_longest
    batches.append(order[start:])
    return batches


def batches_by_tokens(
    lengths: Sequence[int] | np.ndarray,
    max_tokens: int,
    *,
    max_sentences: int | None = None,
    shuffle: bool,
    seed: int = 0,
    epoch: int = 0,
    bucket: bool = True,
    pool_size: int | None = None,
) -> list[np.ndarray]:
    """Batches of indices whose padded cost ``len(batch) * max(lengths[batch])`` is at most
    ``max_tokens``.

    Args:
        lengths: the length each example will be padded to (count bos/eos if ``pad`` adds them);
            an empty example costs one token.
        max_tokens: the padded-token budget of one batch (> 0). An example longer than it gets
            a batch of its own, with an :class:`OverlongSequenceWarning`; none is dropped.
        max_sentences: optional cap on examples per batch.
        shuffle: randomise with ``default_rng([seed, epoch])``: equal lengths are ordered at
            random before sorting, and the batch order is shuffled. Without it the result is
            sorted by length (with ``bucket``) or in index order, and independent of seed/epoch.
        bucket: sort by length (within each pool) before cutting batches, so little padding is
            wasted; without it batches are cut from the (shuffled) index order.
        pool_size: sort within consecutive pools of this many (shuffled) examples instead of
            globally: batch compositions then vary more between epochs, at some padding cost.

    Returns:
        int64 index arrays covering every index exactly once.
    """
    lens = as_lengths(lengths, "lengths")
    if lens.size == 0:
        raise LstmValueError("lengths: expected at least one length, got 0")
    max_tokens = check_int(max_tokens, "max_tokens", minimum=1)
    if max_sentences is not None:
        max_sentences = check_int(max_sentences, "max_sentences", minimum=1)
    shuffle = check_bool(shuffle, "shuffle")
    bucket = check_bool(bucket, "bucket")
    if pool_size is not None:
        pool_size = check_int(pool_size, "pool_size", minimum=1)
    rng = _epoch_rng(seed, epoch)

    cost_len = np.maximum(lens, 1)
    n = lens.size
    order = rng.permutation(n) if shuffle else np.arange(n, dtype=np.int64)
    pool = n if pool_size is None else pool_size
    batches: list[np.ndarray] = []
    for start in range(0, n, pool):
        chunk = order[start : start + pool]
        if bucket:
            # Stable: equal lengths keep their (shuffled) order, so ties differ between epochs.
            chunk = chunk[np.argsort(cost_len[chunk], kind="stable")]
        batches.extend(_greedy(chunk, cost_len, max_tokens, max_sentences))
    if shuffle:
        batches = [batches[i] for i in rng.permutation(len(batches))]

    overlong = cost_len > max_tokens
    if overlong.any():
        warnings.warn(
            f"batches_by_tokens: {int(overlong.sum())} sequence(s) longer than "
            f"max_tokens={max_tokens} (the longest {int(cost_len.max())}) each got a batch "
            "of its own",
            OverlongSequenceWarning,
            stacklevel=2,
        )
    return [b.astype(np.int64, copy=False) for b in batches]


def padded_cost(lengths: Sequence[int] | np.ndarray, batches: Sequence[np.ndarray]) -> int:
    """Total padded tokens ``sum(len(b) * max(lengths[b]))`` of ``batches`` (for reports)."""
    lens = np.maximum(as_lengths(lengths, "lengths"), 1)
    return int(sum(len(b) * int(lens[b].max()) for b in batches if len(b)))


__all__ = ["OverlongSequenceWarning", "batches_by_count", "batches_by_tokens", "padded_cost"]
