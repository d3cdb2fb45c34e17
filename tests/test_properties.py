"""Property tests (hypothesis) over shapes, directions, lengths and layouts, against the numpy
reference in conftest.py and against invariants that hold for any input."""

from __future__ import annotations

import numpy as np
import pytest

import pylstm
from pylstm import functional as F

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

SETTINGS = settings(max_examples=60, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow])


@st.composite
def problems(draw):
    T = draw(st.integers(1, 7))
    nb = draw(st.integers(1, 5))
    n_in = draw(st.integers(1, 6))
    H = draw(st.integers(1, 7))
    direction = draw(st.sampled_from(["forward", "reverse", "bidirectional"]))
    lens = draw(st.one_of(st.none(), st.lists(st.integers(1, T), min_size=nb, max_size=nb)))
    flags = draw(st.fixed_dictionaries({k: st.booleans() for k in
                                        ("bias", "peepholes", "h0", "c0", "layout", "f32")}))
    seed = draw(st.integers(0, 2**31 - 1))
    return dict(T=T, nb=nb, n_in=n_in, H=H, direction=direction, lens=lens, seed=seed, **flags)


def _inputs(p):
    rng = np.random.default_rng(p["seed"])
    nd = 2 if p["direction"] == "bidirectional" else 1
    T, nb, n_in, H = p["T"], p["nb"], p["n_in"], p["H"]
    a = {"X": rng.standard_normal((T, nb, n_in)),
         "W": rng.standard_normal((nd, 4 * H, n_in)) * 0.5,
         "R": rng.standard_normal((nd, 4 * H, H)) * 0.5}
    if p["bias"]:
        a["B"] = rng.standard_normal((nd, 8 * H)) * 0.5
    if p["peepholes"]:
        a["P"] = rng.standard_normal((nd, 3 * H)) * 0.5
    if p["h0"]:
        a["initial_h"] = rng.standard_normal((nd, nb, H)) * 0.5
    if p["c0"]:
        a["initial_c"] = rng.standard_normal((nd, nb, H)) * 0.5
    if p["lens"] is not None:
        a["sequence_lens"] = np.array(p["lens"])
    return a


def _ours(a, p, **extra):
    dt = np.float32 if p["f32"] else np.float64
    kw = {k: (v if k == "sequence_lens" else v.astype(dt)) for k, v in a.items()}
    X, W, R = kw.pop("X"), kw.pop("W"), kw.pop("R")
    if p["layout"]:
        X = np.ascontiguousarray(X.transpose(1, 0, 2))
        for s in ("initial_h", "initial_c"):
            if s in kw:
                kw[s] = np.ascontiguousarray(kw[s].transpose(1, 0, 2))
    out = F.lstm(X, W, R, **kw, direction=p["direction"], layout=int(p["layout"]), **extra)
    Y, Yh, Yc = out[:3]
    assert Y.dtype == dt
    if p["layout"]:
        Y, Yh, Yc = Y.transpose(1, 2, 0, 3), Yh.transpose(1, 0, 2), Yc.transpose(1, 0, 2)
    return (Y, Yh, Yc, *out[3:])


@SETTINGS
@given(p=problems())
def test_functional_matches_numpy_reference(ref, p):
    a = _inputs(p)
    Y, Yh, Yc = _ours(a, p)
    kw = dict(a)
    want = ref.onnx_lstm(kw.pop("X"), kw.pop("W"), kw.pop("R"), **kw, direction=p["direction"])
    nd = 2 if p["direction"] == "bidirectional" else 1
    assert Y.shape == (p["T"], nd, p["nb"], p["H"])
    assert Yh.shape == Yc.shape == (nd, p["nb"], p["H"])
    tol = 2e-5 if p["f32"] else 1e-11
    for g, w in zip((Y, Yh, Yc), want, strict=True):
        np.testing.assert_allclose(g, w, rtol=tol, atol=tol)
    if p["lens"] is not None:
        for b, n in enumerate(p["lens"]):
            assert not np.any(Y[n:, :, b])


