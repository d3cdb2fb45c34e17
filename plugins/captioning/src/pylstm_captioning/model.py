"""Show, attend and tell (Xu et al. 2015) on ``pylstm.nn``: an LSTM decoder with soft
attention over the encoder's feature grid.

* Initial state from the mean feature ``ā``: ``h0 = tanh(W_h ā + b)``, ``c0 = W_c ā + b``
  (Xu et al.'s ``f_init``).
* Soft attention, additive (Bahdanau) as Xu et al.: ``e_ti = wᵀ tanh(W_a a_i + U_a h_{t-1})``
  over the ``L = 49`` grid cells, ``α_t = softmax(e_t)``, context ``ẑ_t = Σ_i α_ti a_i``. The key
  projection ``W_a a_i`` is computed once per image, not per step.
* The gate ``β_t = σ(f_β(h_{t-1}))`` scales the context (Xu et al. §4.2.1), then the LSTM
  (``pylstm.LSTMCell``) reads ``[E y_{t-1}; β_t ⊙ ẑ_t]``.
* Deep output (Xu et al. eq. 7, with the ``tanh`` of their code): ``p(y_t) ∝ exp(L_o
  dropout(tanh(E y_{t-1} + L_h h_t + L_z β_t ⊙ ẑ_t)))``, so the word read off at step ``t``
  sees the region attended to at that step.
* The doubly-stochastic penalty ``λ · mean_i (1 - Σ_t α_ti)²`` (the mean over cells and images,
  as sgrvinod's tutorial writes Xu et al.'s ``λ Σ_i``: the same penalty scaled by ``1/L``)
  over the real (unpadded) steps of each caption.
* ``reduce`` (default 512): the encoder's 1280-wide cells are first projected onto their
  leading principal components, fitted once on the training cells (:meth:`fit_reduction`) and
  frozen - a fixed linear map of the annotation vectors, applied outside the recorded graph,
  that makes every per-step product 2.5x smaller on a CPU. ``reduce=0`` attends over the raw
  features as Xu et al. do. Everything below reads the projected features ``a_i``.
* ``attention=False`` is the baseline: the same decoder (init, gate, LSTM, output) whose
  context at every step is the mean feature (uniform weights ``1/L``).

:meth:`ShowAttendTell.step` serves teacher forcing (recorded, for gradients) and decoding
(arrays, inference), so training and captioning compute one function.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

import pylstm
from pylstm import autograd as A
from pylstm import nn
from pylstm.plugins import TaskError

__all__ = ["CaptionerConfig", "ShowAttendTell"]


@dataclass(frozen=True)
class CaptionerConfig:
    """The decoder's sizes and switches (saved as the run's ``model.json``)."""

    vocab: int
    features: int = 1280
    reduce: int = 512
    cells: int = 49
    emb: int = 128
    hidden: int = 384
    attn_dim: int = 256
    attention: bool = True
    dropout: float = 0.5
    max_len: int = 20

    def __post_init__(self) -> None:
        for name in ("vocab", "features", "cells", "emb", "hidden", "attn_dim", "max_len"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise TaskError(f"{name}: expected an integer >= 1, got {value!r}")
        if isinstance(self.reduce, bool) or not isinstance(self.reduce, int) \
                or not 0 <= self.reduce <= self.features:
            raise TaskError(f"--reduce: expected an integer from 0 to {self.features}, got "
                            f"{self.reduce!r}")
        if not isinstance(self.attention, bool):
            raise TaskError(f"attention: expected true or false, got {self.attention!r}")
        if isinstance(self.dropout, bool) or not isinstance(self.dropout, (int, float)) \
                or not 0 <= self.dropout < 1:
            raise TaskError(f"--dropout: expected a number in [0, 1), got {self.dropout!r}")

    @property
    def dim(self) -> int:
        """The width of the annotation vectors the decoder reads."""
        return self.reduce or self.features

    def to_json(self) -> dict[str, Any]:
        """The config as JSON values."""
        return asdict(self)

    @classmethod
    def from_json(cls, data: Any, where: str) -> CaptionerConfig:
        """A config read back from ``where``, every key checked (errors name the file)."""
        if not isinstance(data, dict):
            raise TaskError(f"{where}: expected a JSON object, got {type(data).__name__}")
        unknown = sorted(set(data) - set(cls.__dataclass_fields__))
        missing = sorted({"vocab"} - set(data))
        if unknown or missing:
            raise TaskError(f"{where}: unknown keys {unknown}, missing keys {missing}")
        try:
            return cls(**data)
        except TaskError as exc:
            raise TaskError(f"{where}: {exc}") from None


class ShowAttendTell(nn.Module):
    """The captioning decoder; see the module docstring. ``dtype`` float64 for gradient
    checks."""

    def __init__(self, cfg: CaptionerConfig, seed: int = 0, dtype: Any = np.float32) -> None:
        super().__init__()
        self.cfg = cfg
        self.dtype = np.dtype(dtype)
        rng = np.random.default_rng(seed)

        def s() -> int:
            return int(rng.integers(2**31))

        f, h, e = cfg.dim, cfg.hidden, cfg.emb
        if cfg.reduce:  # frozen: set by fit_reduction, never given to the optimiser
            self.reduce_proj = nn.Linear(cfg.features, cfg.reduce, dtype=dtype, seed=s())
        self.embed = nn.Embedding(cfg.vocab, e, padding_idx=0, dtype=dtype, seed=s())
        self.embed.weight.data *= self.dtype.type(1 / np.sqrt(e))  # unit-variance inputs
        self.init_h = nn.Linear(f, h, dtype=dtype, seed=s())
        self.init_c = nn.Linear(f, h, dtype=dtype, seed=s())
        if cfg.attention:
            self.key_proj = nn.Linear(f, cfg.attn_dim, dtype=dtype, seed=s())
            self.query_proj = nn.Linear(h, cfg.attn_dim, bias=False, dtype=dtype, seed=s())
            self.score = nn.Linear(cfg.attn_dim, 1, bias=False, dtype=dtype, seed=s())
        self.gate = nn.Linear(h, f, dtype=dtype, seed=s())
        self.cell = pylstm.LSTMCell(e + f, h, dtype=dtype, seed=s())
        self.drop = nn.Dropout(cfg.dropout, seed=s())
        self.out_h = nn.Linear(h, e, dtype=dtype, seed=s())
        self.out_z = nn.Linear(f, e, bias=False, dtype=dtype, seed=s())
        self.out = nn.Linear(e, cfg.vocab, dtype=dtype, seed=s())

    # ------------------------------------------------------------------ the projection
    def trainable_parameters(self) -> list[nn.Parameter]:
        """Every parameter but the frozen projection's."""
        return [p for name, p in self.named_parameters() if not name.startswith("reduce_proj.")]

    def fit_reduction(self, cells: np.ndarray) -> None:
        """Set the projection to the leading ``reduce`` principal components of ``cells``
        ``[n, features]`` (training cells only), centred, scaled to unit mean variance."""
        if not self.cfg.reduce:
            return
        x = np.asarray(cells, np.float64)
        mu = x.mean(axis=0)
        cov = np.cov(x - mu, rowvar=False)
        values, vectors = np.linalg.eigh(cov)
        order = np.argsort(values)[::-1][:self.cfg.reduce]
        scale = 1.0 / np.sqrt(max(float(values[order].mean()), 1e-12))
        w = vectors[:, order].T * scale  # [reduce, features]
        self.reduce_proj.weight.data[...] = w.astype(self.dtype)
        self.reduce_proj.bias.data[...] = (-(w @ mu)).astype(self.dtype)
        self.mark_updated()

    def project(self, grid: np.ndarray, mean: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The annotation vectors the decoder reads: ``(grid [B, L, dim], mean [B, dim])``
        from the encoder's features (arrays, never recorded; the identity without
        ``reduce``)."""
        grid = np.asarray(grid, self.dtype)
        mean = np.asarray(mean, self.dtype)
        if not self.cfg.reduce:
            return grid, mean
        with pylstm.no_grad():
            return (np.asarray(self.reduce_proj(grid), self.dtype),
                    np.asarray(self.reduce_proj(mean), self.dtype))

    # ------------------------------------------------------------------ the pieces
    def init_state(self, grid: Any, mean: Any) -> tuple[Any, Any, Any]:
        """``(h0, c0, keys)`` for projected features ``grid [B, L, dim]`` and ``mean [B, dim]``
        (:meth:`project`); ``keys``
        ``[B, L, attn_dim]`` is the projected grid (``None`` without attention)."""
        h = A.tanh(self.init_h(mean))
        c = self.init_c(mean)
        keys = self.key_proj(grid) if self.cfg.attention else None
        return h, c, keys

    def attend(self, h: Any, grid: Any, keys: Any, mean: Any) -> tuple[Any, Any]:
        """``(context [B, F], weights [B, L])`` for the previous state ``h [B, H]``."""
        b = h.shape[0]
        cells = grid.shape[1]
        if not self.cfg.attention:
            return mean, np.full((b, cells), 1.0 / cells, self.dtype)
        q = self.query_proj(h).reshape(b, 1, self.cfg.attn_dim)
        e = self.score(A.tanh(keys + q)).reshape(b, cells)
        alpha = A.softmax(e, axis=-1)
        context = (alpha.reshape(b, 1, cells) @ grid).reshape(b, grid.shape[2])
        return context, alpha

    def step(self, emb_t: Any, h: Any, c: Any, grid: Any, keys: Any,
             mean: Any) -> tuple[Any, Any, Any, Any]:
        """One decoder step: ``(h, c, weights [B, L], gated context [B, dim])`` from the
        previous word's embedding ``[B, E]`` and state."""
        context, alpha = self.attend(h, grid, keys, mean)
        gated = A.sigmoid(self.gate(h)) * context
        h, c = self.cell(A.concat([emb_t, gated], axis=1), (h, c))
        return h, c, alpha, gated

    def logits(self, emb: Any, h: Any, gated: Any) -> Any:
        """Word scores ``[..., V]`` (the deep output) from the previous words' embeddings,
        the new states and the gated contexts (``[B, ·]`` or ``[B, T, ·]``)."""
        return self.out(self.drop(A.tanh(emb + self.out_h(h) + self.out_z(gated))))

    # ------------------------------------------------------------------ training
    def teacher_forced(self, grid: np.ndarray, mean: np.ndarray,
                       words_in: np.ndarray) -> tuple[Any, Any]:
        """``(logits [B, T, V], weights [B, T, L])`` given the true previous words
        ``words_in [B, T]`` (BOS first) and projected features."""
        h, c, keys = self.init_state(grid, mean)
        emb = self.embed(words_in)
        states, alphas, contexts = [], [], []
        for t in range(words_in.shape[1]):
            h, c, alpha, gated = self.step(emb[:, t], h, c, grid, keys, mean)
            states.append(h)
            alphas.append(alpha)
            contexts.append(gated)
        weights = A.stack(alphas, axis=1) if self.cfg.attention else np.stack(alphas, axis=1)
        return self.logits(emb, A.stack(states, axis=1), A.stack(contexts, axis=1)), weights

    def losses(self, grid: np.ndarray, mean: np.ndarray, words_in: np.ndarray,
               words_out: np.ndarray, mask: np.ndarray) -> tuple[Any, Any]:
        """``(cross-entropy, doubly-stochastic penalty)`` of a batch; the penalty is ``0``
        without attention. The training loss is ``xent + λ · penalty``."""
        logits, weights = self.teacher_forced(grid, mean, words_in)
        xent = nn.CrossEntropyLoss()(logits, words_out, mask)
        if not self.cfg.attention:
            return xent, A.tensor(np.zeros((), self.dtype))
        m = mask.astype(self.dtype)[:, :, None]
        coverage = (weights * m).sum(axis=1)  # [B, L]
        return xent, ((1.0 - coverage) ** 2).mean()
