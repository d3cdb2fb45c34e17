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
from _nn_reference import RefLSTM, RefLSTMCell

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
def test_reference_engine_matches_torch():
    torch = pytest.importorskip("torch")
    ref = RefLSTM(3, 4, seed=0)
    tl = torch.nn.LSTM(3, 4).double()
    with torch.no_grad():
        for name, p in ref.parameters.items():
            getattr(tl, name).copy_(torch.from_numpy(p))
    x = np.random.default_rng(0).standard_normal((5, 2, 3))
    y, (h, c), tape = ref.forward(x, requires_grad=True)
    tx = torch.from_numpy(x).requires_grad_()
    ty, (th, tc) = tl(tx)
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-12)
    np.testing.assert_allclose(c, tc.detach().numpy(), rtol=1e-12)
    dy = np.ones_like(y)
    dx, _ = ref.backward(tape, dy)
    ty.backward(torch.from_numpy(dy))
    np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=1e-10)
    np.testing.assert_allclose(ref.grads["weight_hh_l0"], tl.weight_hh_l0.grad.numpy(), rtol=1e-10)


@pytest.mark.parametrize("with_hx", [False, True])
def test_wrapper_composes_with_contract_engine(with_hx):
    model = Seq(nn.LSTM.wrap(RefLSTM(3, 4, seed=0)), 5, 4)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((4, 2, 5))
    hx = (rng.standard_normal((1, 2, 4)), rng.standard_normal((1, 2, 4))) if with_hx else None
    _check_seq(model, x, hx)


def test_wrapper_shares_engine_arrays_and_mode():
    engine = RefLSTM(3, 4, seed=0)
    model = Seq(nn.LSTM.wrap(engine), 5, 4)
    names = [n for n, _ in model.named_parameters()]
    assert "encoder.weight_ih_l0" in names and "encoder.bias_hh_l0" in names
    params = dict(model.named_parameters())
    assert params["encoder.weight_hh_l0"] is engine.parameters["weight_hh_l0"]
    assert model.encoder.grads is engine.grads
    model.eval()
    assert engine.training is False and engine.mode_calls[-1] is False
    model.train()
    assert engine.training is True
    # an optimiser step changes what the engine computes
    x = np.ones((2, 1, 5))
    before = model(x)[0].copy()
    y, tape = model.forward(x, requires_grad=True)
    model.backward(tape, np.ones_like(y[0]), None, None)
    opt = nn.SGD(model, lr=0.5)
    opt.step()
    assert engine.updates == 1  # the engine is told its arrays changed in place
    assert not np.allclose(model(x)[0], before)
    model.zero_grad()
    assert not engine.grads["weight_ih_l0"].any()
    # the engine's own zero_grad replaces its grads dict: the wrapper and optimiser follow it
    engine.zero_grad()
    assert model.encoder.grads is engine.grads
    engine.grads["weight_ih_l0"][...] = 1.0
    w = engine.parameters["weight_ih_l0"].copy()
    opt.step()
    np.testing.assert_allclose(engine.parameters["weight_ih_l0"], w - 0.5)
    model.load_state_dict(model.state_dict())
    assert engine.updates == 3
    with pytest.raises(AttributeError, match="owned by the engine"):
        model.encoder.grads = {}


def test_wrapper_tuple_gradients_and_return_state_false():
    engine = RefLSTM(3, 4, seed=0)
    lstm = nn.LSTM.wrap(engine)
    x = np.random.default_rng(0).standard_normal((3, 2, 3))
    (y, (h, c)), tape = lstm.forward(x, requires_grad=True)
    dh = np.ones_like(h)
    a = lstm.backward(tape, (None, (dh, None)))
    b = lstm.backward(tape, None, dh_n=dh)
    np.testing.assert_array_equal(a[0], b[0])
    with pytest.raises(ValueError, match="either in the tuple dy or by keyword"):
        lstm.backward(tape, (None, (dh, None)), dh_n=dh)
    seq = nn.Sequential(
        nn.LSTM.wrap(RefLSTM(3, 4, seed=0), return_state=False), nn.Linear(4, 2, dtype=F64)
    )

    def run(rg):
        out, t = seq.forward(x, requires_grad=rg)
        return [out], t

    check_grads(run, lambda t, d: [seq.backward(t, d[0])], [x], module=seq)


def test_cell_wrapper_with_contract_engine():
    cell = nn.LSTMCell.wrap(RefLSTMCell(3, 4, seed=0))
    rng = np.random.default_rng(0)
    x, h0, c0 = (rng.standard_normal(s) for s in [(2, 3), (2, 4), (2, 4)])

    def run(rg):
        (h, c), t = cell.forward(x, (h0, c0), requires_grad=rg)
        return [h, c], t

    def back(t, d):
        dx, (dh0, dc0) = cell.backward(t, d[0], d[1])
        return [dx, dh0, dc0]

    check_grads(run, back, [x, h0, c0], module=cell)
    h, c = cell(x, (h0, c0))
    assert h.shape == (2, 4)
    assert [n for n, _ in cell.named_parameters()] == ["weight_ih", "weight_hh", "bias_ih",
                                                       "bias_hh"]


def test_wrap_rejects_non_engines():
    with pytest.raises(TypeError, match="engine: object has no attribute 'parameters'"):
        nn.LSTM.wrap(object())


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
def test_real_engine_shares_live_arrays():
    lstm = nn.LSTM(3, 4, num_layers=2, dropout=0.5, dtype=np.float32, seed=0)
    assert lstm.parameters is lstm.engine.parameters and lstm.grads is lstm.engine.grads
    lstm.eval()
    assert lstm.engine.training is False
    x = np.random.default_rng(0).standard_normal((4, 2, 3)).astype(np.float32)
    (y, _), tape = lstm.forward(x, requires_grad=True)
    lstm.backward(tape, np.ones_like(y))
    nn.Adam(lstm, lr=0.1).step()
    fresh = nn.LSTM(3, 4, num_layers=2, dtype=np.float32, seed=1)
    fresh.load_state_dict(lstm.state_dict())
    fresh.eval()
    np.testing.assert_array_equal(fresh(x)[0], lstm(x)[0])
    a = nn.LSTM(3, 4, dtype=np.float32, seed=7)
    b = nn.LSTM(3, 4, dtype=np.float32, seed=7)
    assert all(np.array_equal(p, q) for (_, p), (_, q) in
               zip(a.named_parameters(), b.named_parameters(), strict=True))


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
        assert p.tobytes() == q.tobytes(), n


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
    return losses, {n: p.tobytes() for n, p in model.named_parameters()}


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
