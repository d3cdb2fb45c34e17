"""Differentiable array functions on :class:`~pylstm.autograd.Tensor` (and plain arrays).

Each function computes with numpy and records one node whose backward is written out here;
arguments may be tensors, arrays or Python numbers. Broadcasting follows numpy, and the
gradient of a broadcast input is summed back to the input's shape. The operators of
:class:`Tensor` (``+ - * / @ ** -x x[i]``) and its methods (``sum``, ``mean``, ``reshape``,
``transpose``, ``T``) call these functions.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from pylstm.errors import DTypeError, LstmValueError, ShapeError

from .tensor import Tensor, make_outputs

__all__ = [
    "tensor", "add", "sub", "mul", "div", "neg", "power", "matmul", "exp", "log", "tanh",
    "sigmoid", "relu", "abs", "sqrt", "sum", "mean", "reshape", "transpose", "getitem", "concat",
    "stack", "where", "softmax", "log_softmax", "masked_softmax", "maximum", "clip_values",
]

Arrayish = Any


def tensor(data: Arrayish, requires_grad: bool = False, dtype: Any = None) -> Tensor:
    """A new tensor (a leaf) holding ``data`` (copied only when ``dtype`` converts it)."""
    arr = np.asarray(data.data if isinstance(data, Tensor) else data, dtype=dtype)
    return Tensor(arr, requires_grad=requires_grad)


def _t(x: Arrayish) -> Tensor:
    return x if isinstance(x, Tensor) else Tensor(np.asarray(x))


def _float_pair(a: Tensor, b: Tensor) -> tuple[np.ndarray, np.ndarray]:
    """The operands' arrays; Python numbers take the tensor's float dtype."""
    da, db = a.data, b.data
    if da.dtype.kind == "f" and db.dtype != da.dtype and db.ndim == 0:
        db = db.astype(da.dtype)
    elif db.dtype.kind == "f" and da.dtype != db.dtype and da.ndim == 0:
        da = da.astype(db.dtype)
    return da, db


def unbroadcast(g: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Sum ``g`` over the axes that broadcasting added to or stretched in ``shape``."""
    if g.shape == shape:
        return g
    lead = g.ndim - len(shape)
    if lead:
        g = g.sum(axis=tuple(range(lead)))
    axes = tuple(i for i, n in enumerate(shape) if n == 1 and g.shape[i] != 1)
    if axes:
        g = g.sum(axis=axes, keepdims=True)
    return g.reshape(shape)


def _unary(x: Arrayish, out: np.ndarray, dfn: Any, name: str) -> Tensor:
    xt = _t(x)
    return make_outputs([out], [xt], lambda g: (dfn(g[0]),), name)[0]


def add(a: Arrayish, b: Arrayish) -> Tensor:
    """``a + b``."""
    at, bt = _t(a), _t(b)
    da, db = _float_pair(at, bt)
    return make_outputs([da + db], [at, bt], lambda g: (unbroadcast(g[0], da.shape),
                                                         unbroadcast(g[0], db.shape)), "add")[0]


def sub(a: Arrayish, b: Arrayish) -> Tensor:
    """``a - b``."""
    at, bt = _t(a), _t(b)
    da, db = _float_pair(at, bt)
    return make_outputs([da - db], [at, bt], lambda g: (unbroadcast(g[0], da.shape),
                                                         unbroadcast(-g[0], db.shape)), "sub")[0]


def mul(a: Arrayish, b: Arrayish) -> Tensor:
    """``a * b``."""
    at, bt = _t(a), _t(b)
    da, db = _float_pair(at, bt)
    return make_outputs([da * db], [at, bt], lambda g: (unbroadcast(g[0] * db, da.shape),
                                                         unbroadcast(g[0] * da, db.shape)),
                        "mul")[0]


def div(a: Arrayish, b: Arrayish) -> Tensor:
    """``a / b``."""
    at, bt = _t(a), _t(b)
    da, db = _float_pair(at, bt)
    out = da / db
    return make_outputs([out], [at, bt], lambda g: (unbroadcast(g[0] / db, da.shape),
                                                     unbroadcast(-g[0] * out / db, db.shape)),
                        "div")[0]


def neg(x: Arrayish) -> Tensor:
    """``-x``."""
    return _unary(x, -_t(x).data, lambda g: -g, "neg")


