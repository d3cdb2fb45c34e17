"""DMN+ (Xiong, Merity and Socher 2016) and the LSTM baseline, on ``pylstm.nn``.

DMN+ (:class:`DMNPlus`), with ``D = config.dim``:

* **Input fusion.** Each statement's word embeddings ``w_1..w_M`` (``[D]``) are summed with the
  positional encoding ``f = sum_j l_j * w_j``, ``l_jd = (1 - j/M) - (d/D)(1 - 2j/M)``
  (:func:`position_weights`), then a bidirectional ``pylstm.LSTM`` runs across the statements and
  its two directions are summed: one fact vector ``[D]`` per statement.
* **Question.** A ``pylstm.LSTM`` over the question's word embeddings; ``q`` its final state.
* **Episodic memory,** ``passes`` passes (default 3), ``m_0 = q``. In pass ``t`` the gates come
  from ``z_i = [f_i*q, f_i*m, |f_i-q|, |f_i-m|]`` through ``W2 tanh(W1 z + b1) + b2`` and a
  softmax over the story's facts. The episode is an **attention LSTM**: one ``pylstm.nn.GatedLSTM``
  (an LSTM cell shared by the passes) reads the facts in order and the gate scales its update,
  ``h_i = g_i * h~_i + (1 - g_i) * h_{i-1}`` and the same for the cell state ``c_i``, so a fact
  with gate 0 leaves the episode unchanged (the paper's attention GRU replaces the GRU's update
  gate by ``g_i``; here ``g_i`` gates the whole LSTM step). The episode ``e_t`` is the last
  ``h``; the memory update is ``m_t = ReLU(W_t [m_{t-1}; e_t; q] + b_t)`` with untied weights
  per pass.
* **Answer.** ``Linear([m; q; m*q; |m-q|])`` gives ``answer_len`` rows of word scores: row
  ``k`` is the answer's ``k``-th word or the end marker (one row for single-word tasks; two or
  three for the lists of task 8 and the paths of task 19). The products and distances (the
  gates' features, on the final memory) let yes/no answers compare the remembered fact with the
  question: on ``[m; q]`` alone no read-out learned that comparison (tasks 6, 17 and 18 stayed
  at chance with the right fact attended), with them task 6 reaches 100%.

The baseline (:class:`LSTMBaseline`) is the bAbI paper's LSTM: the story's words and then the
question's as one sequence, an ``LSTM``, and the same answer rows on its final state.

Both return ``(logits [B, L, V], gates)``: ``gates`` the per-pass attention ``[B, F]`` (an empty
list for the baseline). On arrays outside ``pylstm.record()`` they run as inference.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

import pylstm
from pylstm import autograd as A
from pylstm import nn
from pylstm.data import PAD_ID
from pylstm.plugins import TaskError

from .vocab import Batch

__all__ = ["BaselineConfig", "DMNConfig", "DMNPlus", "LSTMBaseline", "position_weights"]


def _check_ints(obj: Any, names: tuple[str, ...]) -> None:
    for name in names:
        v = getattr(obj, name)
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise TaskError(f"{name}: expected an integer >= 1, got {v!r}")
    if not isinstance(obj.dropout, (int, float)) or not 0 <= obj.dropout < 1:
        raise TaskError(f"dropout: expected a number in [0, 1), got {obj.dropout!r}")


def _from_json(cls: Any, data: Any, where: str) -> Any:
    if not isinstance(data, dict):
        raise TaskError(f"{where}: expected a JSON object, got {type(data).__name__}")
    known = set(cls.__dataclass_fields__)
    unknown = sorted(set(data) - known)
    missing = sorted({"vocab", "answer_len"} - set(data))
    if unknown or missing:
        raise TaskError(f"{where}: unknown keys {unknown}, missing keys {missing}")
    try:
        return cls(**data)
    except (TaskError, TypeError) as exc:
        raise TaskError(f"{where}: {exc}") from None


@dataclass(frozen=True)
class DMNConfig:
    """DMN+ sizes (saved with the weights)."""

    vocab: int
    answer_len: int = 1
    dim: int = 80
    passes: int = 3
    dropout: float = 0.1

    def __post_init__(self) -> None:
        _check_ints(self, ("vocab", "answer_len", "dim", "passes"))

    def to_json(self) -> dict[str, Any]:
        """The config as JSON values."""
        return asdict(self)

    @classmethod
    def from_json(cls, data: Any, where: str) -> DMNConfig:
        """Read back, every key checked (errors name ``where``)."""
        return _from_json(cls, data, where)


@dataclass(frozen=True)
class BaselineConfig:
    """LSTM baseline sizes."""

    vocab: int
    answer_len: int = 1
    emb: int = 50
    hidden: int = 100
    dropout: float = 0.1

    def __post_init__(self) -> None:
        _check_ints(self, ("vocab", "answer_len", "emb", "hidden"))

    def to_json(self) -> dict[str, Any]:
        """The config as JSON values."""
        return asdict(self)

    @classmethod
    def from_json(cls, data: Any, where: str) -> BaselineConfig:
        """Read back, every key checked (errors name ``where``)."""
        return _from_json(cls, data, where)


def position_weights(facts: np.ndarray, dim: int, dtype: Any = np.float32) -> np.ndarray:
    """``[B, F, W, dim]`` positional-encoding weights of padded word ids ``facts [B, F, W]``:
    ``l_jd = (1 - j/M) - (d/dim)(1 - 2j/M)`` for word ``j = 1..M`` of a statement of ``M``
    words, 0 on padding."""
    mask = facts != PAD_ID
    m = np.maximum(mask.sum(axis=2, keepdims=True), 1).astype(np.float64)[..., None]
    j = np.arange(1, facts.shape[2] + 1, dtype=np.float64)[None, None, :, None]
    d = np.arange(1, dim + 1, dtype=np.float64)[None, None, None, :] / dim
    w = (1 - j / m) - d * (1 - 2 * j / m)
    return (w * mask[..., None]).astype(dtype)


def _seed(rng: np.random.Generator) -> int:
    return int(rng.integers(2**31))


class DMNPlus(nn.Module):
    """DMN+; see the module docstring. ``dtype`` float64 serves the gradient checks."""

    def __init__(self, cfg: DMNConfig, seed: int = 0, dtype: Any = np.float32) -> None:
        super().__init__()
        self.cfg = cfg
        d = cfg.dim
        rng = np.random.default_rng(seed)
        self.embed = nn.Embedding(cfg.vocab, d, padding_idx=PAD_ID, dtype=dtype, seed=_seed(rng))
        self.embed.weight.data *= self.embed.weight.data.dtype.type(1 / np.sqrt(d))
        self.fusion = pylstm.LSTM(d, d, bidirectional=True, batch_first=True, dtype=dtype,
                                  seed=_seed(rng))
        self.question = pylstm.LSTM(d, d, batch_first=True, dtype=dtype, seed=_seed(rng))
        self.gate1 = nn.Linear(4 * d, d, dtype=dtype, seed=_seed(rng))
        self.gate2 = nn.Linear(d, 1, dtype=dtype, seed=_seed(rng))
        self.episode = nn.GatedLSTM(d, d, dtype=dtype, seed=_seed(rng))
        for k in range(cfg.passes):
            setattr(self, f"update{k}", nn.Linear(3 * d, d, dtype=dtype, seed=_seed(rng)))
        self.drop = nn.Dropout(cfg.dropout, seed=_seed(rng))
        self.answer = nn.Linear(4 * d, cfg.answer_len * cfg.vocab, dtype=dtype,
                                seed=_seed(rng))
        # The comparison columns start at zero: the read-out begins as Linear([m; q]), which
        # learns the one-fact answers fastest, and takes up the comparison as it pays.
        self.answer.weight.data[:, 2 * d:] = 0
        self.dtype = np.dtype(dtype)

    def facts(self, batch: Batch) -> Any:
        """Fused fact vectors ``[B, F, D]`` (zero after each story's last fact)."""
        d = self.cfg.dim
        emb = self.embed(batch.facts)  # [B, F, W, D]
        sent = (emb * position_weights(batch.facts, d, self.dtype)).sum(axis=2)
        y, _ = self.fusion(self.drop(sent), lengths=batch.n_facts)
        return y[:, :, :d] + y[:, :, d:]

    def encode_question(self, batch: Batch) -> Any:
        """The question vector ``q [B, D]``."""
        _, (h, _) = self.question(self.embed(batch.question), lengths=batch.q_len)
        return h[0]

    def gate_scores(self, f: Any, q: Any, m: Any) -> Any:
        """Attention scores ``[B, F]`` (before the softmax) of facts ``f`` for ``q``, ``m``."""
        b, n, d = f.shape
        q1, m1 = q.reshape(b, 1, d), m.reshape(b, 1, d)
        z = A.concat([f * q1, f * m1, A.abs(f - q1), A.abs(f - m1)], axis=2)
        return self.gate2(A.tanh(self.gate1(z))).reshape(b, n)

    def attention_episode(self, f: Any, gates: Any) -> Any:
        """The attention LSTM over the facts: the last ``h`` (``[B, D]``)."""
        return self.episode(f, gates)

    def forward(self, batch: Batch) -> tuple[Any, list[Any], list[Any]]:  # type: ignore[override]
        """``(logits [B, L, V], gates per pass [B, F], scores per pass [B, F])``."""
        f = self.facts(batch)
        q = self.encode_question(batch)
        mask = batch.fact_mask
        m = q
        gates, scores = [], []
        for k in range(self.cfg.passes):
            s = self.gate_scores(f, q, m)
            g = A.masked_softmax(s, mask)
            e = self.attention_episode(f, g)
            m = A.relu(getattr(self, f"update{k}")(A.concat([m, e, q], axis=1)))
            gates.append(g)
            scores.append(s)
        logits = self.answer(self.drop(A.concat([m, q, m * q, A.abs(m - q)], axis=1)))
        b = len(batch)
        return logits.reshape(b, self.cfg.answer_len, self.cfg.vocab), gates, scores


def story_sequence(batch: Batch) -> tuple[np.ndarray, np.ndarray]:
    """The baseline's input: every fact's words, then the question's, as one padded id
    sequence ``[B, T]`` with lengths ``[B]``."""
    rows = []
    for i in range(len(batch)):
        words = batch.facts[i, :batch.n_facts[i]].reshape(-1)
        rows.append(np.concatenate([words[words != PAD_ID],
                                    batch.question[i, :batch.q_len[i]]]))
    lengths = np.array([len(r) for r in rows], np.int64)
    out = np.full((len(rows), int(lengths.max())), PAD_ID, np.int64)
    for i, r in enumerate(rows):
        out[i, :len(r)] = r
    return out, lengths


class LSTMBaseline(nn.Module):
    """The bAbI paper's LSTM baseline: story then question as one sequence."""

    def __init__(self, cfg: BaselineConfig, seed: int = 0, dtype: Any = np.float32) -> None:
        super().__init__()
        self.cfg = cfg
        rng = np.random.default_rng(seed)
        self.embed = nn.Embedding(cfg.vocab, cfg.emb, padding_idx=PAD_ID, dtype=dtype,
                                  seed=_seed(rng))
        self.embed.weight.data *= self.embed.weight.data.dtype.type(1 / np.sqrt(cfg.emb))
        self.lstm = pylstm.LSTM(cfg.emb, cfg.hidden, batch_first=True, dtype=dtype,
                                seed=_seed(rng))
        self.drop = nn.Dropout(cfg.dropout, seed=_seed(rng))
        self.answer = nn.Linear(cfg.hidden, cfg.answer_len * cfg.vocab, dtype=dtype,
                                seed=_seed(rng))

    def forward(self, batch: Batch) -> tuple[Any, list[Any], list[Any]]:  # type: ignore[override]
        """``(logits [B, L, V], [], [])``."""
        ids, lengths = story_sequence(batch)
        _, (h, _) = self.lstm(self.drop(self.embed(ids)), lengths=lengths)
        logits = self.answer(self.drop(h[0]))
        return logits.reshape(len(batch), self.cfg.answer_len, self.cfg.vocab), [], []
