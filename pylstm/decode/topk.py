"""Exact per-row top-k with ties to the lower column, fast on vocabulary-wide rows."""

from __future__ import annotations

import numpy as np

__all__ = ["top_k"]

_BLOCK = 512  # columns per block of the block-maximum prefilter in _top_k


def top_k(values: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row (float ``values``, no NaN), the column indices and values of the ``k`` largest
    entries, largest first; ties go to the lower column (as ``np.argmax``), so the search is
    deterministic and a beam of one is greedy search."""
    n_rows, n_cols = values.shape
    if k >= n_cols:
        idx = np.argsort(-values, axis=1, kind="stable")
        return idx, np.take_along_axis(values, idx, 1)
    if n_cols >= 4 * k * _BLOCK:
        idx, tied = _k_largest_by_blocks(values, k)
    else:
        idx = np.argpartition(values, n_cols - k, axis=1)[:, n_cols - k:]
        kth = np.take_along_axis(values, idx, 1).min(axis=1)
        tied = (values >= kth[:, None]).sum(axis=1) > k
    # The partition picks arbitrarily among entries equal to the k-th value; where more entries
    # tie there than places are left, take the lowest columns instead.
    for r in np.flatnonzero(tied):
        kth_r = values[r, idx[r]].min()
        above = np.flatnonzero(values[r] > kth_r)
        equal = np.flatnonzero(values[r] == kth_r)[: k - len(above)]
        idx[r] = np.concatenate([above, equal])
    vals = np.take_along_axis(values, idx, 1)
    order = np.lexsort((idx, -vals), axis=1)  # value descending, then column ascending
    return np.take_along_axis(idx, order, 1), np.take_along_axis(vals, order, 1)


def _k_largest_by_blocks(values: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Columns of ``k`` largest entries per row (any order), for wide rows (a vocabulary), and
    the rows where entries tie with the k-th beyond those picked. A largest entry lies in one of
    the ``k`` blocks with the largest maxima (else ``k`` block maxima would exceed it) or in the
    short last block, so only those columns are partitioned (a 4x smaller pass than the row's:
    the block maxima and this are ~3x faster than partitioning 32k-token rows)."""
    n_rows, n_cols = values.shape
    n_full = n_cols // _BLOCK
    by_block = values[:, : n_full * _BLOCK].reshape(n_rows, n_full, _BLOCK)
    block_max = by_block.max(axis=2)
    blocks = np.argpartition(block_max, n_full - k, axis=1)[:, n_full - k:]
    # Candidates: the chosen blocks (contiguous copies), then the short last block.
    cand = np.concatenate([by_block[np.arange(n_rows)[:, None], blocks].reshape(n_rows, -1),
                           values[:, n_full * _BLOCK:]], axis=1)
    pick = np.argpartition(cand, cand.shape[1] - k, axis=1)[:, cand.shape[1] - k:]
    kth = np.take_along_axis(cand, pick, 1).min(axis=1)[:, None]
    in_block = pick < k * _BLOCK
    block_of = np.take_along_axis(blocks, np.minimum(pick // _BLOCK, k - 1), 1)
    tail_col = pick - k * _BLOCK + n_full * _BLOCK
    cols = np.where(in_block, block_of * _BLOCK + pick % _BLOCK, tail_col)
    np.put_along_axis(block_max, blocks, -np.inf, axis=1)  # now: the blocks left out
    tied = ((cand >= kth).sum(axis=1) > k) | (block_max >= kth).any(axis=1)
    return cols, tied
