"""Attention over a key/value sequence with key masks: dot, general (Luong) and additive
(Bahdanau) scores.

``context, weights = attn(query, keys, values=None, mask=None)`` (recorded on tensors or inside
:func:`pylstm.record`); explicitly
``(context, weights), tape = attn.forward(..., requires_grad=True)`` and
``dquery, dkeys, dvalues = attn.backward(tape, (dcontext, dweights))``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from pylstm.errors import LstmValueError, ShapeError

from ._validate import as_float_dtype, check_float, check_mask, make_rng, positive_int
from .module import Module, Parameter, check_tape

__all__ = ["Attention"]

Score = Literal["dot", "general", "additive"]


@dataclass
class _AttentionTape:
    q: np.ndarray  # [B, Tq, Dq]
    k: np.ndarray  # [B, Tk, Dk]
    v: np.ndarray  # [B, Tk, Dv]
    weights: np.ndarray  # [B, Tq, Tk]
    values_is_keys: bool
    single_query: bool
    qw: np.ndarray | None = None  # general: q @ W
    h: np.ndarray | None = None  # additive: tanh(...) [B, Tq, Tk, A]


class Attention(Module):
    """Score each key against each query, softmax over the (unmasked) keys, average the values.

    * ``score="dot"``: ``s = q·k`` (``query_dim == key_dim``), times ``1/sqrt(key_dim)`` when
      ``scaled``. No parameters.
    * ``score="general"`` (Luong): ``s = q @ weight @ k``; ``weight``: ``[query_dim, key_dim]``.
    * ``score="additive"`` (Bahdanau): ``s = v · tanh(query_weight @ q + key_weight @ k + bias)``;
      ``query_weight`` ``[attn_dim, query_dim]``, ``key_weight`` ``[attn_dim, key_dim]``, ``bias``
      ``[attn_dim]`` (if ``bias``), ``v`` ``[attn_dim]``.

    Shapes: ``query`` ``[B, Dq]`` (one query per row, e.g. a decoder step) or ``[B, Tq, Dq]``;
    ``keys`` ``[B, Tk, Dk]``; ``values`` ``[B, Tk, Dv]`` (default: ``keys``); ``mask`` ``[B, Tk]``
    bool, ``True`` where a key may be attended to. A row whose keys are all masked gets zero
    weights and a zero context. Outputs: ``context`` ``[B, (Tq,) Dv]``, ``weights``
    ``[B, (Tq,) Tk]``.
    """

    def __init__(
        self,
        query_dim: int,
        key_dim: int | None = None,
        *,
        score: Score = "dot",
        attn_dim: int | None = None,
        scaled: bool = False,
        bias: bool = True,
        dtype: Any = np.float32,
        seed: int | np.random.Generator | None = None,
    ) -> None:
        super().__init__()
        self.query_dim = positive_int(query_dim, "query_dim")
        self.key_dim = positive_int(key_dim, "key_dim") if key_dim is not None else self.query_dim
        if score not in ("dot", "general", "additive"):
            raise LstmValueError(
                f"score: expected 'dot', 'general' or 'additive', got {score!r}"
            )
        self.score = score
        self.dtype = as_float_dtype(dtype)
        self.scaled = bool(scaled)
        rng = make_rng(seed)
        if score == "dot":
            if self.query_dim != self.key_dim:
                raise LstmValueError(
                    f"key_dim: dot attention needs key_dim == query_dim ({self.query_dim}), "
                    f"got {self.key_dim}"
                )
        elif score == "general":
            bound = 1.0 / np.sqrt(self.key_dim)
            w = rng.uniform(-bound, bound, (self.query_dim, self.key_dim))
            self.weight = Parameter(w.astype(self.dtype))
        else:
            self.attn_dim = positive_int(attn_dim, "attn_dim") if attn_dim else self.key_dim
            a = self.attn_dim
            bq, bk, bv = (1.0 / np.sqrt(n) for n in (self.query_dim, self.key_dim, a))
            self.query_weight = Parameter(
                rng.uniform(-bq, bq, (a, self.query_dim)).astype(self.dtype))
            self.key_weight = Parameter(
                rng.uniform(-bk, bk, (a, self.key_dim)).astype(self.dtype))
            self.use_bias = bool(bias)
            if self.use_bias:
                self.bias = Parameter(rng.uniform(-bk, bk, (a,)).astype(self.dtype))
            self.v = Parameter(rng.uniform(-bv, bv, (a,)).astype(self.dtype))

    def extra_repr(self) -> str:
        return f"{self.query_dim}, {self.key_dim}, score={self.score!r}, dtype={self.dtype}"

    def _scale(self) -> float:
        return 1.0 / np.sqrt(self.key_dim) if self.scaled and self.score != "additive" else 1.0

    def forward(
        self,
        query: np.ndarray,
        keys: np.ndarray,
        values: np.ndarray | None = None,
        mask: np.ndarray | None = None,
        requires_grad: bool = False,
    ) -> Any:
        """Return ``((context, weights), tape)``."""
        query = check_float(query, "query", self.dtype)
        keys = check_float(keys, "keys", self.dtype)
        if keys.ndim != 3 or keys.shape[2] != self.key_dim:
            raise ShapeError(f"keys: expected shape [B, Tk, {self.key_dim}], got {keys.shape}")
        b, tk, _ = keys.shape
        if query.ndim not in (2, 3) or query.shape[0] != b or query.shape[-1] != self.query_dim:
            raise ShapeError(
                f"query: expected shape [{b}, {self.query_dim}] or [{b}, Tq, {self.query_dim}], "
                f"got {query.shape}"
            )
        single = query.ndim == 2
        q = query[:, None, :] if single else query
        values_is_keys = values is None
        if values is None:
            v = keys
        else:
            v = check_float(values, "values", self.dtype)
            if v.ndim != 3 or v.shape[:2] != (b, tk):
                raise ShapeError(f"values: expected shape [{b}, {tk}, Dv], got {v.shape}")
        m = None if mask is None else check_mask(mask, "mask", (b, tk))

        qw = h = None
        if self.score == "dot":
            s = q @ keys.transpose(0, 2, 1)
        elif self.score == "general":
            qw = q @ self.weight.data
            s = qw @ keys.transpose(0, 2, 1)
        else:
            pq = q @ self.query_weight.data.T  # [B, Tq, A]
            pk = keys @ self.key_weight.data.T  # [B, Tk, A]
            if self.use_bias:
                pk = pk + self.bias.data
            h = np.tanh(pq[:, :, None, :] + pk[:, None, :, :])  # [B, Tq, Tk, A]
            s = h @ self.v.data
        scale = self._scale()
        if scale != 1.0:
            s = s * self.dtype.type(scale)
        weights = _masked_softmax(s, m)
        context = weights @ v
        tape = (
            _AttentionTape(q, keys, v, weights, values_is_keys, single, qw, h)
            if requires_grad
            else None
        )
        out = (context[:, 0], weights[:, 0]) if single else (context, weights)
        return (out, tape) if requires_grad else out

    def backward(  # type: ignore[override]
        self,
        tape: _AttentionTape,
        dcontext: Any,
        dweights: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Return ``(dquery, dkeys, dvalues)``; ``dvalues`` is ``None`` when ``values`` defaulted
        to ``keys`` (its gradient is then included in ``dkeys``)."""
        check_tape(tape, _AttentionTape, "Attention")
        if isinstance(dcontext, tuple):  # the outputs' structure: (dcontext, dweights)
            if dweights is not None or len(dcontext) != 2:
                raise LstmValueError("dcontext: expected an array or a pair (dcontext, dweights)")
            dcontext, dweights = dcontext
        q, k, v, w = tape.q, tape.k, tape.v, tape.weights
        if dcontext is None:
            dcontext = np.zeros(((w.shape[0],) if tape.single_query else w.shape[:2])
                                + (v.shape[2],), v.dtype)
        b, tq, tk = w.shape
        lead = (b,) if tape.single_query else (b, tq)
        dcontext = check_float(dcontext, "dcontext", self.dtype)
        if dcontext.shape != lead + (v.shape[2],):
            raise ShapeError(
                f"dcontext: expected shape {lead + (v.shape[2],)}, got {dcontext.shape}"
            )
        dc = dcontext[:, None, :] if tape.single_query else dcontext
        dw = dc @ v.transpose(0, 2, 1)  # [B, Tq, Tk]
        if dweights is not None:
            dweights = check_float(dweights, "dweights", self.dtype)
            if dweights.shape != lead + (tk,):
                raise ShapeError(
                    f"dweights: expected shape {lead + (tk,)}, got {dweights.shape}"
                )
            dw = dw + (dweights[:, None, :] if tape.single_query else dweights)
        dv = w.transpose(0, 2, 1) @ dc  # [B, Tk, Dv]
        ds = w * (dw - (dw * w).sum(axis=-1, keepdims=True))
        scale = self._scale()
        if scale != 1.0:
            ds = ds * self.dtype.type(scale)

        if self.score == "dot":
            dq = ds @ k
            dk = ds.transpose(0, 2, 1) @ q
        elif self.score == "general":
            wgen = self.weight.data
            dqw = ds @ k  # [B, Tq, Dk]
            self.weight.grad += np.einsum("bqi,bqj->ij", q, dqw)
            dq = dqw @ wgen.T
            dk = ds.transpose(0, 2, 1) @ tape.qw
        else:
            h = tape.h
            assert h is not None
            self.v.grad += np.einsum("bqka,bqk->a", h, ds)
            dpre = ds[..., None] * self.v.data * (1 - h * h)  # [B, Tq, Tk, A]
            dpq = dpre.sum(axis=2)  # [B, Tq, A]
            dpk = dpre.sum(axis=1)  # [B, Tk, A]
            self.query_weight.grad += np.einsum("bqa,bqd->ad", dpq, q)
            self.key_weight.grad += np.einsum("bka,bkd->ad", dpk, k)
            if self.use_bias:
                self.bias.grad += dpk.sum(axis=(0, 1))
            dq = dpq @ self.query_weight.data
            dk = dpk @ self.key_weight.data
        if tape.single_query:
            dq = dq[:, 0]
        if tape.values_is_keys:
            return dq, dk + dv, None
        return dq, dk, dv


def _masked_softmax(s: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """Softmax over the last axis of ``s`` ``[B, Tq, Tk]`` restricted to ``mask`` ``[B, Tk]``;
    all-masked rows give zeros."""
    if mask is None:
        e = np.exp(s - s.max(axis=-1, keepdims=True))
        return e / e.sum(axis=-1, keepdims=True)
    m = mask[:, None, :]
    neg = np.where(m, s, -np.inf)
    mx = neg.max(axis=-1, keepdims=True)
    mx = np.where(np.isfinite(mx), mx, 0)
    e = np.where(m, np.exp(np.where(m, s, mx) - mx), 0).astype(s.dtype)
    z = e.sum(axis=-1, keepdims=True)
    return np.divide(e, z, out=np.zeros_like(e), where=z > 0)
