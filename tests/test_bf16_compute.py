"""The opt-in bfloat16 compute path (``compute_dtype="bfloat16"``) on AMX tiles.

Its products round X, W, R and each step's hidden state to bfloat16 and sum in float32. The
reference here does exactly that in float64 numpy (ONNX's equations, written out), so the
only differences left are float32 summation order and, rarely, a hidden value that lands on
the other side of a bfloat16 rounding boundary: the bound is stated per test. Tests of the
path itself skip only where the CPU has no AMX (their names say so); the error a user gets
there is tested on every machine, with AMX switched off in a child process.
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

import pylstm
import pylstm.functional as F
from pylstm.errors import BackendError, DTypeError, LstmValueError

AMX_MISSING = pylstm.info()["amx"] != "available"
needs_amx = pytest.mark.skipif(AMX_MISSING, reason=f"this CPU has no AMX: {pylstm.info()['amx']}")


def to_bf16(a: np.ndarray) -> np.ndarray:
    """Rounds float32 values to bfloat16 (to nearest, ties to even), returned as float64."""
    bits = np.ascontiguousarray(a, np.float32).view(np.uint32).astype(np.uint64)
    rounded = ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16) << 16
    return rounded.astype(np.uint32).view(np.float32).astype(np.float64)


def sigmoid(v):
    return 1.0 / (1.0 + np.exp(-v))


def reference(X, W, R, B=None, lens=None, h0=None, c0=None, P=None, clip=None,
              direction="forward"):
    """ONNX LSTM (default activations) with the bf16 path's roundings, in float64."""
    T, batch, _ = X.shape
    nd, g, _ = W.shape
    h = g // 4
    lens = np.full(batch, T) if lens is None else np.asarray(lens)
    Y = np.zeros((T, nd, batch, h))
    Yh, Yc = np.zeros((nd, batch, h)), np.zeros((nd, batch, h))
    for d in range(nd):
        reverse = direction == "reverse" or (direction == "bidirectional" and d == 1)
        Wd, Rd = to_bf16(W[d]), to_bf16(R[d])
        bias = np.zeros(g) if B is None else B[d, :g].astype(np.float64) + B[d, g:]
        pi, po, pf = (np.zeros(h),) * 3 if P is None else np.split(P[d].astype(np.float64), 3)
        for b in range(batch):
            hs = np.zeros(h) if h0 is None else h0[d, b].astype(np.float64)
            cs = np.zeros(h) if c0 is None else c0[d, b].astype(np.float64)
            times = range(lens[b])[::-1] if reverse else range(lens[b])
            for t in times:
                hs_b = to_bf16(hs.astype(np.float32))
                z = Wd @ to_bf16(X[t, b]) + Rd @ hs_b + bias
                zi, zo, zf, zc = np.split(z, 4)
                zi, zf = zi + pi * cs, zf + pf * cs
                if clip is not None:
                    zi, zf, zc = (np.clip(v, -clip, clip) for v in (zi, zf, zc))
                cs = sigmoid(zf) * cs + sigmoid(zi) * np.tanh(zc)
                zo = zo + po * cs
                if clip is not None:
                    zo = np.clip(zo, -clip, clip)
                hs = sigmoid(zo) * np.tanh(cs)
                Y[t, d, b] = hs
            Yh[d, b], Yc[d, b] = hs, cs
    return Y, Yh, Yc


def onnx_case(rng, T, batch, inp, h, nd=1, scale=0.3):
    X = rng.standard_normal((T, batch, inp)).astype(np.float32)
    W = (rng.standard_normal((nd, 4 * h, inp)) * scale / np.sqrt(inp)).astype(np.float32)
    R = (rng.standard_normal((nd, 4 * h, h)) * scale / np.sqrt(h)).astype(np.float32)
    B = (rng.standard_normal((nd, 8 * h)) * 0.1).astype(np.float32)
    return X, W, R, B


# Mean and max absolute error allowed against the reference: float32 sums in another order
# (~1e-7) and the odd hidden value rounded to the neighbouring bfloat16 (2^-8 relative).
MEAN_BOUND, MAX_BOUND = 1e-6, 2e-3


def assert_close(got, want):
    for g, w in zip(got, want, strict=True):
        err = np.abs(np.asarray(g, np.float64) - w)
        assert err.mean() < MEAN_BOUND and err.max() < MAX_BOUND, (err.mean(), err.max())


@needs_amx
# The small ones multiply each step's inputs inside the time loop; the last (its weights
# past an L2 per thread) projects every step's inputs before it.
@pytest.mark.parametrize("T,batch,inp,h", [(6, 1, 5, 3), (9, 7, 40, 33), (4, 37, 64, 48),
                                          (3, 16, 100, 128), (3, 5, 1200, 400)])
def test_bf16_compute_on_amx_matches_the_rounded_reference(T, batch, inp, h):
    X, W, R, B = onnx_case(np.random.default_rng(T * batch), T, batch, inp, h)
    got = F.lstm(X, W, R, B, compute_dtype="bfloat16")
    assert_close(got, reference(X, W, R, B))


