"""Opt-in float32 weights packed once per module (``pylstm.LSTM(..., packed_weights=True)``):
the same results as packing per call (to float32 rounding: for a few input rows the per-call
projection reads W in place and sums in another order), rebuilt when the parameters change,
and clear errors."""

from __future__ import annotations

import numpy as np
import pytest

import pylstm
from pylstm import _core

CONFIGS = [dict(), dict(num_layers=2, bidirectional=True, proj_size=20),
           dict(batch_first=True, num_layers=2)]


@pytest.fixture
def threads():
    before = pylstm.get_num_threads()
    yield
    pylstm.set_num_threads(before)


def _assert_same(got, want):
    # A stale pack (weights of another version) would differ by orders of magnitude more.
    np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-6)


def _pair(cfg, seed=0, n_in=45, hidden=70):
    packed = pylstm.LSTM(n_in, hidden, seed=seed, packed_weights=True, **cfg)
    plain = pylstm.LSTM(n_in, hidden, seed=seed, **cfg)
    return packed, plain


@pytest.mark.parametrize("cfg", CONFIGS, ids=["default", "deep-bi-proj", "batch-first"])
@pytest.mark.parametrize("n_threads", [1, 2])
def test_same_results_as_packing_per_call(cfg, n_threads, threads):
    pylstm.set_num_threads(n_threads)
    m, ref = _pair(cfg)
    rng = np.random.default_rng(1)
    for batch, steps in ((4, 16), (1, 40), (3, 5), (1, 1), (70, 3)):
        shape = (batch, steps, 45) if m.batch_first else (steps, batch, 45)
        x = rng.standard_normal(shape).astype(np.float32)
        y, (h, c) = m(x)
        y_ref, (h_ref, c_ref) = ref(x)
        _assert_same(y, y_ref)
        _assert_same(c, c_ref)
        _assert_same(h, h_ref)


def test_variable_lengths(threads):
    m, ref = _pair(dict(bidirectional=True))
    rng = np.random.default_rng(2)
    x = rng.standard_normal((30, 40, 45)).astype(np.float32)
    lengths = rng.integers(1, 31, 40)
    y, (h, c) = m(x, lengths=lengths)
    y_ref, (h_ref, c_ref) = ref(x, lengths=lengths)
    _assert_same(y, y_ref)
    _assert_same(h, h_ref)


def test_packs_follow_parameter_updates():
    m, ref = _pair(dict(num_layers=2, bidirectional=True))
    x = np.random.default_rng(3).standard_normal((20, 3, 45)).astype(np.float32)

    def check():
        _assert_same(m(x)[0], ref(x)[0])

    check()
    first = m._pack_caches["f32"][1][0][0]
    check()
    assert m._pack_caches["f32"][1][0][0] is first, "packed weights were rebuilt without a change"
    # An in-place write announced with mark_updated() is picked up ...
    for mod in (m, ref):
        mod.weight_hh_l1_reverse.data[...] *= -1
        mod.weight_ih_l0.data[...] *= 0.5
    m.mark_updated()
    check()
    # ... and so is a replaced array, without it.
    new = np.ascontiguousarray(m.weight_ih_l1.data[::-1])
    m.weight_ih_l1.data = new
    ref.weight_ih_l1.data = new.copy()
    check()
    # ... and a newly assigned Parameter.
    new = np.ascontiguousarray(m.weight_hh_l0.data * 0.5)
    m.weight_hh_l0 = pylstm.nn.Parameter(new)
    ref.weight_hh_l0 = pylstm.nn.Parameter(new.copy())
    check()
    # load_state_dict repacks too.
    other = pylstm.LSTM(45, 70, num_layers=2, bidirectional=True, seed=9)
    m.load_state_dict(other.state_dict())
    ref.load_state_dict(other.state_dict())
    check()


def test_training_reads_the_parameters():
    m, ref = _pair(dict())
    x = np.random.default_rng(4).standard_normal((12, 4, 45)).astype(np.float32)
    (y, _), tape = m.forward(x, requires_grad=True)
    (y_ref, _), tape_ref = ref.forward(x, requires_grad=True)
    np.testing.assert_array_equal(y, y_ref)
    dy = np.ones_like(y)
    np.testing.assert_array_equal(m.backward(tape, dy)[0], ref.backward(tape_ref, dy)[0])
    assert "f32" not in getattr(m, "_pack_caches", {}), "training packed the weights"


def test_float64_module_is_rejected():
    with pytest.raises(pylstm.DTypeError, match="packed_weights: expected dtype float32"):
        pylstm.LSTM(4, 8, dtype=np.float64, packed_weights=True)