@SETTINGS
@given(p=problems())
def test_padding_and_batch_order_do_not_matter(p):
    """Each sequence's result is independent of the others, of its padding values, and of its
    position in the batch; its gradient past its length is exactly zero."""
    a = _inputs(p)
    lens = p["lens"] or [p["T"]] * p["nb"]
    Y, Yh, Yc, tape = _ours(a, p, requires_grad=True)
    rng = np.random.default_rng(p["seed"] + 1)
    perm = rng.permutation(p["nb"])
    b2 = {k: v.copy() for k, v in a.items()}
    b2["X"] = b2["X"][:, perm]
    for b in range(p["nb"]):
        for t_ in range(lens[perm[b]], p["T"]):
            b2["X"][t_, b] = rng.standard_normal(p["n_in"]) * 100  # garbage padding
    for s in ("initial_h", "initial_c"):
        if s in b2:
            b2[s] = b2[s][:, perm]
    if "sequence_lens" in b2:
        b2["sequence_lens"] = b2["sequence_lens"][perm]
    if p["lens"] is None:
        b2["X"] = a["X"][:, perm]  # without lengths every step is valid: no padding
    Y2, Yh2, Yc2 = _ours(b2, p)
    tol = 1e-5 if p["f32"] else 1e-12
    np.testing.assert_allclose(Y2, Y[:, :, perm], rtol=tol, atol=tol)
    np.testing.assert_allclose(Yh2, Yh[:, perm], rtol=tol, atol=tol)
    np.testing.assert_allclose(Yc2, Yc[:, perm], rtol=tol, atol=tol)
    g = F.lstm_backward(tape, np.ones(tape_shape(Y, p), Y.dtype), None, None)
    gx = g["X"].transpose(1, 0, 2) if p["layout"] else g["X"]
    for b, n in enumerate(lens):
        assert not np.any(gx[n:, b])


def tape_shape(Y, p):
    """dY's shape in the layout the forward was called with."""
    return Y.transpose(2, 0, 1, 3).shape if p["layout"] else Y.shape


@st.composite
def module_configs(draw):
    return dict(
        T=draw(st.integers(1, 6)), nb=draw(st.integers(1, 4)), n_in=draw(st.integers(1, 5)),
        H=draw(st.integers(2, 6)), num_layers=draw(st.integers(1, 3)),
        bidirectional=draw(st.booleans()), proj=draw(st.booleans()),
        batch_first=draw(st.booleans()), bias=draw(st.booleans()),
        lengths=draw(st.booleans()), seed=draw(st.integers(0, 2**31 - 1)))


@SETTINGS
@given(c=module_configs())
def test_module_lengths_equal_running_each_sequence_alone(c):
    """LSTM(x, lengths) row b equals LSTM on sequence b alone, truncated to its length."""
    rng = np.random.default_rng(c["seed"])
    proj = c["H"] - 1 if c["proj"] else 0
    m = pylstm.LSTM(c["n_in"], c["H"], num_layers=c["num_layers"], bias=c["bias"],
                    batch_first=c["batch_first"], bidirectional=c["bidirectional"],
                    proj_size=proj, dtype=np.float64, seed=c["seed"] % 1000)
    T, nb = c["T"], c["nb"]
    lens = [int(v) for v in rng.integers(1, T + 1, nb)] if c["lengths"] else [T] * nb
    x = rng.standard_normal((nb, T, c["n_in"]))
    nld = c["num_layers"] * (2 if c["bidirectional"] else 1)
    h0 = rng.standard_normal((nld, nb, proj or c["H"]))
    c0 = rng.standard_normal((nld, nb, c["H"]))
    xin = x if c["batch_first"] else x.transpose(1, 0, 2)
    y, (hn, cn) = m(xin, (h0, c0), lengths=lens if c["lengths"] else None)
    yb = y if c["batch_first"] else y.transpose(1, 0, 2)
    assert yb.shape[1] == max(lens)
    for b in range(nb):
        xs = x[b, :lens[b]]
        ys, (hs, cs) = m(xs[None] if c["batch_first"] else xs[:, None],
                         (h0[:, b:b + 1], c0[:, b:b + 1]))
        ys = ys[0] if c["batch_first"] else ys[:, 0]
        np.testing.assert_allclose(yb[b, :lens[b]], ys, rtol=1e-10, atol=1e-12)
        assert not np.any(yb[b, lens[b]:])
        np.testing.assert_allclose(hn[:, b], hs[:, 0], rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(cn[:, b], cs[:, 0], rtol=1e-10, atol=1e-12)
