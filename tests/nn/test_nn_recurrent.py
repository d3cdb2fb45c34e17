"""``nn.LSTM`` / ``nn.LSTMCell`` (the engine's own modules) as layers of the module system:
live parameter arrays, modes, explicit and recorded gradients through composed models.

The engine itself is checked against ``torch.nn.LSTM`` in tests/test_modules_vs_torch.py; here
finite differences check the layers composed with others, through both the explicit
``forward(..., requires_grad=True)`` / ``backward`` pair and the recorder.
"""

from __future__ import annotations

import numpy as np
import pytest
from _nn_gradcheck import check_grads, check_recorded, layer_run

from pylstm import nn

F64 = np.float64

try:
    import pylstm

    HAVE_ENGINE = hasattr(pylstm, "LSTM") and hasattr(pylstm, "LSTMCell")
except ImportError:  # pragma: no cover
    HAVE_ENGINE = False
needs_engine = pytest.mark.skipif(
    not HAVE_ENGINE, reason="pylstm.LSTM (the compiled Rust engine) is not built"
)


class Seq(nn.Module):
    """Linear -> LSTM -> Linear; outputs (head(y), h_n, c_n) so every gradient path is used."""

    def __init__(self, lstm, in_dim, hidden_out):
        super().__init__()
        self.inp = nn.Linear(in_dim, 3, dtype=F64, seed=1)
        self.encoder = lstm
        self.head = nn.Linear(hidden_out, 2, dtype=F64, seed=2)

    def forward(self, x, hx=None, requires_grad=False):
        if not requires_grad:  # inference: arrays only
            y, (h, c) = self.encoder(self.inp(x), hx)
            return (self.head(y), h, c), None
        u, t1 = self.inp.forward(x, requires_grad=True)
        (y, (h, c)), t2 = self.encoder.forward(u, hx, requires_grad=True)
        out, t3 = self.head.forward(y, requires_grad=True)
        return (out, h, c), (t1, t2, t3)

    def backward(self, tape, dout, dh, dc):
        t1, t2, t3 = tape
        dy = self.head.backward(t3, dout)
        du, (dh0, dc0) = self.encoder.backward(t2, dy, dh_n=dh, dc_n=dc)
        return self.inp.backward(t1, du), dh0, dc0


def _check_seq(model, x, hx):
    def run(rg):
        out, t = model.forward(x, hx, requires_grad=rg)
        return list(out), t

    def back(t, d):
        return list(model.backward(t, *d))

    inputs = [x] if hx is None else [x, hx[0], hx[1]]
    back_fn = back if hx is not None else (lambda t, d: back(t, d)[:1])
    check_grads(run, back_fn, inputs, module=model)


@needs_engine
@pytest.mark.parametrize(
    "kwargs",
    [dict(), dict(num_layers=2, bidirectional=True), dict(batch_first=True, proj_size=2)],
)
def test_real_engine_linear_lstm_linear_finite_differences(kwargs):
    lstm = nn.LSTM(3, 4, dtype=F64, seed=0, **kwargs)
    lstm.eval()
    d = 2 if kwargs.get("bidirectional") else 1
    out_h = kwargs.get("proj_size") or 4
    layers = kwargs.get("num_layers", 1) * d
    model = Seq(lstm, 5, out_h * d)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 5) if kwargs.get("batch_first") else (3, 2, 5))  # B = 2
    hx = (rng.standard_normal((layers, 2, out_h)), rng.standard_normal((layers, 2, 4)))
    _check_seq(model, x, hx)
    _check_seq(model, x, None)


@needs_engine
def test_real_engine_cell_finite_differences():
    cell = nn.LSTMCell(3, 4, dtype=F64, seed=0)
    rng = np.random.default_rng(0)
    x, h0, c0 = (rng.standard_normal(s) for s in [(2, 3), (2, 4), (2, 4)])

    def back(t, d):
        dx, (dh0, dc0) = cell.backward(t, d[0], d[1])
        return [dx, dh0, dc0]

    check_grads(layer_run(lambda **kw: cell.forward(x, (h0, c0), **kw)), back, [x, h0, c0],
                module=cell)
    h, c = cell(x, (h0, c0))
    assert h.shape == (2, 4) and c.shape == (2, 4)
    assert [n for n, _ in cell.named_parameters()] == ["weight_ih", "weight_hh", "bias_ih",
                                                       "bias_hh"]


class Recorded(nn.Module):
    """Linear -> LSTM -> Linear written as plain Python: its gradients come from the recorder.
    The output also depends on ``h_n`` and ``c_n`` so every gradient path is used."""

    def __init__(self, lstm, in_dim, hidden_out):
        super().__init__()
        self.inp = nn.Linear(in_dim, 3, dtype=F64, seed=1)
        self.encoder = lstm
        self.head = nn.Linear(hidden_out, 2, dtype=F64, seed=2)

    def forward(self, x):
        y, (h, c) = self.encoder(self.inp(x))
        return self.head(y) + (h * c).sum()


@needs_engine
@pytest.mark.parametrize("kwargs", [dict(), dict(num_layers=2, bidirectional=True)])
def test_real_engine_recorded_model_finite_differences(kwargs):
    lstm = nn.LSTM(3, 4, dtype=F64, seed=0, **kwargs).eval()
    d = 2 if kwargs.get("bidirectional") else 1
    model = Recorded(lstm, 5, 4 * d)
    x = np.random.default_rng(0).standard_normal((3, 2, 5))
    check_recorded(model, [x], module=model)


