"""Sequence decoding over any model through a step function (numpy, model-agnostic).

``step(tokens [N] int64, state) -> (log_probs [N, V], new_state)`` or
``(log_probs, new_state, aux [N, ...])``. ``state`` is any nesting of tuples, lists and dicts of
numpy arrays whose leading axis is the row; beam search reorders it with :func:`reorder_state`
(or ``reorder=``). ``aux`` (e.g. a step's attention weights) comes back stacked per hypothesis.

* :func:`greedy_search` — one hypothesis per batch row.
* :func:`beam_search` — batched beam search, GNMT length penalty, n-best lists.
"""

from __future__ import annotations

from .beam import beam_search
from .greedy import greedy_search
from .hypothesis import Hypothesis, length_penalty
from .state import reorder_state
from .step import StepFn

__all__ = ["Hypothesis", "StepFn", "beam_search", "greedy_search", "length_penalty",
           "reorder_state"]
