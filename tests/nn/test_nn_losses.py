"""Losses: finite differences (with masks), reference values (torch when available), errors."""

from __future__ import annotations

import numpy as np
import pytest
from _nn_gradcheck import assert_close, numeric_grad

from pylstm import nn

F64 = np.float64


def _rand(shape, seed):
    return np.random.default_rng(seed).standard_normal(shape)


def _fd_loss(loss, pred, *args, dvalue=1.7, **kwargs):
    value, tape = loss.forward(pred, *args, requires_grad=True, **kwargs)
    assert isinstance(value, np.ndarray) and value.ndim == 0
    assert value == loss(pred, *args, **kwargs)
    grad = loss.backward(tape, dvalue)
    assert grad.shape == pred.shape and grad.dtype == pred.dtype
    numeric = numeric_grad(lambda: dvalue * loss(pred, *args, **kwargs), pred)
    assert_close(grad, numeric, type(loss).__name__)
    return value, grad


# ------------------------------------------------------------------------------ cross-entropy
TARGET = np.array([[1, 0, 3, -100], [2, 2, -100, 4]])
MASK = np.array([[True, False, True, True], [True, True, True, True]])


@pytest.mark.parametrize("smoothing", [0.0, 0.2])
@pytest.mark.parametrize("use_mask", [False, True])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_cross_entropy_gradients(smoothing, use_mask, reduction):
    loss = nn.CrossEntropyLoss(label_smoothing=smoothing, reduction=reduction)
    logits = _rand((2, 4, 5), 0) * 2
    _, grad = _fd_loss(loss, logits, TARGET, mask=MASK if use_mask else None)
    assert not grad[TARGET == -100].any()
    if use_mask:
        assert not grad[~MASK].any()


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_cross_entropy_matches_torch(smoothing):
    torch = pytest.importorskip("torch")
    logits = _rand((2, 4, 5), 1)
    value = nn.CrossEntropyLoss(label_smoothing=smoothing)(logits, TARGET)
    ref = torch.nn.functional.cross_entropy(
        torch.from_numpy(logits.reshape(-1, 5)), torch.from_numpy(TARGET.reshape(-1)),
        ignore_index=-100, label_smoothing=smoothing,
    )
    assert value == pytest.approx(ref.item(), rel=1e-12)
    # mask behaves like ignore_index
    masked = nn.CrossEntropyLoss(label_smoothing=smoothing)(logits, TARGET, mask=MASK)
    t2 = np.where(MASK, TARGET, -100)
    ref2 = torch.nn.functional.cross_entropy(
        torch.from_numpy(logits.reshape(-1, 5)), torch.from_numpy(t2.reshape(-1)),
        label_smoothing=smoothing,
    )
    assert masked == pytest.approx(ref2.item(), rel=1e-12)


def test_cross_entropy_mean_over_valid_tokens_and_empty():
    logits = np.zeros((3, 4))
    target = np.array([0, -100, 2])
    loss = nn.CrossEntropyLoss()
    assert loss(logits, target) == pytest.approx(np.log(4))  # 2 valid tokens, each log 4
    assert nn.CrossEntropyLoss(reduction="sum")(logits, target) == pytest.approx(2 * np.log(4))
    value, tape = loss.forward(logits, np.full(3, -100), requires_grad=True)
    assert value == 0.0 and not loss.backward(tape).any()


def test_cross_entropy_float32_stable():
    logits = np.array([[1000.0, 0.0, -1000.0]], np.float32)
    value, tape = nn.CrossEntropyLoss().forward(logits, np.array([0]), requires_grad=True)
    assert value == 0.0
    g = nn.CrossEntropyLoss().backward(tape)
    assert g.dtype == np.float32 and np.isfinite(g).all()


def test_cross_entropy_bad_input():
    loss = nn.CrossEntropyLoss()
    with pytest.raises(nn.ShapeError, match=r"target: expected shape \(2, 4\).*got \(2, 5\)"):
        loss(np.zeros((2, 4, 3)), np.zeros((2, 5), np.int64))
    with pytest.raises(ValueError, match=r"target: expected class indices in \[0, 3\)"):
        loss(np.zeros((2, 3)), np.array([0, 3]))
    with pytest.raises(TypeError, match="target: expected an integer dtype, got float64"):
        loss(np.zeros((2, 3)), np.zeros(2))
    with pytest.raises(ValueError, match=r"label_smoothing: expected in \[0, 1\], got 2"):
        nn.CrossEntropyLoss(label_smoothing=2)
    with pytest.raises(ValueError, match="reduction: expected 'mean' or 'sum', got 'none'"):
        nn.CrossEntropyLoss(reduction="none")
    with pytest.raises(ValueError, match="requires_grad=True"):
        loss.backward(None)


