"""``pylstm.LSTM`` / ``pylstm.LSTMCell`` against ``torch.nn.LSTM`` / ``torch.nn.LSTMCell``:
forward, every gradient, packed sequences, projections, layers, directions, layouts."""

from __future__ import annotations

import numpy as np
import pytest

import pylstm

torch = pytest.importorskip("torch")
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence  # noqa: E402

_TDT = {np.float32: torch.float32, np.float64: torch.float64}
_TOL = {np.float32: dict(rtol=2e-5, atol=2e-6), np.float64: dict(rtol=1e-10, atol=1e-12)}


def _pair(input_size, hidden_size, dtype=np.float64, seed=0, **kw):
    """A torch module and a pylstm module with the torch module's parameters."""
    torch.manual_seed(seed)
    t = torch.nn.LSTM(input_size, hidden_size, dtype=_TDT[dtype], **kw)
    m = pylstm.LSTM(input_size, hidden_size, dtype=dtype, seed=seed + 1, **kw)
    assert [n for n, _ in m.named_parameters()] == [n for n, _ in t.named_parameters()]
    m.load_state_dict(t.state_dict())  # tensors load as they are
    for name, p in t.named_parameters():
        np.testing.assert_array_equal(m.get_parameter(name).data, p.detach().numpy())
    return t, m


def _grads(m):
    """Every parameter's gradient by name."""
    return {n: p.grad for n, p in m.named_parameters()}


def _t(a, grad=False):
    return torch.tensor(np.array(a), requires_grad=grad)


CONFIGS = [
    dict(),
    dict(num_layers=2),
    dict(num_layers=3, bidirectional=True),
    dict(bidirectional=True),
    dict(proj_size=2),
    dict(proj_size=3, num_layers=2, bidirectional=True),
    dict(batch_first=True),
    dict(batch_first=True, num_layers=2, bidirectional=True, proj_size=2),
    dict(bias=False, num_layers=2),
    dict(bias=False, bidirectional=True, proj_size=1, batch_first=True),
]


def _ids(cfgs):
    return ["-".join(f"{k}={v}" for k, v in c.items()) or "default" for c in cfgs]


def _shapes(m, T, nb):
    nld = m.num_layers * m.num_directions
    out = m.proj_size or m.hidden_size
    x = (nb, T, m.input_size) if m.batch_first else (T, nb, m.input_size)
    y = (nb, T, m.num_directions * out) if m.batch_first else (T, nb, m.num_directions * out)
    return x, y, (nld, nb, out), (nld, nb, m.hidden_size)


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("with_hx", [False, True], ids=["no_hx", "hx"])
@pytest.mark.parametrize("cfg", CONFIGS, ids=_ids(CONFIGS))
def test_forward_and_every_gradient(cfg, with_hx, dtype, rng):
    n_in, H, T, nb = 3, 5, 4, 3
    t, m = _pair(n_in, H, dtype, **cfg)
    xs, ys, hs, cs = _shapes(m, T, nb)
    x = rng.standard_normal(xs).astype(dtype)
    hx = (rng.standard_normal(hs).astype(dtype), rng.standard_normal(cs).astype(dtype))
    dy = rng.standard_normal(ys).astype(dtype)
    dh = rng.standard_normal(hs).astype(dtype)
    dc = rng.standard_normal(cs).astype(dtype)

    (y, (h_n, c_n)), tape = m.forward(x, hx if with_hx else None, requires_grad=True)
    dx, (dh0, dc0) = m.backward(tape, dy, dh, dc)

    xt = _t(x, True)
    hxt = (_t(hx[0], True), _t(hx[1], True))
    yt, (hnt, cnt) = t(xt, hxt if with_hx else None)
    loss = (yt * _t(dy)).sum() + (hnt * _t(dh)).sum() + (cnt * _t(dc)).sum()
    loss.backward()

    tol = _TOL[dtype]
    for name, ours, theirs in (("y", y, yt), ("h_n", h_n, hnt), ("c_n", c_n, cnt)):
        assert ours.shape == tuple(theirs.shape), name
        assert ours.dtype == dtype, name
        np.testing.assert_allclose(ours, theirs.detach().numpy(), **tol, err_msg=name)
    np.testing.assert_allclose(dx, xt.grad.numpy(), **tol, err_msg="dx")
    grads = dict(t.named_parameters())
    assert set(_grads(m)) == set(grads)
    for name, p in grads.items():
        np.testing.assert_allclose(m.get_parameter(name).grad, p.grad.numpy(), **tol, err_msg=name)
    if with_hx:
        np.testing.assert_allclose(dh0, hxt[0].grad.numpy(), **tol, err_msg="dh0")
        np.testing.assert_allclose(dc0, hxt[1].grad.numpy(), **tol, err_msg="dc0")
    else:
        # Without hx the initial states are zeros; their gradient is still well defined.
        h0z = torch.zeros(hs, dtype=_TDT[dtype], requires_grad=True)
        c0z = torch.zeros(cs, dtype=_TDT[dtype], requires_grad=True)
        y2, (h2, c2) = t(_t(x), (h0z, c0z))
        ((y2 * _t(dy)).sum() + (h2 * _t(dh)).sum() + (c2 * _t(dc)).sum()).backward()
        np.testing.assert_allclose(dh0, h0z.grad.numpy(), **tol, err_msg="dh0 (zero init)")
        np.testing.assert_allclose(dc0, c0z.grad.numpy(), **tol, err_msg="dc0 (zero init)")