@needs_engine
def test_real_engine_state_gradients_as_pair_or_keywords():
    lstm = nn.LSTM(3, 4, dtype=F64, seed=0)
    x = np.random.default_rng(0).standard_normal((3, 2, 3))
    results = []
    for use_pair in (True, False):
        lstm.zero_grad()
        (_, (h, _)), tape = lstm.forward(x, requires_grad=True)
        dh = np.ones_like(h)
        dx, (dh0, dc0) = (lstm.backward(tape, (None, (dh, None))) if use_pair
                          else lstm.backward(tape, None, dh_n=dh))
        results.append([dx, dh0, dc0, *(p.grad.copy() for p in lstm.parameters())])
    for a, b in zip(*results, strict=True):
        np.testing.assert_array_equal(a, b)
    assert results[0][0].any()
    (_, (h, _)), tape = lstm.forward(x, requires_grad=True)
    with pytest.raises(ValueError, match="either in the pair dy or by keyword"):
        lstm.backward(tape, (None, (np.ones_like(h), None)), dh_n=np.ones_like(h))


@needs_engine
def test_real_engine_reads_live_arrays_and_modes():
    import pylstm

    assert nn.LSTM is pylstm.LSTM and nn.LSTMCell is pylstm.LSTMCell
    lstm = nn.LSTM(3, 4, num_layers=2, dropout=0.5, dtype=np.float32, seed=0)
    x = np.random.default_rng(0).standard_normal((4, 2, 3)).astype(np.float32)
    assert not np.array_equal(lstm(x)[0], lstm(x)[0])  # training: fresh dropout masks
    assert lstm.eval() is lstm and lstm.training is False
    np.testing.assert_array_equal(lstm(x)[0], lstm(x)[0])  # eval: no dropout
    (y, _), tape = lstm.forward(x, requires_grad=True)
    lstm.backward(tape, np.ones_like(y))
    assert lstm.get_parameter("weight_ih_l0").grad.any()
    w = lstm.weight_hh_l0.data
    before = lstm(x)[0].copy()
    nn.Adam(lstm, lr=0.1).step()
    assert lstm.weight_hh_l0.data is w  # updated in place ...
    after = lstm(x)[0]
    assert not np.allclose(after, before)  # ... and the engine reads the live arrays
    lstm.zero_grad()
    assert not any(p.grad.any() for p in lstm.parameters())
    # an in-place write and a replaced parameter are both what the next call reads
    lstm.weight_ih_l0.data[...] = 0.0
    zeroed = lstm(x)[0].copy()
    assert not np.allclose(zeroed, after)
    lstm.weight_ih_l0 = nn.Parameter(np.ones((16, 3), np.float32))
    assert not np.allclose(lstm(x)[0], zeroed)
    with pytest.raises(TypeError, match="weight_ih_l0: expected a pylstm.nn.Parameter"):
        lstm.weight_ih_l0 = np.zeros((16, 3), np.float32)
    fresh = nn.LSTM(3, 4, num_layers=2, dtype=np.float32, seed=1)
    fresh.load_state_dict(lstm.state_dict())
    fresh.eval()
    np.testing.assert_array_equal(fresh(x)[0], lstm(x)[0])
    a = nn.LSTM(3, 4, dtype=np.float32, seed=7)
    b = nn.LSTM(3, 4, dtype=np.float32, seed=7)
    assert all(np.array_equal(p.data, q.data) for (_, p), (_, q) in
               zip(a.named_parameters(), b.named_parameters(), strict=True))


@needs_engine
def test_real_engine_checkpoint_round_trip(tmp_path):
    pytest.importorskip("safetensors")
    model = Seq(nn.LSTM(5 - 2, 4, dtype=F64, seed=3), 5, 4)
    nn.save_checkpoint(tmp_path, model, {"hidden": 4})
    other = Seq(nn.LSTM(3, 4, dtype=F64, seed=4), 5, 4)
    nn.load_checkpoint(tmp_path, other)
    for (n, p), (_, q) in zip(model.named_parameters(), other.named_parameters(), strict=True):
        assert p.data.tobytes() == q.data.tobytes(), n


def _lstm_training_run(threads):
    pylstm.set_num_threads(threads)
    model = Seq(nn.LSTM(3, 8, num_layers=2, dropout=0.3, dtype=F64, seed=11), 5, 8)
    opt = nn.Adam(model, lr=0.01)
    loss = nn.MSELoss()
    rng = np.random.default_rng(0)
    x, target = rng.standard_normal((6, 4, 5)), rng.standard_normal((6, 4, 2))
    losses = []
    for _ in range(3):
        model.zero_grad()
        (y, h, c), tape = model.forward(x, requires_grad=True)
        value, lt = loss.forward(y, target, requires_grad=True)
        model.backward(tape, loss.backward(lt), None, None)
        nn.clip_grad_norm_(model, 1.0)
        opt.step()
        losses.append(value)
    return losses, {n: p.data.tobytes() for n, p in model.named_parameters()}


@needs_engine
def test_real_engine_training_is_deterministic():
    before = pylstm.get_num_threads()
    try:
        for threads in (1, 2):
            assert _lstm_training_run(threads) == _lstm_training_run(threads)
    finally:
        pylstm.set_num_threads(before)


@needs_engine
def test_real_engine_dropout_stream_restored_by_checkpoint(tmp_path):
    pytest.importorskip("safetensors")
    x = np.random.default_rng(0).standard_normal((4, 2, 3))
    a = nn.LSTM(3, 4, num_layers=2, dropout=0.5, dtype=F64, seed=1)
    a(x)  # advance the dropout stream
    nn.save_checkpoint(tmp_path, a)
    b = nn.LSTM(3, 4, num_layers=2, dropout=0.5, dtype=F64, seed=2)
    nn.load_checkpoint(tmp_path, b)
    np.testing.assert_array_equal(a(x)[0], b(x)[0])  # same weights and same next masks
