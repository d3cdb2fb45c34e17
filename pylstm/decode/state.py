"""Reordering a search state: the rows of every array follow the hypotheses they belong to."""

from __future__ import annotations

from typing import Any

import numpy as np

from pylstm.errors import DTypeError, LstmValueError, ShapeError

__all__ = ["reorder_state"]


def reorder_state(state: Any, index: np.ndarray, *, rows: int | None = None) -> Any:
    """``state`` with ``arr[index]`` taken on every array leaf.

    ``state`` is a numpy array, ``None`` (kept as is) or a tuple (named tuples included), list or
    dict nesting them; the leading axis of every array is the row (one per hypothesis).
    ``index[i]`` is the row the new row ``i`` is copied from. ``rows``, when given, is the number
    of rows every array must have (the search passes it, so a state array with the wrong leading
    axis is reported by name instead of being indexed out of range). For states that are not laid
    out one row per hypothesis (e.g. encoder outputs kept once per batch row), pass your own
    ``reorder=`` to :func:`pylstm.decode.beam_search`.
    """
    index = np.asarray(index)
    if index.ndim != 1 or index.dtype.kind not in "iu":
        raise ShapeError(f"index: expected a 1-D integer array, got dtype {index.dtype} "
                         f"shape {list(index.shape)}")
    needed = rows if rows is not None else (int(index.max()) + 1 if index.size else 0)
    if index.size and (int(index.min()) < 0 or int(index.max()) >= needed):
        raise LstmValueError(f"index: expected row numbers in [0, {needed}), got values in "
                             f"[{int(index.min())}, {int(index.max())}]")
    return _take(state, index, "state", rows)


def _take(node: Any, index: np.ndarray, path: str, rows: int | None) -> Any:
    if isinstance(node, np.ndarray):
        if node.ndim == 0:
            raise ShapeError(f"{path}: expected an array with a leading row axis, got a 0-d array")
        if rows is not None and node.shape[0] != rows:
            raise ShapeError(f"{path}: expected a leading axis of {rows} rows (one per "
                             f"hypothesis), got shape {list(node.shape)}; pass reorder= for "
                             f"state laid out otherwise")
        if rows is None and node.shape[0] <= int(index.max(initial=-1)):
            raise ShapeError(f"{path}: expected at least {int(index.max()) + 1} rows for the "
                             f"index, got shape {list(node.shape)}")
        return node[index]
    if node is None:
        return None
    if isinstance(node, dict):
        return {key: _take(value, index, f"{path}[{key!r}]", rows) for key, value in node.items()}
    if isinstance(node, tuple):
        items = [_take(value, index, f"{path}[{i}]", rows) for i, value in enumerate(node)]
        return type(node)(*items) if hasattr(node, "_fields") else tuple(items)
    if isinstance(node, list):
        return [_take(value, index, f"{path}[{i}]", rows) for i, value in enumerate(node)]
    raise DTypeError(f"{path}: expected a numpy array, None, or a tuple/list/dict of them, got "
                     f"{type(node).__name__}; pass reorder= for other state types")