def test_pack_weights_checks_its_arguments():
    w = np.zeros((32, 5), np.float32)
    r = np.zeros((32, 8), np.float32)
    packed = _core.pack_weights(w, r, 8)
    assert packed.dims == (8, 5, 8) and packed.nbytes >= (32 * 5 + 32 * 8) * 4
    with pytest.raises(pylstm.ShapeError,
                       match=r"W: expected shape \[4\*hidden_size, I\] = \[32, I\]"):
        _core.pack_weights(w[:31], r, 8)
    with pytest.raises(pylstm.ShapeError, match="R: expected a C-contiguous array"):
        _core.pack_weights(w, np.zeros((32, 16), np.float32)[:, ::2], 8)
    with pytest.raises(pylstm.DTypeError, match="R: expected a float32 array for packing"):
        _core.pack_weights(w, r.astype(np.float64), 8)


def test_network_forward_checks_the_packs():
    m = pylstm.LSTM(5, 8, seed=0)
    layers = m._core_layers()
    x = np.zeros((3, 2, 5), np.float32)
    kw = dict(hidden_size=8, proj_size=0, order="torch", reverse=[False],
              activations=[[("Sigmoid", None, None), ("Tanh", None, None), ("Tanh", None, None)]])
    good = _core.pack_weights(m.weight_ih_l0.data, m.weight_hh_l0.data, 8)
    y, *_ = _core.network_forward(x, layers, packed_weights=[[good]], **kw)
    np.testing.assert_allclose(y, m(x)[0], rtol=1e-6, atol=1e-7)
    with pytest.raises(pylstm.ShapeError, match=r"packed_weights: expected 1 layers of 1"):
        _core.network_forward(x, layers, packed_weights=[[good, good]], **kw)
    wrong = _core.pack_weights(np.zeros((32, 6), np.float32), np.zeros((32, 8), np.float32), 8)
    with pytest.raises(pylstm.ShapeError, match=r"packed weights: W packed for \(hidden, depth\)"):
        _core.network_forward(x, layers, packed_weights=[[wrong]], **kw)
    with pytest.raises(pylstm.LstmValueError, match="packed_weights: expected a list"):
        _core.network_forward(x, layers, packed_weights=[["nope"]], **kw)
    with pytest.raises(pylstm.DTypeError, match="packed_weights: expected float32 inputs"):
        layers64 = [[tuple(None if a is None else a.astype(np.float64) for a in d)
                     for d in layer] for layer in layers]
        _core.network_forward(x.astype(np.float64), layers64, packed_weights=[[good]], **kw)


def test_cell_same_results_and_updates():
    cell = pylstm.LSTMCell(45, 70, seed=0, packed_weights=True)
    ref = pylstm.LSTMCell(45, 70, seed=0)
    rng = np.random.default_rng(5)
    x = rng.standard_normal((3, 45)).astype(np.float32)
    hx = tuple(rng.standard_normal((3, 70)).astype(np.float32) for _ in range(2))
    for _ in range(2):
        for got, want in zip(cell(x, hx), ref(x, hx), strict=True):
            np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-6)
        for mod in (cell, ref):
            mod.weight_hh.data[...] *= -1
        cell.mark_updated()
    with pytest.raises(pylstm.DTypeError, match="packed_weights: expected dtype float32"):
        pylstm.LSTMCell(4, 8, dtype=np.float64, packed_weights=True)


def test_packs_are_for_inference_only():
    m = pylstm.LSTM(5, 8, seed=0)
    x = np.zeros((3, 2, 5), np.float32)
    good = _core.pack_weights(m.weight_ih_l0.data, m.weight_hh_l0.data, 8)
    with pytest.raises(pylstm.LstmValueError, match="packed_weights: inference only"):
        _core.network_forward(x, m._core_layers(), hidden_size=8, proj_size=0, order="torch",
                              reverse=[False], keep_tape=True, packed_weights=[[good]],
                              activations=[[("Sigmoid", None, None), ("Tanh", None, None),
                                            ("Tanh", None, None)]])


def test_module_with_packs_pickles_and_copies():
    import copy
    import pickle

    m = pylstm.LSTM(5, 8, seed=0, packed_weights=True)
    x = np.random.default_rng(6).standard_normal((4, 2, 5)).astype(np.float32)
    y = m(x)[0]
    for other in (pickle.loads(pickle.dumps(m)), copy.deepcopy(m)):
        assert other.packed_weights
        np.testing.assert_array_equal(other(x)[0], y)