@needs_amx
@pytest.mark.parametrize("direction", ["reverse", "bidirectional"])
def test_bf16_compute_on_amx_lengths_states_peepholes_and_clip(direction):
    rng = np.random.default_rng(3)
    nd = 2 if direction == "bidirectional" else 1
    X, W, R, B = onnx_case(rng, 8, 5, 20, 24, nd)
    lens = np.array([8, 3, 5, 1, 8], np.int32)
    h0 = rng.standard_normal((nd, 5, 24)).astype(np.float32) * 0.5
    c0 = rng.standard_normal((nd, 5, 24)).astype(np.float32) * 0.5
    P = (rng.standard_normal((nd, 72)) * 0.3).astype(np.float32)
    got = F.lstm(X, W, R, B, lens, h0, c0, P, clip=1.5, direction=direction,
                 compute_dtype="bfloat16")
    assert_close(got, reference(X, W, R, B, lens, h0, c0, P, clip=1.5, direction=direction))
    assert not np.any(got[0][3:, :, 1]), "Y is zero past a sequence's length"


@needs_amx
def test_bf16_compute_on_amx_module_tracks_float32_and_its_packs_follow_the_weights():
    rng = np.random.default_rng(5)
    kw = dict(num_layers=2, bidirectional=True, batch_first=True, seed=1)
    m = pylstm.LSTM(24, 32, compute_dtype="bfloat16", **kw)
    ref = pylstm.LSTM(24, 32, **kw)
    x = rng.standard_normal((6, 11, 24)).astype(np.float32)
    lengths = [11, 4, 9, 11, 1, 7]
    for _ in range(2):
        ref.load_state_dict(m.state_dict())
        y, (hn, cn) = m(x, lengths=lengths)
        y32, (hn32, cn32) = ref(x, lengths=lengths)
        for a, b in ((y, y32), (hn, hn32), (cn, cn32)):
            assert a.shape == b.shape and a.dtype == np.float32
            assert 0 < np.abs(a - b).max() < 3e-2, np.abs(a - b).max()
        # New weights (as an optimiser step makes): the tile packs must be rebuilt.
        for p in m.parameters():
            p.data += 0.05 * rng.standard_normal(p.data.shape).astype(np.float32)
        m.mark_updated()


@needs_amx
def test_bf16_compute_on_amx_projection_and_unbatched():
    rng = np.random.default_rng(6)
    m = pylstm.LSTM(12, 40, proj_size=16, compute_dtype="bfloat16", seed=2)
    ref = pylstm.LSTM(12, 40, proj_size=16, seed=2)
    x = rng.standard_normal((7, 12)).astype(np.float32)
    y, (hn, cn) = m(x)
    y32, (hn32, cn32) = ref(x)
    assert y.shape == (7, 16) and hn.shape == (1, 16) and cn.shape == (1, 40)
    assert np.abs(y - y32).max() < 2e-2 and np.abs(cn - cn32).max() < 2e-2


@needs_amx
def test_bf16_compute_on_amx_training_forward_stays_float32():
    m = pylstm.LSTM(8, 16, compute_dtype="bfloat16", seed=3)
    ref = pylstm.LSTM(8, 16, seed=3)
    x = np.random.default_rng(7).standard_normal((5, 2, 8)).astype(np.float32)
    (y, _), tape = m.forward(x, requires_grad=True)
    np.testing.assert_array_equal(y, ref(x)[0])
    assert tape is not None


@needs_amx
def test_bf16_compute_on_amx_bad_arguments_name_themselves():
    X, W, R, B = onnx_case(np.random.default_rng(8), 3, 2, 4, 8)
    with pytest.raises(LstmValueError, match="compute_dtype: expected one of float32, bfloat16"):
        F.lstm(X, W, R, B, compute_dtype="float16")
    with pytest.raises(DTypeError, match="compute_dtype='bfloat16': expected float32 inputs"):
        F.lstm(X.astype(np.float64), W.astype(np.float64), R.astype(np.float64),
               compute_dtype="bfloat16")
    with pytest.raises(LstmValueError, match="inference only"):
        F.lstm(X, W, R, B, compute_dtype="bfloat16", requires_grad=True)
    with pytest.raises(BackendError, match="only the 'rust' backend"):
        F.lstm(X, W, R, B, compute_dtype="bfloat16", backend="onnxruntime")
    with pytest.raises(LstmValueError, match="bf16_weights: expected False"):
        F.lstm(X, W, R, B, compute_dtype="bfloat16", bf16_weights=True)
    with pytest.raises(DTypeError, match="expected dtype float32"):
        pylstm.LSTM(4, 8, dtype=np.float64, compute_dtype="bfloat16")


def test_bf16_compute_where_amx_is_unavailable_says_so():
    """Runs on every machine: a child process with AMX switched off stands in for a CPU
    without it (where the same message names the missing flags)."""
    code = (
        "import numpy as np, pylstm, pylstm.functional as F\n"
        "from pylstm.errors import LstmValueError\n"
        "info = pylstm.info()\n"
        "assert info['compute_dtypes'] == ['float32'], info\n"
        "x, w, r = (np.ones(s, np.float32) for s in ((2, 1, 4), (1, 32, 4), (1, 32, 8)))\n"
        "for make in (lambda: pylstm.LSTM(4, 8, compute_dtype='bfloat16'),\n"
        "             lambda: F.lstm(x, w, r, compute_dtype='bfloat16')):\n"
        "    try:\n"
        "        make()\n"
        "    except LstmValueError as e:\n"
        "        print(e)\n"
        "    else:\n"
        "        raise SystemExit('no error')\n"
    )
    env = dict(os.environ, PYLSTM_NO_AMX="1")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert len(lines) == 2
    for line in lines:
        assert line.startswith("compute_dtype='bfloat16': needs AMX bfloat16 tiles, "
                               "unavailable here")


@needs_amx
def test_bf16_compute_on_amx_reported_by_info():
    info = pylstm.info()
    assert info["compute_dtypes"] == ["float32", "bfloat16"] and info["amx"] == "available"
