"""Losses: masked softmax cross-entropy with label smoothing, MSE, Huber and quantile (pinball).

Convention (all losses):

* A loss is a layer (:class:`~pylstm.nn.Module`): ``loss(pred, target, mask)`` returns the value
  as a 0-d array in ``pred``'s dtype (a scalar :class:`~pylstm.autograd.Tensor` when ``pred`` is
  a tensor or inside :func:`pylstm.record`, ready for ``.backward()``).
* Explicitly: ``value, tape = loss.forward(pred, target, mask=None, requires_grad=True)``.
* ``dpred = loss.backward(tape, dvalue=1.0)``: gradient of ``dvalue * value`` with respect to
  ``pred``, same shape and dtype as ``pred``.
* ``reduction="mean"`` (default) divides by the number of *valid* elements (tokens for
  cross-entropy); ``"sum"`` does not. When nothing is valid the value is ``0.0`` and the gradient
  is zero (PyTorch returns NaN there).
* ``mask`` is bool (or 0/1 integer), ``True`` where an element counts; its shape is either the
  full shape or a leading prefix of it (e.g. ``[B, T]`` for predictions ``[B, T, D]``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from pylstm.errors import LstmValueError, ShapeError

from ._validate import check_array, check_float, check_int, check_mask
from .module import Module, check_tape

__all__ = ["Loss", "CrossEntropyLoss", "MSELoss", "HuberLoss", "QuantileLoss"]

Reduction = Literal["mean", "sum"]


@dataclass
class _LossTape:
    grad: np.ndarray  # d value / d pred for dvalue == 1


class Loss(Module):
    """Base class of the losses: see the module docstring for the convention."""

    single_input = True

    def __init__(self, reduction: Reduction = "mean") -> None:
        super().__init__()
        if reduction not in ("mean", "sum"):
            raise LstmValueError(f"reduction: expected 'mean' or 'sum', got {reduction!r}")
        self.reduction = reduction

    def forward(
        self,
        pred: np.ndarray,
        target: np.ndarray,
        mask: np.ndarray | None = None,
        requires_grad: bool = False,
    ) -> Any:
        raise NotImplementedError

    def backward(self, tape: _LossTape, dvalue: Any = 1.0) -> np.ndarray:  # type: ignore[override]
        """Gradient of ``dvalue * value`` with respect to ``pred``."""
        check_tape(tape, _LossTape, type(self).__name__)
        dv = 1.0 if dvalue is None else float(np.asarray(dvalue))
        if dv == 1.0:  # the usual seed: no copy of a [..., C] gradient
            return tape.grad
        return tape.grad * tape.grad.dtype.type(dv)

    def _denominator(self, n_valid: float) -> float:
        if self.reduction == "sum":
            return 1.0
        return float(n_valid) if n_valid > 0 else 0.0

    def _finish(
        self, per: np.ndarray, grad: np.ndarray, n_valid: float, requires_grad: bool,
        grad_scaled: bool = False,
    ) -> Any:
        """``per``/``grad``: per-element loss and gradient, already zero where invalid
        (``grad_scaled``: already divided by the reduction's denominator)."""
        denom = self._denominator(n_valid)
        value = np.asarray(0.0 if denom == 0.0 else per.sum(dtype=np.float64) / denom,
                           dtype=per.dtype)
        if not requires_grad:
            return value
        if grad_scaled:
            return value, _LossTape(grad)
        if denom == 0.0:
            return value, _LossTape(np.zeros_like(grad))
        return value, _LossTape(grad * grad.dtype.type(1.0 / denom))


def _prefix_mask(mask: Any, shape: tuple[int, ...]) -> np.ndarray:
    """A mask of shape ``shape`` or a leading prefix of it, broadcast to ``shape``."""
    mask = check_array(mask, "mask")
    k = mask.ndim
    if k > len(shape) or mask.shape != shape[:k]:
        raise ShapeError(
            f"mask: expected shape {shape} or a leading prefix of it, got {mask.shape}"
        )
    m = check_mask(mask, "mask", shape[:k])
    return np.broadcast_to(m.reshape(m.shape + (1,) * (len(shape) - k)), shape)


def _pair(pred: Any, target: Any) -> tuple[np.ndarray, np.ndarray]:
    pred = check_float(pred, "pred")
    target = check_float(target, "target", pred.dtype)
    if target.shape != pred.shape:
        raise ShapeError(f"target: expected shape {pred.shape} (pred's), got {target.shape}")
    return pred, target


class CrossEntropyLoss(Loss):
    """Softmax cross-entropy on logits ``[..., C]`` and integer targets ``[...]`` (like
    ``torch.nn.CrossEntropyLoss`` with class-index targets).

    Tokens whose target equals ``ignore_index`` or whose ``mask`` (shape ``[...]``) is ``False``
    are ignored. With ``label_smoothing = e`` the target distribution is
    ``(1 - e) * onehot + e / C``.
    """

    def __init__(
        self,
        ignore_index: int = -100,
        label_smoothing: float = 0.0,
        reduction: Reduction = "mean",
    ) -> None:
        super().__init__(reduction)
        if not 0.0 <= float(label_smoothing) <= 1.0:
            raise LstmValueError(f"label_smoothing: expected in [0, 1], got {label_smoothing}")
        self.ignore_index = int(ignore_index)
        self.label_smoothing = float(label_smoothing)

    def forward(  # type: ignore[override]
        self,
        logits: np.ndarray,
        target: np.ndarray,
        mask: np.ndarray | None = None,
        requires_grad: bool = False,
    ) -> Any:
        logits = check_float(logits, "logits")
        target = check_int(target, "target")
        if logits.ndim < 1 or target.shape != logits.shape[:-1]:
            raise ShapeError(
                f"target: expected shape {logits.shape[:-1]} (logits without the class axis), "
                f"got {target.shape}"
            )
        n_classes = logits.shape[-1]
        valid = target != self.ignore_index
        if mask is not None:
            valid = valid & check_mask(mask, "mask", target.shape)
        tv = target[valid]
        if tv.size and (tv.min() < 0 or tv.max() >= n_classes):
            raise LstmValueError(
                f"target: expected class indices in [0, {n_classes}) or ignore_index "
                f"({self.ignore_index}), got min {tv.min()} and max {tv.max()}"
            )
        safe_t = np.where(valid, target, 0)
        # Few passes over the [..., C] arrays (they dominate a large-vocabulary decoder's step):
        # log-probabilities are never materialised, exp is taken in place and becomes the
        # gradient in place.
        shifted = logits - logits.max(axis=-1, keepdims=True)
        picked = np.take_along_axis(shifted, safe_t[..., None], axis=-1)[..., 0]
        mean_shifted = shifted.mean(axis=-1) if self.label_smoothing else None
        exp = np.exp(shifted, out=shifted)
        sumexp = exp.sum(axis=-1, keepdims=True)
        log_z = np.log(sumexp)[..., 0]
        nll = log_z - picked
        eps = self.label_smoothing
        per = (1.0 - eps) * nll
        if mean_shifted is not None:
            per = per - eps * (mean_shifted - log_z)
        per = np.where(valid, per, 0).astype(logits.dtype)
        n_valid = int(valid.sum())
        if not requires_grad:
            return self._finish(per, np.empty(0, logits.dtype), n_valid, False)
        denom = self._denominator(n_valid)
        scale = 0.0 if denom == 0.0 else 1.0 / denom
        grad = exp
        grad *= (scale / sumexp).astype(grad.dtype)  # softmax / denom
        if eps:
            grad -= grad.dtype.type(scale * eps / n_classes)
        at_t = np.take_along_axis(grad, safe_t[..., None], axis=-1)
        np.put_along_axis(grad, safe_t[..., None], at_t - grad.dtype.type(scale * (1.0 - eps)),
                          axis=-1)
        grad[~valid] = 0
        return self._finish(per, grad, n_valid, requires_grad, grad_scaled=True)


class MSELoss(Loss):
    """Mean squared error ``(pred - target)**2`` over valid elements."""

    def forward(  # type: ignore[override]
        self,
        pred: np.ndarray,
        target: np.ndarray,
        mask: np.ndarray | None = None,
        requires_grad: bool = False,
    ) -> Any:
        pred, target = _pair(pred, target)
        diff = pred - target
        m = None if mask is None else _prefix_mask(mask, pred.shape)
        if m is not None:
            diff = np.where(m, diff, 0)
        n = diff.size if m is None else int(m.sum())
        return self._finish(diff * diff, 2 * diff, n, requires_grad)


class HuberLoss(Loss):
    """Huber loss (like ``torch.nn.HuberLoss``): ``0.5 d**2`` if ``|d| <= delta`` else
    ``delta * (|d| - 0.5 delta)``, with ``d = pred - target``."""

    def __init__(self, delta: float = 1.0, reduction: Reduction = "mean") -> None:
        super().__init__(reduction)
        if not float(delta) > 0:
            raise LstmValueError(f"delta: expected > 0, got {delta}")
        self.delta = float(delta)

    def forward(  # type: ignore[override]
        self,
        pred: np.ndarray,
        target: np.ndarray,
        mask: np.ndarray | None = None,
        requires_grad: bool = False,
    ) -> Any:
        pred, target = _pair(pred, target)
        d = pred - target
        m = None if mask is None else _prefix_mask(mask, pred.shape)
        if m is not None:
            d = np.where(m, d, 0)
        delta = pred.dtype.type(self.delta)
        ad = np.abs(d)
        small = ad <= delta
        per = np.where(small, 0.5 * d * d, delta * (ad - 0.5 * delta))
        grad = np.where(small, d, delta * np.sign(d))
        n = d.size if m is None else int(m.sum())
        return self._finish(per, grad, n, requires_grad)


class QuantileLoss(Loss):
    """Pinball loss for several quantiles at once.

    ``pred``: ``[..., K]`` with ``K = len(quantiles)``; ``target``: ``[...]`` (shared by all
    quantiles) or ``[..., K]``. Per element, with ``e = target - pred_k``:
    ``max(q_k * e, (q_k - 1) * e)``. The mean runs over valid elements *and* quantiles.
    """

    def __init__(self, quantiles: Sequence[float], reduction: Reduction = "mean") -> None:
        super().__init__(reduction)
        if isinstance(quantiles, (str, bytes)) or not all(
                isinstance(q, (int, float, np.floating, np.integer)) and not isinstance(q, bool)
                for q in quantiles):
            raise LstmValueError(f"quantiles: expected a sequence of numbers, got {quantiles!r}")
        qs = np.asarray(list(quantiles), dtype=np.float64)
        if qs.ndim != 1 or qs.size == 0:
            raise LstmValueError(f"quantiles: expected a non-empty sequence, got {quantiles!r}")
        if np.any(qs <= 0) or np.any(qs >= 1):
            raise LstmValueError(f"quantiles: expected values in (0, 1), got {qs.tolist()}")
        self.quantiles = qs

    def forward(  # type: ignore[override]
        self,
        pred: np.ndarray,
        target: np.ndarray,
        mask: np.ndarray | None = None,
        requires_grad: bool = False,
    ) -> Any:
        pred = check_float(pred, "pred")
        k = self.quantiles.size
        if pred.ndim < 1 or pred.shape[-1] != k:
            raise ShapeError(
                f"pred: expected shape [..., {k}] (one column per quantile), got {pred.shape}"
            )
        target = check_float(target, "target", pred.dtype)
        if target.shape == pred.shape[:-1]:
            target = target[..., None]
        elif target.shape != pred.shape:
            raise ShapeError(
                f"target: expected shape {pred.shape[:-1]} or {pred.shape}, got {target.shape}"
            )
        q = self.quantiles.astype(pred.dtype)
        e = target - pred
        per = np.maximum(q * e, (q - 1) * e)
        grad = np.where(e > 0, -q, 1 - q).astype(pred.dtype)
        m = None if mask is None else _prefix_mask(mask, pred.shape)
        if m is not None:
            per = np.where(m, per, 0)
            grad = np.where(m, grad, 0)
        n = per.size if m is None else int(m.sum())
        return self._finish(per, grad, n, requires_grad)
