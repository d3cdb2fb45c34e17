"""Batched beam search with GNMT length penalty, n-best lists and per-step aux.

Rows are laid out batch-major: row ``b * beam_size + j`` is hypothesis ``j`` of batch element
``b``, at every step (the step function always sees ``batch_size * beam_size`` rows)."""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pylstm.errors import LstmValueError

from .hypothesis import Hypothesis, length_penalty
from .state import reorder_state
from .step import StepCaller, StepFn, check_alpha, check_caps, check_int
from .topk import top_k

__all__ = ["beam_search"]

Reorder = Callable[[Any, np.ndarray], Any]


def beam_search(step: StepFn, state: Any, *, batch_size: int, bos_id: int, eos_id: int,
                beam_size: int, max_len: int | Sequence[int], length_penalty: float = 1.0,
                n_best: int = 1, min_len: int = 0,
                reorder: Reorder | None = None) -> list[list[Hypothesis]]:
    """Beam search over ``batch_size`` independent inputs at once.

    ``state`` holds ``batch_size`` rows; it is first expanded to ``batch_size * beam_size`` rows
    with ``reorder(state, np.repeat(np.arange(batch_size), beam_size))``, and after every step
    the step's new state is reordered so row ``i`` continues the hypothesis it now holds
    (``reorder`` defaults to :func:`reorder_state`, ``arr[index]`` on every array). ``step``
    is called once per time step with ``tokens`` ``[batch_size * beam_size]`` int64 and returns
    ``(log_probs [N, V], new_state)`` or ``(log_probs, new_state, aux [N, ...])``; log_probs
    must be log-probabilities (``<= 0``; ``-inf`` forbids a token).

    The search (EOS handling as Joey NMT / OpenNMT-py): the first step expands only each batch
    element's single BOS row. Each step ranks every one-token extension of the live hypotheses;
    an EOS extension among the best ``beam_size`` leaves the beam as a finished hypothesis and
    the best ``beam_size`` non-EOS extensions form the next beam. Scores are summed
    log-probabilities; finished hypotheses of different lengths are compared by
    ``score / ((5 + length) / 6) ** length_penalty`` (``length`` counts EOS; ``0`` = raw
    log-probability). A batch element stops once ``n_best`` finished hypotheses are at least the
    best any live one could still reach (its score over the penalty at ``max_len``: scores only
    fall), so stopping early never changes the result; at ``max_len`` (a hard cap on steps: an
    integer, or one per batch element, so an input decodes alike in any batch) the live
    hypotheses are finished as they are (``finished=False``). EOS is forbidden before
    ``min_len`` other tokens. Ties go to the lower row, then the lower token id, so
    ``beam_size=1`` with ``length_penalty=0`` is :func:`greedy_search`. (With
    ``length_penalty > 0`` a beam of 1 may look past an EOS greedy search stops at, since a
    longer hypothesis can still score higher once normalized.)

    Returns, per batch element, up to ``n_best`` distinct hypotheses, best ``normalized_score``
    first (fewer only when fewer have a finite score).
    """
    batch_size = check_int("batch_size", batch_size, 1)
    bos_id = check_int("bos_id", bos_id, 0)
    eos_id = check_int("eos_id", eos_id, 0)
    beam_size = check_int("beam_size", beam_size, 1)
    min_len = check_int("min_len", min_len, 0)
    n_best = check_int("n_best", n_best, 1)
    alpha = check_alpha(length_penalty)
    if n_best > beam_size:
        raise LstmValueError(f"n_best: expected at most beam_size={beam_size}, got {n_best}")
    caps = check_caps(max_len, batch_size, min_len)
    if reorder is not None and not callable(reorder):
        raise LstmValueError(f"reorder: expected a callable or None, got {type(reorder).__name__}")

    search = _Search(batch_size, beam_size, eos_id, caps, alpha, n_best)
    rows = search.rows
    custom = reorder

    def reorder_rows(s: Any, index: np.ndarray, leading: int) -> Any:
        # The default reorder checks each array has one row per hypothesis (``leading``).
        return reorder_state(s, index, rows=leading) if custom is None else custom(s, index)

    state = reorder_rows(state, np.repeat(np.arange(batch_size), beam_size), batch_size)
    caller = StepCaller(step, rows, bos_id, eos_id)
    tokens = np.full(rows, bos_id, dtype=np.int64)
    for t in range(int(caps.max())):
        log_probs, new_state, aux = caller(tokens, state, search.live_rows())
        if t < min_len:
            log_probs = log_probs.copy()
            log_probs[:, eos_id] = -np.inf
        parents, tokens = search.advance(t, log_probs, aux)
        if search.done.all():
            break
        state = reorder_rows(new_state, parents, rows)
    return search.results()


@dataclass(order=True)
class _Final:
    """A hypothesis that left the beam: ranked by normalized score, then by arrival."""

    sort_key: tuple[float, int]
    score: float = field(compare=False)
    step: int = field(compare=False)  # the step whose token it ended with
    row: int = field(compare=False)  # its last row (the parent row when it ended with EOS)
    eos: bool = field(compare=False)


