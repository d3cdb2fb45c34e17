"""Greedy and beam decoding of a :class:`~pylstm_translation.model.Seq2Seq` through
:mod:`pylstm.decode`, batched: the decoder step is the model's own :meth:`Seq2Seq.step`, run in
inference mode, and the search state holds each row's keys, mask and decoder state."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

import pylstm
from pylstm.data import BOS_ID, EOS_ID, PAD_ID, pad
from pylstm.decode import Hypothesis, beam_search, greedy_search

from .model import Seq2Seq

__all__ = ["Decoded", "decode", "max_target_len", "search"]


@dataclass
class Decoded:
    """One translation: target ids (no BOS/EOS), the model's log-probability (length
    normalised for beam search) and the attention weights ``[len + 1, source_len]`` (``None``
    without attention)."""

    ids: list[int]
    score: float
    attention: np.ndarray | None


def max_target_len(src_len: int, ratio: float = 1.5, extra: int = 10) -> int:
    """The decoding cap for a source of ``src_len`` tokens."""
    return int(src_len * ratio) + extra


def _log_softmax(x: np.ndarray) -> np.ndarray:
    x = x - x.max(axis=-1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


def search(step: Any, state: Any, batch: int, max_len: int | list[int], beam: int,
           length_penalty: float) -> list[Hypothesis]:
    """The best hypothesis per row: greedy search for ``beam=1``, else beam search (shared by
    the Rust path and the onnxruntime runner, so both search alike)."""
    if beam == 1:
        return greedy_search(step, state, batch_size=batch, bos_id=BOS_ID, eos_id=EOS_ID,
                             max_len=max_len)
    return [n_best[0] for n_best in beam_search(
        step, state, batch_size=batch, bos_id=BOS_ID, eos_id=EOS_ID, beam_size=beam,
        max_len=max_len, length_penalty=length_penalty)]


def decode(net: Seq2Seq, sources: Sequence[Sequence[int]], *, beam: int = 5,
           length_penalty: float = 1.0, batch_size: int = 64) -> list[Decoded]:
    """Translate token-id sequences (no BOS/EOS; EOS is appended here), ``beam=1`` greedy."""
    out: list[Decoded | None] = [None] * len(sources)
    order = np.argsort([len(s) for s in sources], kind="stable")  # similar lengths together
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        for i, d in zip(idx, _decode_batch(net, [sources[i] for i in idx], beam,
                                           length_penalty), strict=True):
            out[i] = d
    return [d for d in out if d is not None]


def _decode_batch(net: Seq2Seq, sources: list[Sequence[int]], beam: int,
                  length_penalty: float) -> list[Decoded]:
    cfg = net.cfg
    padded = pad([list(s) for s in sources], PAD_ID, add_eos=True)
    with pylstm.no_grad():
        keys, (h, c), mask = net.encode(padded.ids, padded.lengths)
    b = len(sources)
    state = {"keys": np.asarray(keys), "mask": mask,
             "h": np.ascontiguousarray(np.asarray(h).transpose(1, 0, 2)),
             "c": np.ascontiguousarray(np.asarray(c).transpose(1, 0, 2)),
             "feed": net.init_feed(b)}

    def step(tokens: np.ndarray, st: dict[str, Any]) -> tuple:
        with pylstm.no_grad():
            emb = np.asarray(net.tgt_embed(tokens))
            hc = (np.ascontiguousarray(st["h"].transpose(1, 0, 2)),
                  np.ascontiguousarray(st["c"].transpose(1, 0, 2)))
            att, (h2, c2, feed), weights = net.step(emb, (*hc, st["feed"]), st["keys"],
                                                    st["mask"])
            logp = _log_softmax(np.asarray(net.logits(att), np.float64))
        new = {"keys": st["keys"], "mask": st["mask"],
               "h": np.ascontiguousarray(np.asarray(h2).transpose(1, 0, 2)),
               "c": np.ascontiguousarray(np.asarray(c2).transpose(1, 0, 2)),
               "feed": np.asarray(feed)}
        if cfg.attention == "none":
            return logp, new
        return logp, new, np.asarray(weights)

    caps = [max_target_len(int(n)) for n in padded.lengths]  # a row's own: batch-independent
    hyps = search(step, state, b, caps, beam, length_penalty)
    return [Decoded(list(h.tokens), float(h.normalized_score),
                    None if h.aux is None else h.aux[:, :int(n)])
            for h, n in zip(hyps, padded.lengths, strict=True)]
