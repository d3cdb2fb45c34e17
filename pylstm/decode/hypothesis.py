"""One decoded sequence, and the GNMT length penalty its normalized score uses."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Hypothesis", "length_penalty"]


def length_penalty(length: int, alpha: float) -> float:
    """GNMT's length penalty ``((5 + length) / 6) ** alpha`` (Wu et al. 2016, as in Joey NMT).

    ``length`` counts the generated tokens including EOS; ``alpha = 0`` gives 1 (raw
    log-probability)."""
    return ((5.0 + length) / 6.0) ** alpha if alpha else 1.0


@dataclass(frozen=True, eq=False)
class Hypothesis:
    """A decoded sequence.

    * ``tokens``: the generated token ids, without BOS and without EOS.
    * ``score``: the sum of the step log-probabilities of the tokens, EOS included when the
      hypothesis ended with EOS.
    * ``normalized_score``: ``score / length_penalty(length, alpha)`` (beam search); greedy search
      has no length penalty, so there it equals ``score``.
    * ``finished``: ``True`` when it ended with EOS, ``False`` when ``max_len`` cut it.
    * ``aux``: the step function's per-step ``aux`` rows along this hypothesis, stacked:
      ``[length, ...]`` (``length = len(tokens) + finished``; row ``i`` came with the
      distribution token ``i`` was chosen from), or ``None`` when the step returns no ``aux``.
    """

    tokens: list[int]
    score: float
    normalized_score: float
    finished: bool
    aux: np.ndarray | None = None

    @property
    def length(self) -> int:
        """Generated tokens, EOS included: the length the length penalty is computed from."""
        return len(self.tokens) + int(self.finished)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Hypothesis):
            return NotImplemented
        same_aux = (self.aux is None and other.aux is None) or (
            self.aux is not None and other.aux is not None
            and np.array_equal(self.aux, other.aux))
        return (same_aux and self.tokens == other.tokens and self.score == other.score
                and self.normalized_score == other.normalized_score
                and self.finished == other.finished)

    __hash__ = None  # type: ignore[assignment]  # tokens is a list and aux an array
