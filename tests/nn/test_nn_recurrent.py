"""LSTM / LSTMCell wrappers: they share the engine's arrays and compose with other layers.

The engine's own gradients are tested elsewhere. Here the wrappers are checked twice: against
a small numpy engine that implements the documented contract (so the wrapper logic is tested
even without the compiled extension; that engine is itself checked against torch.nn.LSTM), and
against the real ``pylstm.LSTM`` / ``pylstm.LSTMCell`` when the extension is built.
"""

from __future__ import annotations

import numpy as np
import pytest
from _nn_gradcheck import check_grads

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
        rg = requires_grad
        u, t1 = self.inp.forward(x, requires_grad=rg)
        (y, (h, c)), t2 = self.encoder.forward(u, hx, requires_grad=rg)
        out, t3 = self.head.forward(y, requires_grad=rg)
        return (out, h, c), ((t1, t2, t3) if rg else None)

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


# ----------------------------------------------------------------- with the contract engine


# ----------------------------------------------------------------------- with the real engine
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

    def run(rg):
        (h, c), t = cell.forward(x, (h0, c0), requires_grad=rg)
        return [h, c], t

    def back(t, d):
        dx, (dh0, dc0) = cell.backward(t, d[0], d[1])
        return [dx, dh0, dc0]

    check_grads(run, back, [x, h0, c0], module=cell)


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
