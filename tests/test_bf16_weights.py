"""The opt-in bfloat16 recurrent weights: the result must be exactly float32 arithmetic on
``R`` rounded to bfloat16 (round to nearest, ties to even), which numpy computes here
independently; the mode must switch off where it does not pay, and bad uses must be clear
errors."""

from __future__ import annotations

import numpy as np
import pytest

import pylstm
from pylstm import _core
from pylstm import functional as F


def round_bf16(a: np.ndarray) -> np.ndarray:
    """float32 -> nearest bfloat16 (ties to even) -> float32, with numpy bit operations."""
    bits = np.ascontiguousarray(a, np.float32).view(np.uint32).astype(np.uint64)
    rounded = ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16) << 16
    return rounded.astype(np.uint32).view(np.float32).reshape(a.shape)


def onnx_inputs(h: int, batch: int, steps: int, nd: int = 1, seed: int = 0):
    rng = np.random.default_rng(seed)
    k = 1 / np.sqrt(h)
    X = rng.standard_normal((steps, batch, h), dtype=np.float32)
    W = rng.uniform(-k, k, (nd, 4 * h, h)).astype(np.float32)
    R = rng.uniform(-k, k, (nd, 4 * h, h)).astype(np.float32)
    B = rng.uniform(-k, k, (nd, 8 * h)).astype(np.float32)
    return X, W, R, B


def test_rounding_helper_is_nearest_even():
    # 1 + 2^-8 ties between 1 and 1 + 2^-7 (to even: 1); 1 + 3*2^-8 rounds up to 1 + 2^-6.
    vals = np.array([1.0, 1 + 2.0**-8, 1 + 3 * 2.0**-8, -2.5], np.float32)
    np.testing.assert_array_equal(round_bf16(vals), [1.0, 1.0, 1 + 2.0**-6, -2.5])


# hidden 512 makes R 4 MiB: the engine reads bfloat16 (batch <= 4).
@pytest.mark.parametrize("batch,steps,direction,lens", [
    (1, 25, "forward", None),
    (4, 7, "bidirectional", None),
    (3, 9, "reverse", [9, 2, 5]),
    (4, 5, "forward", [1, 5, 3, 5]),
])
def test_functional_equals_float32_on_rounded_weights(batch, steps, direction, lens):
    nd = 2 if direction == "bidirectional" else 1
    X, W, R, B = onnx_inputs(512, batch, steps, nd)
    got = F.lstm(X, W, R, B, sequence_lens=lens, direction=direction, bf16_weights=True)
    want = F.lstm(X, W, round_bf16(R), B, sequence_lens=lens, direction=direction)
    plain = F.lstm(X, W, R, B, sequence_lens=lens, direction=direction)
    for g, w, p in zip(got, want, plain, strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=2e-6)
        # ... and it really used the rounded weights: it differs from plain float32.
        assert np.abs(g - p).max() > 1e-6


def test_small_or_large_problems_stay_float32():
    # hidden 256 (R is 1 MiB, cache-resident) and batch 8 (arithmetic-bound): no rounding.
    for h, batch in [(256, 2), (512, 8)]:
        X, W, R, B = onnx_inputs(h, batch, 3)
        got = F.lstm(X, W, R, B, bf16_weights=True)
        plain = F.lstm(X, W, R, B)
        for g, p in zip(got, plain, strict=True):
            np.testing.assert_array_equal(g, p)


def test_module_packs_once_and_notices_updates():
    m = pylstm.LSTM(512, 512, num_layers=2, bidirectional=True, seed=1, bf16_weights=True)
    x = np.random.default_rng(2).standard_normal((6, 2, 512), dtype=np.float32)
    ref = pylstm.LSTM(512, 512, num_layers=2, bidirectional=True, seed=1)
    for name, _ in ref.named_parameters():
        if name.startswith("weight_hh"):
            ref.get_parameter(name).data[...] = round_bf16(ref.get_parameter(name).data)

    def check():
        y, (h, c) = m(x)
        y_ref, (h_ref, c_ref) = ref(x)
        np.testing.assert_allclose(y, y_ref, rtol=1e-5, atol=2e-6)
        np.testing.assert_allclose(c, c_ref, rtol=1e-5, atol=2e-6)

    check()
    first = m._pack_caches["bf16"][1][0][0]
    m(x)
    assert m._pack_caches["bf16"][1][0][0] is first, "packed weights were rebuilt without a change"
    # An in-place write announced with mark_updated() is picked up ...
    m.weight_hh_l1_reverse.data[...] *= -1
    m.mark_updated()
    ref.weight_hh_l1_reverse.data[...] = round_bf16(m.weight_hh_l1_reverse.data)
    check()
    # ... and so is a replaced array, without it.
    new = np.ascontiguousarray(m.weight_hh_l0.data[::-1])
    m.weight_hh_l0.data = new
    ref.weight_hh_l0.data[...] = round_bf16(new)
    check()