def power(x: Arrayish, exponent: float) -> Tensor:
    """``x ** exponent`` for a constant number ``exponent``."""
    if isinstance(exponent, Tensor) or not np.isscalar(exponent):
        raise LstmValueError(f"exponent: expected a number, got {type(exponent).__name__}")
    d = _t(x).data
    e = d.dtype.type(exponent) if d.dtype.kind == "f" else exponent
    return _unary(x, d ** e, lambda g: g * e * d ** (e - 1), "power")


def matmul(a: Arrayish, b: Arrayish) -> Tensor:
    """``a @ b`` with numpy's rules (1-D operands, batched stacks)."""
    at, bt = _t(a), _t(b)
    da, db = at.data, bt.data
    if da.ndim == 0 or db.ndim == 0:
        raise ShapeError(f"matmul: expected arrays of at least one dimension, got shapes "
                         f"{da.shape} and {db.shape}")

    def backward(g: tuple) -> tuple:
        go = g[0]
        a2 = da[None, :] if da.ndim == 1 else da
        b2 = db[:, None] if db.ndim == 1 else db
        g2 = go
        if da.ndim == 1:
            g2 = np.expand_dims(g2, -2)
        if db.ndim == 1:
            g2 = np.expand_dims(g2, -1)
        ga = g2 @ np.swapaxes(b2, -1, -2)
        gb = np.swapaxes(a2, -1, -2) @ g2
        if da.ndim == 1:
            ga = ga.squeeze(-2)
        if db.ndim == 1:
            gb = gb.squeeze(-1)
        return unbroadcast(ga, da.shape), unbroadcast(gb, db.shape)

    return make_outputs([da @ db], [at, bt], backward, "matmul")[0]


def exp(x: Arrayish) -> Tensor:
    """``e ** x``."""
    out = np.exp(_t(x).data)
    return _unary(x, out, lambda g: g * out, "exp")


def log(x: Arrayish) -> Tensor:
    """Natural logarithm."""
    d = _t(x).data
    return _unary(x, np.log(d), lambda g: g / d, "log")


def tanh(x: Arrayish) -> Tensor:
    """Hyperbolic tangent."""
    out = np.tanh(_t(x).data)
    return _unary(x, out, lambda g: g * (1 - out * out), "tanh")


def sigmoid(x: Arrayish) -> Tensor:
    """Logistic sigmoid, computed without overflow for large ``|x|``."""
    d = _t(x).data
    e = np.exp(-np.abs(d))
    out = np.where(d >= 0, 1 / (1 + e), e / (1 + e)).astype(d.dtype, copy=False)
    return _unary(x, out, lambda g: g * out * (1 - out), "sigmoid")


def relu(x: Arrayish) -> Tensor:
    """``max(x, 0)``."""
    d = _t(x).data
    return _unary(x, np.maximum(d, 0), lambda g: g * (d > 0), "relu")


def abs(x: Arrayish) -> Tensor:  # noqa: A001 (the numpy name)
    """``|x|`` (gradient 0 at 0)."""
    d = _t(x).data
    return _unary(x, np.abs(d), lambda g: g * np.sign(d), "abs")


def sqrt(x: Arrayish) -> Tensor:
    """Square root."""
    out = np.sqrt(_t(x).data)
    return _unary(x, out, lambda g: g / (2 * out), "sqrt")


def maximum(a: Arrayish, b: Arrayish) -> Tensor:
    """Element-wise maximum (ties send the gradient to ``a``)."""
    at, bt = _t(a), _t(b)
    da, db = _float_pair(at, bt)
    pick = da >= db
    return make_outputs([np.where(pick, da, db)], [at, bt],
                        lambda g: (unbroadcast(g[0] * pick, da.shape),
                                   unbroadcast(g[0] * ~pick, db.shape)), "maximum")[0]


def clip_values(x: Arrayish, low: float, high: float) -> Tensor:
    """``x`` limited to ``[low, high]`` (no gradient where it was limited)."""
    d = _t(x).data
    inside = (d >= low) & (d <= high)
    return _unary(x, np.clip(d, low, high), lambda g: g * inside, "clip")


def _axes(axis: int | Sequence[int] | None, ndim: int) -> tuple[int, ...]:
    if axis is None:
        return tuple(range(ndim))
    seq = (axis,) if isinstance(axis, (int, np.integer)) else tuple(axis)
    out = []
    for a in seq:
        if not -ndim <= a < ndim:
            raise ShapeError(f"axis: expected in [-{ndim}, {ndim}), got {a}")
        out.append(int(a) % ndim)
    return tuple(out)


