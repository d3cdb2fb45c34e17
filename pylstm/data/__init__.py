"""Text and batches for the toolkit: tokenisers, padding, and length-bucketed batches.

* :class:`Tokenizer` — BPE / Unigram / word-level vocabularies on Hugging Face ``tokenizers``
  (the ``text`` extra), with fixed special ids pad=0, unk=1, bos=2, eos=3.
* :func:`pad`, :class:`Padded`, :func:`lengths_to_mask` — ragged ids to ``[B, T]`` / ``[T, B]``.
* :func:`batches_by_tokens`, :func:`batches_by_count` — seeded, epoch-deterministic batches.
"""

from __future__ import annotations

from .batching import OverlongSequenceWarning, batches_by_count, batches_by_tokens, padded_cost
from .padding import Padded, lengths_to_mask, pad
from .specials import BOS_ID, DEFAULT_SPECIALS, EOS_ID, PAD_ID, UNK_ID
from .tokenizer import MODELS, ModelKind, Tokenizer

__all__ = [
    "BOS_ID",
    "DEFAULT_SPECIALS",
    "EOS_ID",
    "MODELS",
    "ModelKind",
    "OverlongSequenceWarning",
    "PAD_ID",
    "Padded",
    "Tokenizer",
    "UNK_ID",
    "batches_by_count",
    "batches_by_tokens",
    "lengths_to_mask",
    "pad",
    "padded_cost",
]
