"""The special tokens every pylstm vocabulary starts with, in a fixed order.

Fixing the ids (pad=0, unk=1, bos=2, eos=3) lets batching, losses and decoders use them without
a tokenizer at hand, and makes a saved model's output layer mean the same thing after a reload.
"""

from __future__ import annotations

PAD_ID: int = 0
UNK_ID: int = 1
BOS_ID: int = 2
EOS_ID: int = 3

#: Default spellings of the four specials, in id order.
DEFAULT_SPECIALS: tuple[str, str, str, str] = ("<pad>", "<unk>", "<bos>", "<eos>")

__all__ = ["BOS_ID", "DEFAULT_SPECIALS", "EOS_ID", "PAD_ID", "UNK_ID"]
