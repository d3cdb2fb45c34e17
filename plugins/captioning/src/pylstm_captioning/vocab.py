"""The caption vocabulary: one id per word of the training captions.

Captions are tokenised by :func:`~pylstm_captioning.datasets.normalize_caption` (lower-case,
punctuation split off, inner ``'`` and ``-`` kept: ``"medium-light"``, ``"woman's"``), then
split on spaces, so decoding is joining with spaces and a decoded caption is already in the
form the metrics score. The ids of the toolkit's specials are fixed (pad 0, unk 1, bos 2,
eos 3: :mod:`pylstm.data`); words follow by falling frequency, then alphabetically.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

from pylstm.data import BOS_ID, EOS_ID, PAD_ID, UNK_ID
from pylstm.plugins import TaskError

from .datasets import normalize_caption

__all__ = ["SPECIALS", "Vocabulary"]

SPECIALS = ("<pad>", "<unk>", "<s>", "</s>")
assert (PAD_ID, UNK_ID, BOS_ID, EOS_ID) == (0, 1, 2, 3)


class Vocabulary:
    """Word <-> id over the training captions (see the module docstring)."""

    def __init__(self, words: Sequence[str]) -> None:
        words = list(words)
        if tuple(words[:4]) != SPECIALS:
            raise TaskError(f"words: expected the specials {list(SPECIALS)} first, got "
                            f"{words[:4]}")
        if len(set(words)) != len(words):
            raise TaskError("words: expected distinct words, got repeats")
        self.words = words
        self.index = {w: i for i, w in enumerate(words)}

    @classmethod
    def build(cls, captions: Iterable[str], min_count: int = 1) -> Vocabulary:
        """The words of ``captions`` (training captions only) seen at least ``min_count``
        times; rarer words become ``<unk>``."""
        if isinstance(min_count, bool) or not isinstance(min_count, int) or min_count < 1:
            raise TaskError(f"min_count: expected an integer >= 1, got {min_count!r}")
        counts = Counter(w for c in captions for w in normalize_caption(c).split())
        kept = sorted((w for w, n in counts.items() if n >= min_count and w not in SPECIALS),
                      key=lambda w: (-counts[w], w))
        if not kept:
            raise TaskError("captions: expected at least one word in the training captions, "
                            "got none")
        return cls([*SPECIALS, *kept])

    def __len__(self) -> int:
        return len(self.words)

    def encode(self, caption: str) -> list[int]:
        """Word ids of a caption (no BOS/EOS), unknown words as ``<unk>``."""
        return [self.index.get(w, UNK_ID) for w in normalize_caption(caption).split()]

    def decode(self, ids: Iterable[int]) -> str:
        """The caption of ``ids``: specials left out, words joined by spaces."""
        return " ".join(self.words[i] for i in ids if i >= len(SPECIALS) and i < len(self.words))

    def tokens(self, ids: Iterable[int]) -> list[str]:
        """One string per id (specials as written in :data:`SPECIALS`)."""
        return [self.words[i] if 0 <= i < len(self.words) else SPECIALS[UNK_ID] for i in ids]

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the word list as JSON."""
        Path(path).write_text(json.dumps({"words": self.words}, ensure_ascii=False) + "\n",
                              encoding="utf-8")

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Vocabulary:
        """Read a saved vocabulary (errors name the file)."""
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise TaskError(f"{path}: expected a vocabulary JSON file, got {exc}") from None
        words = data.get("words") if isinstance(data, dict) else None
        if not isinstance(words, list) or not all(isinstance(w, str) for w in words):
            raise TaskError(f"{path}: expected {{\"words\": [strings]}}, got "
                            f"{type(data).__name__}")
        try:
            return cls(words)
        except TaskError as exc:
            raise TaskError(f"{path}: {exc}") from None