def sum(x: Arrayish, axis: int | Sequence[int] | None = None,  # noqa: A001
        keepdims: bool = False) -> Tensor:
    """Sum over ``axis`` (all axes by default)."""
    xt = _t(x)
    d = xt.data
    axes = _axes(axis, d.ndim)

    def backward(g: tuple) -> tuple:
        go = g[0] if keepdims else np.expand_dims(g[0], axes)
        return (np.broadcast_to(go, d.shape),)

    return make_outputs([np.sum(d, axis=axes, keepdims=keepdims)], [xt], backward, "sum")[0]


def mean(x: Arrayish, axis: int | Sequence[int] | None = None,
         keepdims: bool = False) -> Tensor:
    """Mean over ``axis`` (all axes by default)."""
    d = _t(x).data
    count = int(np.prod([d.shape[a] for a in _axes(axis, d.ndim)], dtype=np.int64))
    return div(sum(x, axis, keepdims), d.dtype.type(max(count, 1)) if d.dtype.kind == "f"
               else float(max(count, 1)))


def reshape(x: Arrayish, *shape: Any) -> Tensor:
    """The same values in another shape."""
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = tuple(shape[0])
    xt = _t(x)
    d = xt.data
    return make_outputs([d.reshape(shape)], [xt], lambda g: (g[0].reshape(d.shape),),
                        "reshape")[0]


def transpose(x: Arrayish, *axes: int) -> Tensor:
    """Permute the axes (reverse them when none are given)."""
    if len(axes) == 1 and isinstance(axes[0], (tuple, list)):
        axes = tuple(axes[0])
    xt = _t(x)
    d = xt.data
    perm = tuple(axes) if axes else tuple(reversed(range(d.ndim)))
    if sorted(perm) != list(range(d.ndim)):
        raise ShapeError(f"axes: expected a permutation of {d.ndim} axes, got {perm}")
    inverse = tuple(np.argsort(perm))
    return make_outputs([d.transpose(perm)], [xt], lambda g: (g[0].transpose(inverse),),
                        "transpose")[0]


def getitem(x: Arrayish, index: Any) -> Tensor:
    """``x[index]``: basic and integer-array indexing; the gradient scatter-adds back."""
    xt = _t(x)
    d = xt.data
    if isinstance(index, Tensor):
        index = index.data
    if isinstance(index, tuple):
        index = tuple(i.data if isinstance(i, Tensor) else i for i in index)

    def backward(g: tuple) -> tuple:
        out = np.zeros(d.shape, g[0].dtype)
        np.add.at(out, index, g[0])
        return (out,)

    return make_outputs([d[index]], [xt], backward, "getitem")[0]


def concat(tensors: Sequence[Arrayish], axis: int = 0) -> Tensor:
    """Join along an existing axis."""
    ts = [_t(t) for t in tensors]
    if not ts:
        raise ShapeError("tensors: expected at least one")
    datas = [t.data for t in ts]
    out = np.concatenate(datas, axis=axis)
    ax = axis % out.ndim
    bounds = np.cumsum([a.shape[ax] for a in datas])[:-1]
    return make_outputs([out], ts, lambda g: tuple(np.split(g[0], bounds, axis=ax)), "concat")[0]


def stack(tensors: Sequence[Arrayish], axis: int = 0) -> Tensor:
    """Join along a new axis."""
    ts = [_t(t) for t in tensors]
    if not ts:
        raise ShapeError("tensors: expected at least one")
    out = np.stack([t.data for t in ts], axis=axis)
    ax = axis % out.ndim
    return make_outputs([out], ts, lambda g: tuple(np.moveaxis(g[0], ax, 0)), "stack")[0]


def where(condition: Any, a: Arrayish, b: Arrayish) -> Tensor:
    """``a`` where ``condition`` holds, else ``b`` (``condition`` is a constant mask)."""
    cond = np.asarray(condition.data if isinstance(condition, Tensor) else condition)
    if cond.dtype != np.bool_:
        raise DTypeError(f"condition: expected a bool array, got {cond.dtype}")
    at, bt = _t(a), _t(b)
    da, db = _float_pair(at, bt)
    return make_outputs([np.where(cond, da, db)], [at, bt],
                        lambda g: (unbroadcast(np.where(cond, g[0], 0), da.shape),
                                   unbroadcast(np.where(cond, 0, g[0]), db.shape)), "where")[0]