@pytest.mark.parametrize("cfg", [dict(), dict(num_layers=2, bidirectional=True),
                                 dict(batch_first=True, bidirectional=True, proj_size=2),
                                 dict(num_layers=2, proj_size=3)],
                         ids=_ids([dict(), dict(num_layers=2, bidirectional=True),
                                   dict(batch_first=True, bidirectional=True, proj_size=2),
                                   dict(num_layers=2, proj_size=3)]))
@pytest.mark.parametrize("lengths", [[4, 1, 3], [2, 2, 1], [1], [5, 5, 5, 5], [1, 5, 2, 4]],
                         ids=lambda v: "-".join(map(str, v)))
def test_packed_sequences_match_lengths(cfg, lengths, rng):
    n_in, H, T = 2, 4, 5
    nb = len(lengths)
    t, m = _pair(n_in, H, **cfg)
    xs, _, hs, cs = _shapes(m, T, nb)
    x = rng.standard_normal(xs)
    hx = (rng.standard_normal(hs), rng.standard_normal(cs))
    xt, h0t, c0t = _t(x, True), _t(hx[0], True), _t(hx[1], True)
    packed = pack_padded_sequence(xt, torch.tensor(lengths), batch_first=m.batch_first,
                                  enforce_sorted=False)
    out, (hnt, cnt) = t(packed, (h0t, c0t))
    yt, _ = pad_packed_sequence(out, batch_first=m.batch_first)

    (y, (h_n, c_n)), tape = m.forward(x, hx, lengths=np.array(lengths), requires_grad=True)
    assert y.shape == tuple(yt.shape)  # max(lengths) steps
    tol = _TOL[np.float64]
    np.testing.assert_allclose(y, yt.detach().numpy(), **tol)
    np.testing.assert_allclose(h_n, hnt.detach().numpy(), **tol)
    np.testing.assert_allclose(c_n, cnt.detach().numpy(), **tol)
    # Past each length the output is exactly zero.
    yb = y if m.batch_first else y.transpose(1, 0, 2)
    for b, n in enumerate(lengths):
        assert not np.any(yb[b, n:])

    dy = rng.standard_normal(y.shape)
    dh, dc = rng.standard_normal(hs), rng.standard_normal(cs)
    ((yt * _t(dy)).sum() + (hnt * _t(dh)).sum() + (cnt * _t(dc)).sum()).backward()
    dx, (dh0, dc0) = m.backward(tape, dy, dh, dc)
    np.testing.assert_allclose(dx, xt.grad.numpy(), **tol)
    np.testing.assert_allclose(dh0, h0t.grad.numpy(), **tol)
    np.testing.assert_allclose(dc0, c0t.grad.numpy(), **tol)
    for name, p in t.named_parameters():
        np.testing.assert_allclose(m.get_parameter(name).grad, p.grad.numpy(), **tol, err_msg=name)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_packed_sequences_many_rows(dtype, rng):
    """A batch big enough for the packed-panel input projection and the compacted weight
    gradients, with lengths spread over 1..T (many short runs of running rows)."""
    n_in, H, T, nb = 48, 40, 30, 40
    t, m = _pair(n_in, H, dtype=dtype, num_layers=2, bidirectional=True)
    lengths = rng.integers(1, T + 1, nb)
    lengths[0] = T
    xs, _, hs, cs = _shapes(m, T, nb)
    x = rng.standard_normal(xs).astype(dtype)
    xt = _t(x, True)
    out, (hnt, cnt) = t(pack_padded_sequence(xt, torch.tensor(lengths), enforce_sorted=False))
    yt, _ = pad_packed_sequence(out)
    (y, (h_n, c_n)), tape = m.forward(x, lengths=lengths, requires_grad=True)
    tol = dict(rtol=2e-4, atol=2e-5) if dtype == np.float32 else _TOL[np.float64]
    np.testing.assert_allclose(y, yt.detach().numpy(), **tol)
    np.testing.assert_allclose(h_n, hnt.detach().numpy(), **tol)
    dy = rng.standard_normal(y.shape).astype(dtype)
    (yt * _t(dy)).sum().backward()
    dx, _ = m.backward(tape, dy)
    np.testing.assert_allclose(dx, xt.grad.numpy(), **tol)
    for name, p in t.named_parameters():
        np.testing.assert_allclose(m.get_parameter(name).grad, p.grad.numpy(), **tol, err_msg=name)


