"""Greedy decoding: the most likely next token at every step, for a whole batch at once."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .hypothesis import Hypothesis
from .step import StepCaller, StepFn, check_caps, check_int

__all__ = ["greedy_search"]


def greedy_search(step: StepFn, state: Any, *, batch_size: int, bos_id: int, eos_id: int,
                  max_len: int | Sequence[int], min_len: int = 0) -> list[Hypothesis]:
    """Decode each of ``batch_size`` rows by always taking the most likely next token.

    ``step(tokens, state)`` gets ``tokens`` ``[batch_size]`` int64 (BOS first, then each row's
    last token) and returns ``(log_probs [batch_size, V], new_state)`` or
    ``(log_probs, new_state, aux)``; the state is passed back untouched (greedy search never
    reorders it). One call per time step for the whole batch; a row stops at EOS (rows that
    stopped are fed ``eos_id`` until every row has); at most ``max_len`` steps (an integer, or
    one per row). EOS is not
    chosen before ``min_len`` other tokens. Ties go to the lowest token id.

    Returns one :class:`Hypothesis` per row, in batch order; ``normalized_score == score``.
    """
    batch_size = check_int("batch_size", batch_size, 1)
    bos_id = check_int("bos_id", bos_id, 0)
    eos_id = check_int("eos_id", eos_id, 0)
    min_len = check_int("min_len", min_len, 0)
    caps = check_caps(max_len, batch_size, min_len)
    caller = StepCaller(step, batch_size, bos_id, eos_id)
    tokens = np.full(batch_size, bos_id, dtype=np.int64)
    done = np.zeros(batch_size, dtype=bool)
    ended = np.zeros(batch_size, dtype=bool)  # by EOS (else by its cap)
    scores = np.zeros(batch_size)
    chosen: list[list[int]] = [[] for _ in range(batch_size)]
    auxes: list[list[np.ndarray]] = [[] for _ in range(batch_size)]
    for t in range(int(caps.max())):
        log_probs, state, aux = caller(tokens, state, ~done)
        if t < min_len:
            log_probs = log_probs.copy()
            log_probs[:, eos_id] = -np.inf
        best = np.argmax(log_probs, axis=1)
        for b in np.flatnonzero(~done):
            token = int(best[b])
            scores[b] += float(log_probs[b, token])
            if aux is not None:
                auxes[b].append(aux[b])
            if token == eos_id:
                done[b] = ended[b] = True
            else:
                chosen[b].append(token)
                done[b] = t == caps[b] - 1
        if done.all():
            break
        tokens = np.where(done, eos_id, best).astype(np.int64)
    return [Hypothesis(tokens=chosen[b], score=float(scores[b]),
                       normalized_score=float(scores[b]), finished=bool(ended[b]),
                       aux=np.stack(auxes[b]) if caller.has_aux else None)
            for b in range(batch_size)]