def softmax(x: Arrayish, axis: int = -1) -> Tensor:
    """Softmax along ``axis``."""
    return masked_softmax(x, None, axis)


def masked_softmax(x: Arrayish, mask: Any, axis: int = -1) -> Tensor:
    """Softmax along ``axis`` over the entries where ``mask`` (bool, broadcast to ``x``) holds;
    masked entries get 0, and a slice with nothing unmasked is all zeros."""
    xt = _t(x)
    d = xt.data
    if mask is None:
        e = np.exp(d - d.max(axis=axis, keepdims=True))
        out = e / e.sum(axis=axis, keepdims=True)
    else:
        m = np.broadcast_to(np.asarray(mask.data if isinstance(mask, Tensor) else mask), d.shape)
        if m.dtype != np.bool_:
            raise DTypeError(f"mask: expected a bool array, got {m.dtype}")
        mx = np.where(m, d, -np.inf).max(axis=axis, keepdims=True)
        mx = np.where(np.isfinite(mx), mx, 0)
        e = np.where(m, np.exp(np.where(m, d, mx) - mx), 0).astype(d.dtype)
        z = e.sum(axis=axis, keepdims=True)
        out = np.divide(e, z, out=np.zeros_like(e), where=z > 0)

    def backward(g: tuple) -> tuple:
        go = g[0]
        return (out * (go - (go * out).sum(axis=axis, keepdims=True)),)

    return make_outputs([out], [xt], backward, "softmax")[0]


def log_softmax(x: Arrayish, axis: int = -1) -> Tensor:
    """``log(softmax(x))``, computed stably."""
    xt = _t(x)
    d = xt.data
    shifted = d - d.max(axis=axis, keepdims=True)
    out = shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))
    p = np.exp(out)

    def backward(g: tuple) -> tuple:
        return (g[0] - p * g[0].sum(axis=axis, keepdims=True),)

    return make_outputs([out], [xt], backward, "log_softmax")[0]


def _install_operators() -> None:
    """Tensor's operators and methods, defined by the functions above."""
    T = Tensor
    T.__add__ = lambda s, o: add(s, o)  # type: ignore[method-assign]
    T.__radd__ = lambda s, o: add(o, s)  # type: ignore[method-assign]
    T.__sub__ = lambda s, o: sub(s, o)  # type: ignore[method-assign]
    T.__rsub__ = lambda s, o: sub(o, s)  # type: ignore[method-assign]
    T.__mul__ = lambda s, o: mul(s, o)  # type: ignore[method-assign]
    T.__rmul__ = lambda s, o: mul(o, s)  # type: ignore[method-assign]
    T.__truediv__ = lambda s, o: div(s, o)  # type: ignore[method-assign]
    T.__rtruediv__ = lambda s, o: div(o, s)  # type: ignore[method-assign]
    T.__matmul__ = lambda s, o: matmul(s, o)  # type: ignore[method-assign]
    T.__rmatmul__ = lambda s, o: matmul(o, s)  # type: ignore[method-assign]
    T.__neg__ = lambda s: neg(s)  # type: ignore[method-assign]
    T.__pow__ = lambda s, e: power(s, e)  # type: ignore[method-assign]
    T.__getitem__ = lambda s, i: getitem(s, i)  # type: ignore[method-assign]
    T.sum = lambda s, axis=None, keepdims=False: sum(s, axis, keepdims)  # type: ignore[attr-defined]
    T.mean = lambda s, axis=None, keepdims=False: mean(s, axis, keepdims)  # type: ignore[attr-defined]
    T.reshape = lambda s, *shape: reshape(s, *shape)  # type: ignore[attr-defined]
    T.transpose = lambda s, *axes: transpose(s, *axes)  # type: ignore[attr-defined]
    T.T = property(lambda s: transpose(s))  # type: ignore[attr-defined]
    T.tanh = lambda s: tanh(s)  # type: ignore[attr-defined]
    T.sigmoid = lambda s: sigmoid(s)  # type: ignore[attr-defined]
    T.exp = lambda s: exp(s)  # type: ignore[attr-defined]
    T.log = lambda s: log(s)  # type: ignore[attr-defined]


_install_operators()
