"""Feed-forward layers: :class:`Linear`, :class:`Embedding`, :class:`Dropout`, :class:`LayerNorm`.

All follow the :mod:`pylstm.nn.module` convention: ``layer(x)`` (inference on arrays, recorded on
tensors), or explicitly ``out, tape = layer.forward(x, requires_grad=True)`` and
``dx = layer.backward(tape, dout)`` (parameter gradients are added into each ``p.grad``).
Random initialisation and dropout masks come from a per-layer ``numpy.random.Generator`` built
from ``seed``; the global numpy RNG is never used.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from pylstm.errors import LstmValueError, ShapeError

from ._validate import (
    as_float_dtype,
    check_float,
    check_int,
    check_shape,
    make_rng,
    positive_int,
)
from .module import Module, Parameter, check_tape

__all__ = ["Linear", "Embedding", "Dropout", "LayerNorm"]


@dataclass
class _LinearTape:
    x: np.ndarray


class Linear(Module):
    """``y = x @ weight.T + bias`` over the last axis (like ``torch.nn.Linear``).

    Parameters: ``weight`` ``[out_features, in_features]`` and ``bias`` ``[out_features]``,
    initialised uniform in ``±1/sqrt(in_features)``.
    """

    single_input = True

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        *,
        dtype: Any = np.float32,
        seed: int | np.random.Generator | None = None,
    ) -> None:
        super().__init__()
        self.in_features = positive_int(in_features, "in_features")
        self.out_features = positive_int(out_features, "out_features")
        self.dtype = as_float_dtype(dtype)
        rng = make_rng(seed)
        bound = 1.0 / np.sqrt(self.in_features)
        w = rng.uniform(-bound, bound, (self.out_features, self.in_features))
        self.weight = Parameter(w.astype(self.dtype))
        self.use_bias = bool(bias)
        if self.use_bias:
            b = rng.uniform(-bound, bound, (self.out_features,))
            self.bias = Parameter(b.astype(self.dtype))

    def extra_repr(self) -> str:
        return f"{self.in_features}, {self.out_features}, bias={self.use_bias}, dtype={self.dtype}"

    def forward(self, x: np.ndarray, requires_grad: bool = False) -> Any:
        """``x``: ``[..., in_features]`` -> ``[..., out_features]``."""
        x = check_float(x, "x", self.dtype)
        if x.ndim == 0 or x.shape[-1] != self.in_features:
            raise ShapeError(
                f"x: expected shape [..., {self.in_features}] (in_features), got {x.shape}"
            )
        # as one 2-D product: numpy's matmul of a [..., n] stack by a matrix does not reach
        # BLAS as one GEMM and runs an order of magnitude slower
        y = (x.reshape(-1, self.in_features) @ self.weight.data.T).reshape(
            x.shape[:-1] + (self.out_features,))
        if self.use_bias:
            y += self.bias.data
        return (y, _LinearTape(x)) if requires_grad else y

    def backward(self, tape: _LinearTape, dout: np.ndarray) -> np.ndarray:  # type: ignore[override]
        """Return ``dx`` shaped like ``x``; add ``dweight``/``dbias`` into ``grads``."""
        check_tape(tape, _LinearTape, "Linear")
        x = tape.x
        dout = check_float(dout, "dout", self.dtype)
        check_shape(dout, "dout", x.shape[:-1] + (self.out_features,))
        d2 = dout.reshape(-1, self.out_features)
        self.weight.grad += d2.T @ x.reshape(-1, self.in_features)
        if self.use_bias:
            self.bias.grad += d2.sum(axis=0)
        return (d2 @ self.weight.data).reshape(x.shape)


@dataclass
class _EmbeddingTape:
    ids: np.ndarray


class Embedding(Module):
    """Lookup table ``weight[ids]`` (like ``torch.nn.Embedding``), ``weight ~ N(0, 1)``.

    ``padding_idx`` (optional) has a zero row that receives no gradient. ``backward`` scatter-adds
    ``dout`` into ``grads["weight"]`` (repeated ids accumulate) and returns ``None``: the input is
    integer ids and has no gradient.
    """

    single_input = True

    def __init__(
        self,
        num_embeddings: int,
        embedding_dim: int,
        padding_idx: int | None = None,
        *,
        dtype: Any = np.float32,
        seed: int | np.random.Generator | None = None,
    ) -> None:
        super().__init__()
        self.num_embeddings = positive_int(num_embeddings, "num_embeddings")
        self.embedding_dim = positive_int(embedding_dim, "embedding_dim")
        self.dtype = as_float_dtype(dtype)
        if padding_idx is not None:
            if isinstance(padding_idx, bool) or not isinstance(padding_idx, (int, np.integer)):
                raise TypeError(f"padding_idx: expected an int or None, got {padding_idx!r}")
            if not -self.num_embeddings <= padding_idx < self.num_embeddings:
                raise LstmValueError(
                    f"padding_idx: expected in [-{self.num_embeddings}, {self.num_embeddings}), "
                    f"got {padding_idx}"
                )
            padding_idx = int(padding_idx) % self.num_embeddings
        self.padding_idx = padding_idx
        w = make_rng(seed).standard_normal((self.num_embeddings, self.embedding_dim))
        if padding_idx is not None:
            w[padding_idx] = 0.0
        self.weight = Parameter(w.astype(self.dtype))

    def extra_repr(self) -> str:
        return f"{self.num_embeddings}, {self.embedding_dim}, padding_idx={self.padding_idx}"

    def forward(self, ids: np.ndarray, requires_grad: bool = False) -> Any:
        """``ids``: integer array of any shape -> ``[*ids.shape, embedding_dim]``."""
        ids = check_int(ids, "ids")
        if ids.size and (ids.min() < 0 or ids.max() >= self.num_embeddings):
            raise LstmValueError(
                f"ids: expected values in [0, {self.num_embeddings}) (num_embeddings), "
                f"got min {ids.min()} and max {ids.max()}"
            )
        out = self.weight.data[ids]
        return (out, _EmbeddingTape(ids)) if requires_grad else out

    def backward(self, tape: _EmbeddingTape, dout: np.ndarray) -> None:  # type: ignore[override]
        """Scatter-add ``dout`` into ``grads["weight"]``; returns ``None``."""
        check_tape(tape, _EmbeddingTape, "Embedding")
        dout = check_float(dout, "dout", self.dtype)
        check_shape(dout, "dout", tape.ids.shape + (self.embedding_dim,))
        ids = tape.ids.reshape(-1)
        rows = dout.reshape(-1, self.embedding_dim)
        if self.padding_idx is not None:
            keep = ids != self.padding_idx
            ids, rows = ids[keep], rows[keep]
        _add_rows(self.weight.grad, ids, rows)
        return None


def _add_rows(target: np.ndarray, ids: np.ndarray, rows: np.ndarray) -> None:
    """``target[ids[k]] += rows[k]`` for every ``k``, repeated ids summed (``np.add.at``'s
    result, several times faster: one sort, then each id's rows summed by ``reduceat``)."""
    if len(ids) == 0:
        return
    order = np.argsort(ids, kind="stable")
    sorted_ids = ids[order]
    starts = np.flatnonzero(np.r_[True, sorted_ids[1:] != sorted_ids[:-1]])
    target[sorted_ids[starts]] += np.add.reduceat(rows[order], starts, axis=0)


@dataclass
class _DropoutTape:
    mask: np.ndarray | None  # None: identity (eval mode or p == 0)


class Dropout(Module):
    """Inverted dropout: in training mode zero each element with probability ``p`` and scale the
    rest by ``1/(1-p)``; identity in eval mode. The mask is kept in the tape."""

    single_input = True

    def __init__(self, p: float = 0.5, *, seed: int | np.random.Generator | None = None) -> None:
        super().__init__()
        if isinstance(p, bool) or not isinstance(p, (int, float, np.floating)):
            raise TypeError(f"p: expected a float in [0, 1], got {p!r}")
        if not 0.0 <= float(p) <= 1.0:
            raise LstmValueError(f"p: expected a probability in [0, 1], got {p}")
        self.p = float(p)
        self.rng = make_rng(seed)

    def extra_repr(self) -> str:
        return f"p={self.p}"

    def forward(self, x: np.ndarray, requires_grad: bool = False) -> Any:
        x = check_float(x, "x")
        if not self.training or self.p == 0.0:
            return (x, _DropoutTape(None)) if requires_grad else x
        if self.p == 1.0:
            mask = np.zeros(x.shape, dtype=x.dtype)
        else:
            keep = self.rng.random(x.shape) >= self.p
            mask = keep.astype(x.dtype) * x.dtype.type(1.0 / (1.0 - self.p))
        return (x * mask, _DropoutTape(mask)) if requires_grad else x * mask

    def backward(self, tape: _DropoutTape, dout: np.ndarray) -> np.ndarray:  # type: ignore[override]
        check_tape(tape, _DropoutTape, "Dropout")
        dout = check_float(dout, "dout")
        if tape.mask is None:
            return dout
        check_shape(dout, "dout", tape.mask.shape)
        return dout * tape.mask


@dataclass
class _LayerNormTape:
    xhat: np.ndarray
    rstd: np.ndarray


class LayerNorm(Module):
    """Layer normalisation over the trailing ``normalized_shape`` axes (like
    ``torch.nn.LayerNorm``): ``(x - mean) / sqrt(var + eps) * weight + bias`` with the biased
    variance. Parameters ``weight`` (ones) and ``bias`` (zeros) when ``elementwise_affine``."""

    single_input = True

    def __init__(
        self,
        normalized_shape: int | tuple[int, ...],
        eps: float = 1e-5,
        elementwise_affine: bool = True,
        bias: bool = True,
        *,
        dtype: Any = np.float32,
    ) -> None:
        super().__init__()
        if isinstance(normalized_shape, (int, np.integer)):
            normalized_shape = (int(normalized_shape),)
        self.normalized_shape = tuple(
            positive_int(n, "normalized_shape") for n in normalized_shape
        )
        if not self.normalized_shape:
            raise LstmValueError("normalized_shape: expected at least one axis, got ()")
        if not float(eps) > 0:
            raise LstmValueError(f"eps: expected > 0, got {eps}")
        self.eps = float(eps)
        self.dtype = as_float_dtype(dtype)
        self.elementwise_affine = bool(elementwise_affine)
        self.use_bias = self.elementwise_affine and bool(bias)
        if self.elementwise_affine:
            self.weight = Parameter(np.ones(self.normalized_shape, self.dtype))
        if self.use_bias:
            self.bias = Parameter(np.zeros(self.normalized_shape, self.dtype))

    def extra_repr(self) -> str:
        return f"{self.normalized_shape}, eps={self.eps}, affine={self.elementwise_affine}"

    def _axes(self) -> tuple[int, ...]:
        return tuple(range(-len(self.normalized_shape), 0))

    def forward(self, x: np.ndarray, requires_grad: bool = False) -> Any:
        x = check_float(x, "x", self.dtype)
        k = len(self.normalized_shape)
        if x.ndim < k or x.shape[-k:] != self.normalized_shape:
            raise ShapeError(
                f"x: expected shape [..., {', '.join(map(str, self.normalized_shape))}] "
                f"(normalized_shape), got {x.shape}"
            )
        axes = self._axes()
        mean = x.mean(axis=axes, keepdims=True)
        xc = x - mean
        var = (xc * xc).mean(axis=axes, keepdims=True)
        rstd = 1.0 / np.sqrt(var + self.dtype.type(self.eps))
        xhat = xc * rstd
        y = xhat
        if self.elementwise_affine:
            y = y * self.weight.data
        if self.use_bias:
            y = y + self.bias.data
        return (y, _LayerNormTape(xhat, rstd)) if requires_grad else y

    def backward(self, tape: _LayerNormTape, dout: np.ndarray) -> np.ndarray:  # type: ignore[override]
        check_tape(tape, _LayerNormTape, "LayerNorm")
        dout = check_float(dout, "dout", self.dtype)
        check_shape(dout, "dout", tape.xhat.shape)
        axes = self._axes()
        lead = tuple(range(dout.ndim - len(self.normalized_shape)))
        xhat = tape.xhat
        if self.use_bias:
            self.bias.grad += dout.sum(axis=lead)
        if self.elementwise_affine:
            self.weight.grad += (dout * xhat).sum(axis=lead)
            dxhat = dout * self.weight.data
        else:
            dxhat = dout
        m1 = dxhat.mean(axis=axes, keepdims=True)
        m2 = (dxhat * xhat).mean(axis=axes, keepdims=True)
        return tape.rstd * (dxhat - m1 - xhat * m2)