@pytest.mark.parametrize("cfg", [dict(), dict(num_layers=2, bidirectional=True, proj_size=2)],
                         ids=["default", "deep-bi-proj"])
def test_unbatched_input(cfg, rng):
    n_in, H, T = 3, 4, 5
    t, m = _pair(n_in, H, **cfg)
    nld, out = m.num_layers * m.num_directions, m.proj_size or H
    x = rng.standard_normal((T, n_in))
    hx = (rng.standard_normal((nld, out)), rng.standard_normal((nld, H)))
    xt, h0t, c0t = _t(x, True), _t(hx[0], True), _t(hx[1], True)
    yt, (hnt, cnt) = t(xt, (h0t, c0t))
    (y, (h_n, c_n)), tape = m.forward(x, hx, requires_grad=True)
    assert y.shape == tuple(yt.shape) and h_n.shape == (nld, out) and c_n.shape == (nld, H)
    tol = _TOL[np.float64]
    for a, b in ((y, yt), (h_n, hnt), (c_n, cnt)):
        np.testing.assert_allclose(a, b.detach().numpy(), **tol)
    dy, dh, dc = (rng.standard_normal(a.shape) for a in (y, h_n, c_n))
    ((yt * _t(dy)).sum() + (hnt * _t(dh)).sum() + (cnt * _t(dc)).sum()).backward()
    dx, (dh0, dc0) = m.backward(tape, dy, dh, dc)
    assert dx.shape == x.shape and dh0.shape == hx[0].shape and dc0.shape == hx[1].shape
    np.testing.assert_allclose(dx, xt.grad.numpy(), **tol)
    np.testing.assert_allclose(dh0, h0t.grad.numpy(), **tol)
    np.testing.assert_allclose(dc0, c0t.grad.numpy(), **tol)
    for name, p in t.named_parameters():
        np.testing.assert_allclose(m.get_parameter(name).grad, p.grad.numpy(), **tol, err_msg=name)
    # The same data as a batch of one gives the same numbers.
    y1, (h1, c1) = m(x[:, None], (hx[0][:, None], hx[1][:, None]))
    np.testing.assert_allclose(y1[:, 0], y, rtol=0, atol=1e-14)
    np.testing.assert_allclose(h1[:, 0], h_n, rtol=0, atol=1e-14)


