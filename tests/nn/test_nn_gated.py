"""pylstm.nn.GatedLSTM: the sequence op equals the same update written step by step on
pylstm.LSTMCell (forward and every gradient), and its own gradients match central differences
in float64."""

from __future__ import annotations

from functools import partial

import numpy as np
import pytest
from _nn_gradcheck import numeric_grad

import pylstm
from pylstm import autograd as A
from pylstm import nn


def _cell_loop(cell, x, gates):
    b, t, _ = x.shape
    h = c = np.zeros((b, cell.hidden_size), cell.dtype)
    for s in range(t):
        hn, cn = cell(x[:, s], (h, c))
        g = gates[:, s:s + 1]
        h = h + g * (hn - h)
        c = c + g * (cn - c)
    return h


def test_same_initial_weights_as_lstmcell_and_the_same_steps():
    gated = nn.GatedLSTM(5, 4, seed=3)
    cell = pylstm.LSTMCell(5, 4, seed=3)
    for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
        np.testing.assert_array_equal(getattr(gated, name).data, getattr(cell, name).data)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 6, 5)).astype(np.float32)
    gates = rng.uniform(0, 1, (3, 6)).astype(np.float32)
    gates[1, 4:] = 0.0  # padding: the state stays
    np.testing.assert_allclose(gated(x, gates), _cell_loop(cell, x, gates), rtol=1e-5,
                               atol=1e-6)


def test_gradients_equal_the_recorded_cell_loop():
    rng = np.random.default_rng(1)
    gated = nn.GatedLSTM(4, 3, seed=5, dtype=np.float64)
    cell = pylstm.LSTMCell(4, 3, seed=5, dtype=np.float64)
    x = rng.standard_normal((2, 5, 4))
    gates = rng.uniform(0, 1, (2, 5))
    w = rng.standard_normal((2, 3))

    def run(model, step_by_step):
        xt, gt = A.tensor(x, requires_grad=True), A.tensor(gates, requires_grad=True)
        with pylstm.record():
            h = _cell_loop(model, xt, gt) if step_by_step else model(xt, gt)
            (h * w).sum().backward()
        return xt.grad, gt.grad, {n: p.grad.copy() for n, p in model.named_parameters()}

    dx1, dg1, p1 = run(gated, False)
    dx2, dg2, p2 = run(cell, True)
    np.testing.assert_allclose(dx1, dx2, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(dg1, dg2, rtol=1e-10, atol=1e-12)
    for name in p1:
        np.testing.assert_allclose(p1[name], p2[name], rtol=1e-10, atol=1e-12, err_msg=name)


def test_gradients_match_central_differences_in_float64():
    rng = np.random.default_rng(2)
    model = nn.GatedLSTM(3, 4, seed=7, dtype=np.float64)
    x = rng.standard_normal((2, 4, 3))
    gates = rng.uniform(0, 1, (2, 4))
    w = rng.standard_normal((2, 4))

    def loss() -> float:
        return float((model(x, gates) * w).sum())

    out, tape = model.forward(x, gates, requires_grad=True)
    dx, dg = model.backward(tape, w)
    numeric = partial(numeric_grad, loss)
    np.testing.assert_allclose(dx, numeric(x), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(dg, numeric(gates), rtol=1e-6, atol=1e-8)
    for name, p in model.named_parameters():
        np.testing.assert_allclose(p.grad, numeric(p.data), rtol=1e-6, atol=1e-8,
                                   err_msg=name)


def test_a_zero_gate_leaves_the_state_and_passes_no_gradient_to_its_step():
    model = nn.GatedLSTM(2, 3, seed=0, dtype=np.float64)
    rng = np.random.default_rng(4)
    x = rng.standard_normal((1, 3, 2))
    gates = np.array([[0.7, 0.0, 0.4]])
    moved = x.copy()
    moved[0, 1] += 10.0
    np.testing.assert_allclose(model(x, gates), model(moved, gates), rtol=0, atol=0)
    _, tape = model.forward(x, gates, requires_grad=True)
    dx, _ = model.backward(tape, np.ones((1, 3)))
    assert np.all(dx[0, 1] == 0) and np.any(dx[0, 0] != 0)


def test_bad_input_names_the_argument():
    model = nn.GatedLSTM(2, 3)
    with pytest.raises(pylstm.ShapeError, match=r"x: expected shape \[batch, steps, 2\]"):
        model(np.zeros((1, 4, 3), np.float32), np.zeros((1, 4), np.float32))
    with pytest.raises(pylstm.ShapeError, match="gates"):
        model(np.zeros((1, 4, 2), np.float32), np.zeros((1, 5), np.float32))