def test_module_training_forward_stays_float32():
    m = pylstm.LSTM(512, 512, seed=3, bf16_weights=True)
    plain = pylstm.LSTM(512, 512, seed=3)
    x = np.random.default_rng(4).standard_normal((4, 1, 512), dtype=np.float32)
    (y, _), tape = m.forward(x, requires_grad=True)
    np.testing.assert_array_equal(y, plain(x)[0])
    dx, _ = m.backward(tape, np.ones_like(y))
    assert np.isfinite(dx).all()


def test_same_result_on_one_and_two_threads():
    X, W, R, B = onnx_inputs(512, 2, 6)
    before = pylstm.get_num_threads()
    try:
        pylstm.set_num_threads(1)
        one = F.lstm(X, W, R, B, bf16_weights=True)
        pylstm.set_num_threads(2)
        two = F.lstm(X, W, R, B, bf16_weights=True)
    finally:
        pylstm.set_num_threads(before)
    for a, b in zip(one, two, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_nan_in_weights_propagates():
    X, W, R, B = onnx_inputs(512, 1, 3)
    R[0, 5, 7] = np.nan
    Y, _, _ = F.lstm(X, W, R, B, bf16_weights=True)
    Y32, _, _ = F.lstm(X, W, R, B)
    # Where float32 gives NaN (0 * NaN is NaN even at step 0), so does bfloat16; nowhere else.
    assert np.isnan(Y).any()
    np.testing.assert_array_equal(np.isnan(Y), np.isnan(Y32))


def test_bad_uses_are_clear_errors():
    X, W, R, B = onnx_inputs(512, 1, 2)
    with pytest.raises(pylstm.DTypeError, match="bf16_weights: expected float32"):
        F.lstm(X.astype(np.float64), W.astype(np.float64), R.astype(np.float64), bf16_weights=True)
    with pytest.raises(pylstm.LstmValueError, match="bf16_weights: inference only"):
        F.lstm(X, W, R, B, bf16_weights=True, requires_grad=True)
    with pytest.raises(pylstm.DTypeError, match="bf16_weights: expected dtype float32"):
        pylstm.LSTM(4, 8, dtype=np.float64, bf16_weights=True)
    with pytest.raises(pylstm.ShapeError,
                       match=r"R: expected shape \[4\*hidden_size, P\] = \[2048, P\]"):
        _core.pack_bf16(R[0][:100], 512)
    with pytest.raises(pylstm.DTypeError, match="R: expected a float32 array"):
        _core.pack_bf16(R[0].astype(np.float64), 512)
    packed = _core.pack_bf16(R[0], 512)
    assert packed.dims == (512, 512) and packed.nbytes >= 2 * R[0].size
    layers = [[(W[0], R[0], None, None, None)]]
    common = dict(hidden_size=512, proj_size=0, order="onnx", reverse=[False],
                  activations=[[("Sigmoid", None, None), ("Tanh", None, None),
                                ("Tanh", None, None)]])
    with pytest.raises(pylstm.ShapeError, match="bf16_weights: expected 1 layers of 1 packed"):
        _core.network_forward(X, layers, bf16_weights=[[packed, packed]], **common)
    with pytest.raises(pylstm.LstmValueError, match="bf16_weights: expected a bool or a list"):
        _core.network_forward(X, layers, bf16_weights="yes", **common)
    small = _core.pack_bf16(np.zeros((16, 4), np.float32), 4)
    with pytest.raises(pylstm.ShapeError, match=r"packed for \(hidden, depth\) = \(4, 4\)"):
        _core.network_forward(X, layers, bf16_weights=[[small]], **common)
