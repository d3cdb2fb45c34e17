"""Greedy and beam decoding of a :class:`~pylstm_captioning.model.ShowAttendTell` through
:mod:`pylstm.decode`, batched: the step is the model's own :meth:`ShowAttendTell.step` in
inference mode; the search state holds each row's features, projected keys and LSTM state,
and each step's attention weights come back as the hypothesis' ``aux``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

import pylstm
from pylstm.data import BOS_ID, EOS_ID
from pylstm.decode import Hypothesis, beam_search, greedy_search

from .features import Features
from .model import ShowAttendTell

__all__ = ["Decoded", "decode_arrays", "decode_features", "log_softmax", "search"]


@dataclass
class Decoded:
    """One caption: word ids (no BOS/EOS), the model's log-probability (length-normalised for
    beam search) and the attention weights ``[len + 1, L]`` (the step that chose each word,
    then EOS)."""

    ids: list[int]
    score: float
    attention: np.ndarray


def log_softmax(x: np.ndarray) -> np.ndarray:
    """Log-softmax over the last axis in float64."""
    x = np.asarray(x, np.float64)
    x = x - x.max(axis=-1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


def search(step: Any, state: Any, batch: int, max_len: int, beam: int,
           length_penalty: float) -> list[Hypothesis]:
    """The best hypothesis per row: greedy for ``beam=1``, else beam search (shared by the
    Rust path and the onnxruntime runner, so both search alike)."""
    if beam == 1:
        return greedy_search(step, state, batch_size=batch, bos_id=BOS_ID, eos_id=EOS_ID,
                             max_len=max_len)
    return [n_best[0] for n_best in beam_search(
        step, state, batch_size=batch, bos_id=BOS_ID, eos_id=EOS_ID, beam_size=beam,
        max_len=max_len, length_penalty=length_penalty)]


def decode_arrays(net: ShowAttendTell, grid: np.ndarray, mean: np.ndarray, *, beam: int = 3,
                  length_penalty: float = 1.0) -> list[Decoded]:
    """Captions of one batch of encoder features (``grid [B, L, F]`` float32, ``mean [B, F]``;
    projected here)."""
    grid, mean = net.project(grid, mean)
    with pylstm.no_grad():
        h, c, keys = net.init_state(grid, mean)
    b = grid.shape[0]
    state = {"h": np.asarray(h), "c": np.asarray(c), "grid": grid, "mean": mean,
             "keys": np.asarray(keys) if keys is not None else np.zeros((b, 0), grid.dtype)}
    attention = net.cfg.attention

    def step(tokens: np.ndarray, st: dict[str, Any]) -> tuple:
        with pylstm.no_grad():
            emb = np.asarray(net.embed(tokens))
            h2, c2, alpha, gated = net.step(emb, st["h"], st["c"], st["grid"],
                                            st["keys"] if attention else None, st["mean"])
            logp = log_softmax(np.asarray(net.logits(emb, h2, gated)))
        new = dict(st, h=np.asarray(h2), c=np.asarray(c2))
        return logp, new, np.asarray(alpha)

    hyps = search(step, state, b, net.cfg.max_len, beam, length_penalty)
    return [Decoded(list(hy.tokens), float(hy.normalized_score), np.asarray(hy.aux))
            for hy in hyps]


def decode_features(net: ShowAttendTell, features: Features,
                    index: Sequence[int] | np.ndarray | None = None, *, beam: int = 3,
                    length_penalty: float = 1.0, batch_size: int = 64) -> list[Decoded]:
    """Captions of the rows ``index`` of ``features`` (all by default), in order."""
    rows = np.arange(len(features)) if index is None else np.asarray(index, np.int64)
    out: list[Decoded] = []
    for start in range(0, len(rows), batch_size):
        grid, mean = features.take(rows[start:start + batch_size])
        out.extend(decode_arrays(net, grid, mean, beam=beam, length_penalty=length_penalty))
    return out