def test_dropout_in_eval_mode_is_no_dropout(rng):
    t, m = _pair(3, 4, num_layers=3, dropout=0.5, bidirectional=True)
    t.eval()
    m.eval()
    assert not m.training
    x = rng.standard_normal((6, 2, 3))
    y, (h, c) = m(x)
    yt, (ht, ct) = t(_t(x))
    np.testing.assert_allclose(y, yt.detach().numpy(), **_TOL[np.float64])
    np.testing.assert_allclose(h, ht.detach().numpy(), **_TOL[np.float64])
    # Twice in eval mode: identical (no randomness).
    y2, _ = m(x)
    np.testing.assert_array_equal(y, y2)
    # And it equals a module without dropout holding the same parameters.
    plain = pylstm.LSTM(3, 4, num_layers=3, bidirectional=True, dtype=np.float64)
    plain.load_state_dict(m.state_dict())
    np.testing.assert_array_equal(plain(x)[0], y)
    # In training mode dropout does change the output (so the test above is meaningful).
    m.train()
    assert m.training
    assert not np.allclose(m(x)[0], y)


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("bias", [True, False])
# Unbatched, a small batch, and batches of 16 and 48 rows: one step of those reads the
# weights in place through the transposed tile kernel (float32: a half tile; a whole and a
# half tile).
@pytest.mark.parametrize("lead", [(), (4,), (16,), (48,)], ids=["unbatched", "b4", "b16", "b48"])
@pytest.mark.parametrize("with_hx", [True, False])
def test_lstm_cell_vs_torch(dtype, bias, lead, with_hx, rng):
    n_in, H = 3, 5
    torch.manual_seed(1)
    t = torch.nn.LSTMCell(n_in, H, bias=bias, dtype=_TDT[dtype])
    cell = pylstm.LSTMCell(n_in, H, bias=bias, dtype=dtype, seed=9)
    cell.load_state_dict(t.state_dict())
    x = rng.standard_normal(lead + (n_in,)).astype(dtype)
    hx = (rng.standard_normal(lead + (H,)).astype(dtype),
          rng.standard_normal(lead + (H,)).astype(dtype))
    xt = _t(x, True)
    h0t = _t(hx[0], True) if with_hx else torch.zeros(lead + (H,), dtype=_TDT[dtype],
                                                      requires_grad=True)
    c0t = _t(hx[1], True) if with_hx else torch.zeros(lead + (H,), dtype=_TDT[dtype],
                                                      requires_grad=True)
    ht, ct = t(xt, (h0t, c0t))
    (h, c), tape = cell.forward(x, hx if with_hx else None, requires_grad=True)
    tol = _TOL[dtype]
    assert h.shape == tuple(ht.shape) and h.dtype == dtype
    np.testing.assert_allclose(h, ht.detach().numpy(), **tol)
    np.testing.assert_allclose(c, ct.detach().numpy(), **tol)
    h_inf, c_inf = cell(x, hx if with_hx else None)
    np.testing.assert_array_equal(h_inf, h)
    np.testing.assert_array_equal(c_inf, c)
    dh = rng.standard_normal(h.shape).astype(dtype)
    dc = rng.standard_normal(c.shape).astype(dtype)
    ((ht * _t(dh)).sum() + (ct * _t(dc)).sum()).backward()
    dx, (dhp, dcp) = cell.backward(tape, dh, dc)
    np.testing.assert_allclose(dx, xt.grad.numpy(), **tol)
    np.testing.assert_allclose(dhp, h0t.grad.numpy(), **tol)
    np.testing.assert_allclose(dcp, c0t.grad.numpy(), **tol)
    for name, p in t.named_parameters():
        np.testing.assert_allclose(cell.get_parameter(name).grad, p.grad.numpy(), **tol,
                                   err_msg=name)