# --------------------------------------------------------------------------- MSE / Huber
@pytest.mark.parametrize("mask_shape", [None, (3, 4), (3, 4, 2), (3,)])
@pytest.mark.parametrize("cls", [nn.MSELoss, nn.HuberLoss])
def test_regression_gradients(cls, mask_shape):
    pred, target = _rand((3, 4, 2), 0) * 2, _rand((3, 4, 2), 1)
    mask = None
    if mask_shape is not None:
        mask = np.random.default_rng(5).random(mask_shape) > 0.4
    value, grad = _fd_loss(cls(), pred, target, mask=mask)
    if mask is not None:
        full = np.broadcast_to(mask.reshape(mask.shape + (1,) * (3 - mask.ndim)), pred.shape)
        assert not grad[~full].any()
        # the value is the mean over the valid elements only
        ref = cls()(pred[full].copy(), target[full].copy())
        assert value == pytest.approx(ref, rel=1e-12)


@pytest.mark.parametrize("delta", [0.5, 1.0, 2.0])
def test_huber_and_mse_match_torch(delta):
    torch = pytest.importorskip("torch")
    pred, target = _rand((4, 6), 2) * 2, _rand((4, 6), 3)
    tp, tt = torch.from_numpy(pred), torch.from_numpy(target)
    assert nn.HuberLoss(delta)(pred, target) == pytest.approx(
        torch.nn.functional.huber_loss(tp, tt, delta=delta).item(), rel=1e-12
    )
    assert nn.MSELoss()(pred, target) == pytest.approx(
        torch.nn.functional.mse_loss(tp, tt).item(), rel=1e-12
    )


def test_huber_hand_values():
    pred = np.array([0.5, 3.0, -2.0])
    target = np.zeros(3)
    value, tape = nn.HuberLoss(1.0, reduction="sum").forward(pred, target, requires_grad=True)
    assert value == pytest.approx(0.125 + 2.5 + 1.5)
    np.testing.assert_allclose(nn.HuberLoss().backward(tape), [0.5, 1.0, -1.0])


def test_regression_bad_input():
    with pytest.raises(nn.ShapeError, match=r"target: expected shape \(3, 2\).*got \(3,\)"):
        nn.MSELoss()(np.zeros((3, 2)), np.zeros(3))
    with pytest.raises(nn.DTypeError, match="target: expected dtype float64, got float32"):
        nn.MSELoss()(np.zeros(3), np.zeros(3, np.float32))
    with pytest.raises(nn.ShapeError, match=r"mask: expected shape \(3, 2\) or a leading prefix"):
        nn.MSELoss()(np.zeros((3, 2)), np.zeros((3, 2)), mask=np.ones(2, bool))
    with pytest.raises(ValueError, match="delta: expected > 0, got 0"):
        nn.HuberLoss(0)


# ---------------------------------------------------------------------------------- quantile
QS = [0.1, 0.5, 0.9]


@pytest.mark.parametrize("target_full", [False, True])
@pytest.mark.parametrize("use_mask", [False, True])
def test_quantile_gradients(target_full, use_mask):
    pred = _rand((4, 5, 3), 0)
    target = _rand((4, 5, 3) if target_full else (4, 5), 1)
    mask = (np.random.default_rng(2).random((4, 5)) > 0.3) if use_mask else None
    _, grad = _fd_loss(nn.QuantileLoss(QS), pred, target, mask=mask)
    if use_mask:
        assert not grad[~mask].any()


def test_quantile_hand_values():
    pred = np.array([[1.0, 1.0, 1.0], [0.0, 2.0, 4.0]])
    target = np.array([2.0, 1.0])
    # row 0: e = 1 for every quantile -> q; row 1: e = 1, -1, -3 -> 0.1, 0.5, 0.3
    expected = (0.1 + 0.5 + 0.9 + 0.1 + 0.5 + 0.3) / 6
    value, tape = nn.QuantileLoss(QS).forward(pred, target, requires_grad=True)
    assert value == pytest.approx(expected)
    np.testing.assert_allclose(
        nn.QuantileLoss(QS).backward(tape) * 6,
        [[-0.1, -0.5, -0.9], [-0.1, 0.5, 0.1]],
    )


def test_quantile_bad_input():
    with pytest.raises(ValueError, match=r"quantiles: expected values in \(0, 1\)"):
        nn.QuantileLoss([0.5, 1.0])
    with pytest.raises(nn.ShapeError, match=r"pred: expected shape \[\.\.\., 3\]"):
        nn.QuantileLoss(QS)(np.zeros((4, 2)), np.zeros(4))
    with pytest.raises(nn.ShapeError, match=r"target: expected shape \(4,\) or \(4, 3\)"):
        nn.QuantileLoss(QS)(np.zeros((4, 3)), np.zeros(3))