class _Search:
    """The beams of every batch element and the back-pointers to rebuild hypotheses from."""

    def __init__(self, batch: int, beam: int, eos_id: int, caps: np.ndarray, alpha: float,
                 n_best: int) -> None:
        self.batch, self.beam, self.eos_id = batch, beam, eos_id
        self.rows = batch * beam
        self.caps, self.alpha, self.n_best = caps, alpha, n_best
        # Only slot 0 of each batch element holds a hypothesis (BOS) at first, so the first step
        # expands one row per batch element: no duplicate hypotheses.
        self.scores = np.full((batch, beam), -np.inf)
        self.scores[:, 0] = 0.0
        self.done = np.zeros(batch, dtype=bool)
        self.base = (np.arange(batch) * beam)[:, None]
        self.tokens_at: list[np.ndarray] = []  # per step: the token each row took [rows]
        self.parent_at: list[np.ndarray] = []  # per step: the row it extended [rows]
        self.aux_at: list[np.ndarray | None] = []  # per step: aux of the rows fed [rows, ...]
        self.finals: list[list[_Final]] = [[] for _ in range(batch)]  # best n_best, sorted
        self.arrivals = itertools.count()

    def live_rows(self) -> np.ndarray:
        return (np.isfinite(self.scores) & ~self.done[:, None]).reshape(self.rows)

    def advance(self, t: int, log_probs: np.ndarray,
                aux: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """Extend every beam by one token; returns the parent row of each new row and its token."""
        vocab = log_probs.shape[1]
        beam = self.beam
        # Each row's best beam + 1 tokens hold both the best beam extensions of the whole beam
        # and the best beam non-EOS ones, so the full [rows, V] array is ranked only once.
        width = min(beam + 1, vocab)
        tok_idx, tok_val = top_k(log_probs, width)
        cand_score = (self.scores.reshape(self.rows, 1) + tok_val).reshape(self.batch, -1)
        cand_token = tok_idx.reshape(self.batch, -1)
        cand_slot = np.repeat(np.arange(beam), width)[None, :]
        top_pos, top_score = top_k(cand_score, beam)
        non_eos = np.where(cand_token == self.eos_id, -np.inf, cand_score)
        keep_pos, keep_score = top_k(non_eos, beam)

        active = ~self.done
        slots = np.broadcast_to(cand_slot, cand_token.shape)
        parent = np.where(active[:, None], self.base + np.take_along_axis(slots, keep_pos, 1),
                          self.base + np.arange(beam))
        token = np.where(active[:, None], np.take_along_axis(cand_token, keep_pos, 1),
                         self.tokens_at[-1].reshape(self.batch, beam) if self.tokens_at
                         else self.eos_id)
        self.tokens_at.append(token.reshape(self.rows).astype(np.int64))
        self.parent_at.append(parent.reshape(self.rows))
        self.aux_at.append(aux)

        penalty_now = length_penalty(t + 1, self.alpha)
        top_token = np.take_along_axis(cand_token, top_pos, 1)
        top_slot = np.take_along_axis(slots, top_pos, 1)
        for b in np.flatnonzero(active).tolist():
            last = t == self.caps[b] - 1
            for j in range(beam):
                if top_token[b, j] == self.eos_id and np.isfinite(top_score[b, j]):
                    self._add(b, top_score[b, j], penalty_now, t, b * beam + top_slot[b, j], True)
            self.scores[b] = keep_score[b]
            if last:
                for j in np.flatnonzero(np.isfinite(keep_score[b])).tolist():
                    self._add(b, keep_score[b, j], penalty_now, t, b * beam + j, False)
                self.done[b] = True
            else:
                self.done[b] = self._cannot_improve(b)
        return parent.reshape(self.rows), self.tokens_at[-1]

    def _add(self, b: int, score: float, penalty: float, t: int, row: int, eos: bool) -> None:
        final = _Final((-score / penalty, next(self.arrivals)), float(score), t, int(row), eos)
        finals = self.finals[b]
        bisect.insort(finals, final)
        del finals[self.n_best:]

    def _cannot_improve(self, b: int) -> bool:
        best_live = self.scores[b, 0]
        if not np.isfinite(best_live):
            return True
        if len(self.finals[b]) < self.n_best:
            return False
        # A live hypothesis's score can only fall (log-probabilities <= 0), and the penalty
        # grows with length, so its normalized score is at most this (the tolerated rounding
        # above 0 of a log-softmax aside: max() keeps the bound sound for a score above 0).
        bound = max(best_live / length_penalty(int(self.caps[b]), self.alpha), best_live)
        return -self.finals[b][-1].sort_key[0] >= bound

    def results(self) -> list[list[Hypothesis]]:
        return [[self._hypothesis(f) for f in finals] for finals in self.finals]

    def _hypothesis(self, final: _Final) -> Hypothesis:
        # Walk the back-pointers from the last row: tokens[s] was taken at step s by the row
        # parent_at[s] pointed at, whose aux row came with that step.
        tokens: list[int] = []
        auxes: list[np.ndarray] = []
        row, last_step = final.row, final.step
        if final.eos:
            eos_aux = self.aux_at[final.step]
            if eos_aux is not None:
                auxes.append(eos_aux[row])
            last_step -= 1
        for s in range(last_step, -1, -1):
            tokens.append(int(self.tokens_at[s][row]))
            row = int(self.parent_at[s][row])
            step_aux = self.aux_at[s]
            if step_aux is not None:
                auxes.append(step_aux[row])
        tokens.reverse()
        auxes.reverse()
        aux = np.stack(auxes) if self.aux_at[0] is not None else None
        length = len(tokens) + int(final.eos)
        return Hypothesis(tokens=tokens, score=final.score,
                          normalized_score=final.score / length_penalty(length, self.alpha),
                          finished=final.eos, aux=aux)