def test_cell_unrolled_equals_lstm(rng):
    """Stepping LSTMCell with nn.LSTM's layer-0 weights reproduces the sequence module."""
    m = pylstm.LSTM(3, 4, dtype=np.float64, seed=2)
    cell = pylstm.LSTMCell(3, 4, dtype=np.float64)
    cell.load_state_dict({k[:-3]: v for k, v in m.state_dict().items()})
    x = rng.standard_normal((5, 2, 3))
    y, (hn, cn) = m(x)
    h = c = np.zeros((2, 4))
    for step in range(5):
        h, c = cell(x[step], (h, c))
        np.testing.assert_allclose(h, y[step], rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(c, cn[0], rtol=1e-12, atol=1e-14)


def test_gradients_accumulate_and_zero_grad(rng):
    t, m = _pair(2, 3, num_layers=2)
    x = rng.standard_normal((3, 2, 2))
    (y, _), tape = m.forward(x, requires_grad=True)
    dy = rng.standard_normal(y.shape)
    m.backward(tape, dy)
    once = {k: v.copy() for k, v in _grads(m).items()}
    assert any(np.any(v) for v in once.values())
    _, tape2 = m.forward(x, requires_grad=True)
    m.backward(tape2, dy)
    for k in once:
        np.testing.assert_allclose(m.get_parameter(k).grad, 2 * once[k], rtol=1e-12, atol=1e-15)
    m.zero_grad()
    assert all(not np.any(v) for v in _grads(m).values())


def test_state_dict_round_trip_torch_to_pylstm_and_back(rng):
    torch.manual_seed(4)
    t = torch.nn.LSTM(3, 5, num_layers=2, bidirectional=True, proj_size=2)
    m = pylstm.LSTM(3, 5, num_layers=2, bidirectional=True, proj_size=2, seed=0)
    m.load_state_dict({k: v.numpy() for k, v in t.state_dict().items()})
    sd = m.state_dict()
    assert list(sd) == list(t.state_dict())
    for k, v in t.state_dict().items():
        assert sd[k].dtype == np.float32
        np.testing.assert_array_equal(sd[k], v.numpy())
    # state_dict returns copies: editing them does not change the module.
    key = next(iter(sd))
    sd[key][...] = 0
    assert np.any(m.get_parameter(key).data)
    # And back into a fresh torch module.
    t2 = torch.nn.LSTM(3, 5, num_layers=2, bidirectional=True, proj_size=2)
    t2.load_state_dict({k: torch.from_numpy(v) for k, v in m.state_dict().items()})
    x = rng.standard_normal((4, 2, 3)).astype(np.float32)
    np.testing.assert_allclose(m(x)[0], t2(_t(x))[0].detach().numpy(), rtol=2e-5, atol=2e-6)


def test_load_state_dict_lists_wrong_names_and_shapes():
    m = pylstm.LSTM(3, 4, num_layers=2)
    good = m.state_dict()
    bad = dict(good)
    del bad["weight_hh_l1"]
    del bad["bias_ih_l0"]
    bad["weight_ih_l7"] = np.zeros((16, 3), np.float32)
    bad["weight_ih_l0"] = np.zeros((16, 5), np.float32)
    bad["bias_hh_l1"] = np.zeros(15, np.float32)
    with pytest.raises(pylstm.ShapeError) as err:
        m.load_state_dict(bad)
    msg = str(err.value)
    for name in ("weight_hh_l1", "bias_ih_l0", "weight_ih_l7", "weight_ih_l0", "bias_hh_l1"):
        assert name in msg, (name, msg)
    assert "[16, 3]" in msg and "[16, 5]" in msg  # expected and actual shapes
    assert "[16]" in msg and "[15]" in msg
    # Nothing was loaded by the failed call.
    for k, v in good.items():
        np.testing.assert_array_equal(m.get_parameter(k).data, v)
    # A torch state dict of a differently shaped module is refused the same way.
    t = torch.nn.LSTM(3, 5, num_layers=2)
    with pytest.raises(pylstm.ShapeError, match="weight_hh_l0"):
        m.load_state_dict(t.state_dict())


def test_torch_tensors_are_accepted_as_inputs(rng):
    """x, hx and lengths may be torch tensors (even ones requiring grad), like numpy arrays."""
    t, m = _pair(3, 4, num_layers=2, bidirectional=True)
    x = rng.standard_normal((5, 2, 3))
    hx = (rng.standard_normal((4, 2, 4)), rng.standard_normal((4, 2, 4)))
    want, (h_want, c_want) = m(x, hx, lengths=[5, 3])
    y, (h, c) = m(_t(x, True), (_t(hx[0], True), _t(hx[1], True)), lengths=torch.tensor([5, 3]))
    np.testing.assert_array_equal(y, want)
    np.testing.assert_array_equal(h, h_want)
    np.testing.assert_array_equal(c, c_want)
    cell = pylstm.LSTMCell(3, 4, dtype=np.float64, seed=0)
    np.testing.assert_array_equal(cell(_t(x[0], True))[0], cell(x[0])[0])
