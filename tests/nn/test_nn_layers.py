"""Linear, Embedding, Dropout, LayerNorm: finite-difference gradients, behaviour, bad input."""

from __future__ import annotations

import numpy as np
import pytest
from _nn_gradcheck import assert_close, check_grads, layer_run, numeric_grad

import pylstm
from pylstm import nn

F64 = np.float64


def _rand(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


# ------------------------------------------------------------------------------------- Linear
@pytest.mark.parametrize("shape", [(5, 3), (2, 4, 3), (3,)])
@pytest.mark.parametrize("bias", [True, False])
def test_linear_gradients(shape, bias):
    layer = nn.Linear(3, 2, bias=bias, dtype=F64, seed=1)
    x = _rand(shape)

    run = layer_run(lambda **kw: layer.forward(x, **kw))
    check_grads(run, lambda t, d: [layer.backward(t, d[0])], [x], module=layer)


def test_linear_matches_formula_and_accumulates():
    layer = nn.Linear(3, 2, dtype=F64, seed=0)
    x = _rand((4, 3))
    y, tape = layer.forward(x, requires_grad=True)
    np.testing.assert_allclose(
        y, x @ layer.weight.data.T + layer.bias.data, rtol=1e-12
    )
    d = np.ones_like(y)
    layer.backward(tape, d)
    g1 = layer.weight.grad.copy()
    layer.backward(tape, d)  # accumulates
    np.testing.assert_allclose(layer.weight.grad, 2 * g1)
    layer.zero_grad()
    assert not layer.weight.grad.any()


def test_linear_float32_and_init_bounds():
    layer = nn.Linear(16, 8, seed=0)
    assert layer.weight.data.dtype == np.float32
    assert np.abs(layer.weight.data).max() <= 1 / 4
    y = layer(np.ones((2, 16), np.float32))
    assert y.dtype == np.float32 and y.shape == (2, 8)


def test_linear_bad_input():
    layer = nn.Linear(3, 2, seed=0)
    with pytest.raises(nn.ShapeError, match=r"x: expected shape \[\.\.\., 3\].*\(2, 4\)"):
        layer(np.zeros((2, 4), np.float32))
    with pytest.raises(nn.DTypeError, match="x: expected dtype float32, got float64"):
        layer(np.zeros((2, 3)))
    with pytest.raises(TypeError, match="x: expected a numpy.ndarray, got list"):
        layer([[1.0, 2.0, 3.0]])
    with pytest.raises(ValueError, match="in_features: expected a positive int, got 0"):
        nn.Linear(0, 2)
    with pytest.raises(TypeError, match="dtype: expected float32 or float64, got int32"):
        nn.Linear(2, 2, dtype=np.int32)
    y, tape = layer.forward(np.zeros((2, 3), np.float32), requires_grad=True)
    with pytest.raises(nn.ShapeError, match=r"dout: expected shape \(2, 2\), got \(2, 3\)"):
        layer.backward(tape, np.zeros((2, 3), np.float32))
    with pytest.raises(ValueError, match="requires_grad=True"):
        layer.backward(None, y)


def test_no_tape_without_requires_grad():
    layer = nn.Linear(3, 2, dtype=F64, seed=0)
    out = layer.forward(np.zeros((1, 3)))
    assert isinstance(out, np.ndarray)  # the output alone, no tape
    with pytest.raises(TypeError, match="requires_grad"):
        layer(np.zeros((1, 3)), requires_grad=True)


# ---------------------------------------------------------------------------------- Embedding
@pytest.mark.parametrize("padding_idx", [None, 2])
def test_embedding_gradient_scatter_add(padding_idx):
    emb = nn.Embedding(6, 3, padding_idx=padding_idx, dtype=F64, seed=0)
    ids = np.array([[1, 2, 1], [5, 1, 2]])
    out, tape = emb.forward(ids, requires_grad=True)
    np.testing.assert_array_equal(out, emb.weight.data[ids])
    w = _rand(out.shape, seed=3)

    def scalar():
        return float(np.sum(emb(ids) * w))

    assert emb.backward(tape, w) is None
    expected = numeric_grad(scalar, emb.weight.data)
    if padding_idx is not None:
        expected[padding_idx] = 0.0  # the padding row gets no gradient
        assert not emb.weight.data[padding_idx].any()
    assert_close(emb.weight.grad, expected, "embedding weight")
    # id 1 appears three times: its row is the sum of the three upstream rows
    np.testing.assert_allclose(emb.weight.grad[1], w[0, 0] + w[0, 2] + w[1, 1])


def test_embedding_gradient_adds_to_what_is_there_as_numpy_add_at_does():
    emb = nn.Embedding(50, 4, dtype=F64, seed=0)
    rng = np.random.default_rng(5)
    ids = rng.integers(0, 50, (30, 7))
    dout = rng.standard_normal((30, 7, 4))
    emb.weight.grad[:] = rng.standard_normal((50, 4))
    want = emb.weight.grad.copy()
    np.add.at(want, ids.reshape(-1), dout.reshape(-1, 4))
    _, tape = emb.forward(ids, requires_grad=True)
    emb.backward(tape, dout)
    np.testing.assert_allclose(emb.weight.grad, want, rtol=1e-12, atol=1e-12)


def test_embedding_bad_input():
    emb = nn.Embedding(4, 2, seed=0)
    with pytest.raises(ValueError, match=r"ids: expected values in \[0, 4\).*max 4"):
        emb(np.array([0, 4]))
    with pytest.raises(TypeError, match="ids: expected an integer dtype, got float32"):
        emb(np.array([0.0], np.float32))
    with pytest.raises(ValueError, match="padding_idx"):
        nn.Embedding(4, 2, padding_idx=4)


def test_embedding_first_in_sequential():
    model = nn.Sequential(nn.Embedding(3, 2, dtype=F64, seed=0), nn.Linear(2, 1, dtype=F64))
    with pylstm.record():
        y = model(np.array([0, 2]))
    y.sum().backward()
    assert model[0].weight.grad[[0, 2]].any() and not model[0].weight.grad[1].any()
    assert model[1].weight.grad.any()


# ------------------------------------------------------------------------------------ Dropout
def test_dropout_finite_differences_with_fixed_mask():
    drop = nn.Dropout(0.4, seed=7)
    x = _rand((4, 5))
    state = drop.rng.bit_generator.state

    def call(**kw):
        drop.rng.bit_generator.state = state  # the same mask every call
        return drop.forward(x, **kw)

    check_grads(layer_run(call), lambda t, d: [drop.backward(t, d[0])], [x])


def test_dropout_inverted_scaling_and_eval():
    drop = nn.Dropout(0.25, seed=0)
    x = np.ones((400, 50))
    y, tape = drop.forward(x, requires_grad=True)
    kept = y != 0
    np.testing.assert_allclose(y[kept], 1 / 0.75)
    assert 0.70 < kept.mean() < 0.80
    np.testing.assert_array_equal(drop.backward(tape, x), y)  # gradient masked the same way
    drop.eval()
    y2, tape2 = drop.forward(x, requires_grad=True)
    np.testing.assert_array_equal(y2, x)
    np.testing.assert_array_equal(drop.backward(tape2, x), x)
    drop.train()
    assert not np.array_equal(drop(x), x)


def test_dropout_edges_and_errors():
    x = np.ones((3, 3), np.float32)
    assert not nn.Dropout(1.0, seed=0)(x).any()
    np.testing.assert_array_equal(nn.Dropout(0.0, seed=0)(x), x)
    assert nn.Dropout(0.5, seed=0)(x).dtype == np.float32
    with pytest.raises(ValueError, match=r"p: expected a probability in \[0, 1\], got 1.5"):
        nn.Dropout(1.5)


# ---------------------------------------------------------------------------------- LayerNorm
@pytest.mark.parametrize("normalized_shape", [4, (3, 4)])
@pytest.mark.parametrize("affine", [True, False])
def test_layernorm_gradients(normalized_shape, affine):
    ln = nn.LayerNorm(normalized_shape, elementwise_affine=affine, dtype=F64)
    if affine:  # non-trivial parameters
        ln.weight.data[...] = _rand(ln.weight.data.shape, 4)
        ln.bias.data[...] = _rand(ln.bias.data.shape, 5)
    x = _rand((2, 3, 4), 1) * 3 + 1

    run = layer_run(lambda **kw: ln.forward(x, **kw))
    check_grads(run, lambda t, d: [ln.backward(t, d[0])], [x], module=ln if affine else None)


def test_layernorm_matches_torch():
    torch = pytest.importorskip("torch")
    x = _rand((2, 5, 6), 2)
    ln = nn.LayerNorm(6, dtype=F64)
    ln.weight.data[...] = _rand(6, 3)
    ln.bias.data[...] = _rand(6, 4)
    ref = torch.nn.functional.layer_norm(
        torch.from_numpy(x), (6,), torch.from_numpy(ln.weight.data),
        torch.from_numpy(ln.bias.data), 1e-5,
    )
    np.testing.assert_allclose(ln(x), ref.numpy(), rtol=1e-12, atol=1e-12)


def test_layernorm_bad_input():
    ln = nn.LayerNorm((3, 4))
    with pytest.raises(nn.ShapeError, match=r"x: expected shape \[\.\.\., 3, 4\].*\(2, 4, 3\)"):
        ln(np.zeros((2, 4, 3), np.float32))
