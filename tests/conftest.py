"""Shared fixtures for the engine correctness suite: a small, independent numpy reference of
the ONNX LSTM operator (float64, layout 0) written from the ONNX specification, with
onnxruntime's reading of the parts the specification leaves open (activation alpha/beta
consumption and defaults, clip applied to each gate's input, ``input_forget`` as f = 1 - i)."""

from __future__ import annotations

import os
import types
import zlib

# The engine keeps small problems on the calling thread; the tests use small problems, so make
# every call go through the thread pool (the multi-threaded paths are what needs testing).
os.environ.setdefault("PYLSTM_INLINE_WORK", "0")

import numpy as np
import pytest

# Parameters each activation takes (alpha, beta) and onnxruntime's defaults for missing ones
# (onnxruntime only has defaults for LeakyRelu, HardSigmoid and Elu; the others read 0).
_ACT_PARAMS = {
    "relu": (0, 0), "tanh": (0, 0), "sigmoid": (0, 0), "softsign": (0, 0), "softplus": (0, 0),
    "affine": (1, 1), "scaledtanh": (1, 1), "hardsigmoid": (1, 1),
    "leakyrelu": (1, 0), "thresholdedrelu": (1, 0), "elu": (1, 0),
}
_ACT_DEFAULTS = {"leakyrelu": (0.01, 0.0), "hardsigmoid": (0.2, 0.5), "elu": (1.0, 0.0)}
ACTIVATIONS = ["Relu", "Tanh", "Sigmoid", "Affine", "LeakyRelu", "ThresholdedRelu", "ScaledTanh",
               "HardSigmoid", "Elu", "Softsign", "Softplus"]


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def activation(name: str, alpha: float, beta: float):
    """The ONNX activation ``name`` as a numpy function."""
    fns = {
        "relu": lambda x: np.maximum(x, 0.0),
        "tanh": np.tanh,
        "sigmoid": _sigmoid,
        "affine": lambda x: alpha * x + beta,
        "leakyrelu": lambda x: np.where(x >= 0, x, alpha * x),
        "thresholdedrelu": lambda x: np.where(x > alpha, x, 0.0),
        "scaledtanh": lambda x: alpha * np.tanh(beta * x),
        "hardsigmoid": lambda x: np.clip(alpha * x + beta, 0.0, 1.0),
        "elu": lambda x: np.where(x >= 0, x, alpha * (np.exp(np.minimum(x, 0.0)) - 1.0)),
        "softsign": lambda x: x / (1.0 + np.abs(x)),
        "softplus": lambda x: np.logaddexp(0.0, x),
    }
    return fns[name.lower()]


def resolve(activations, alpha, beta, nd):
    """Per direction, three numpy functions (f, g, h), consuming alpha/beta in order."""
    names = list(activations) if activations is not None else ["Sigmoid", "Tanh", "Tanh"] * nd
    alphas, betas = list(alpha or []), list(beta or [])
    fns = []
    for name in names:
        na, nb = _ACT_PARAMS[name.lower()]
        da, db = _ACT_DEFAULTS.get(name.lower(), (0.0, 0.0))
        a = alphas.pop(0) if na and alphas else da
        b = betas.pop(0) if nb and betas else db
        fns.append(activation(name, a, b))
    return [fns[3 * d:3 * d + 3] for d in range(nd)]


def onnx_lstm(X, W, R, B=None, sequence_lens=None, initial_h=None, initial_c=None, P=None, *,
              direction="forward", activations=None, activation_alpha=None,
              activation_beta=None, clip=None, input_forget=0):
    """The ONNX LSTM (layout 0) in float64, one sequence and one step at a time."""
    X, W, R = (np.asarray(a, np.float64) for a in (X, W, R))
    T, nb, _ = X.shape
    nd, H = W.shape[0], R.shape[-1]
    B = np.zeros((nd, 8 * H)) if B is None else np.asarray(B, np.float64)
    P = np.zeros((nd, 3 * H)) if P is None else np.asarray(P, np.float64)
    h0 = np.zeros((nd, nb, H)) if initial_h is None else np.asarray(initial_h, np.float64)
    c0 = np.zeros((nd, nb, H)) if initial_c is None else np.asarray(initial_c, np.float64)
    lens = [T] * nb if sequence_lens is None else [int(v) for v in sequence_lens]
    acts = resolve(activations, activation_alpha, activation_beta, nd)
    cl = (lambda z: np.clip(z, -clip, clip)) if clip is not None else (lambda z: z)
    Y = np.zeros((T, nd, nb, H))
    Yh, Yc = np.zeros((nd, nb, H)), np.zeros((nd, nb, H))
    for d in range(nd):
        f, g, h = acts[d]
        rev = direction == "reverse" or d == 1
        bias = B[d, :4 * H] + B[d, 4 * H:]
        pi, po, pf = P[d, :H], P[d, H:2 * H], P[d, 2 * H:]
        for b in range(nb):
            ht, ct = h0[d, b], c0[d, b]
            steps = range(lens[b] - 1, -1, -1) if rev else range(lens[b])
            for t in steps:
                z = W[d] @ X[t, b] + R[d] @ ht + bias
                zi, zo, zf, zc = z[:H], z[H:2 * H], z[2 * H:3 * H], z[3 * H:]
                i = f(cl(zi + pi * ct))
                fg = 1.0 - i if input_forget else f(cl(zf + pf * ct))
                ct = fg * ct + i * g(cl(zc))
                o = f(cl(zo + po * ct))
                ht = o * h(ct)
                Y[t, d, b] = ht
            Yh[d, b], Yc[d, b] = ht, ct
    return Y, Yh, Yc


def random_onnx_inputs(rng, T, nb, n_in, H, nd, dtype=np.float64, *, bias=True, peepholes=False,
                       states=False, scale=0.5):
    """Random ONNX LSTM inputs as a dict of keyword arguments for ``functional.lstm``."""
    def rnd(*shape):
        return (rng.standard_normal(shape) * scale).astype(dtype)

    args = dict(X=rnd(T, nb, n_in) / scale, W=rnd(nd, 4 * H, n_in), R=rnd(nd, 4 * H, H))
    if bias:
        args["B"] = rnd(nd, 8 * H)
    if peepholes:
        args["P"] = rnd(nd, 3 * H)
    if states:
        args["initial_h"] = rnd(nd, nb, H)
        args["initial_c"] = rnd(nd, nb, H)
    return args


@pytest.fixture(scope="session")
def ref():
    """The numpy reference (``ref.onnx_lstm``, ``ref.random_inputs``, ``ref.ACTIVATIONS``)."""
    return types.SimpleNamespace(onnx_lstm=onnx_lstm, random_inputs=random_onnx_inputs,
                                 ACTIVATIONS=ACTIVATIONS, activation=activation)


@pytest.fixture
def rng(request):
    """A generator seeded from the test's name (reproducible, different per test)."""
    return np.random.default_rng(zlib.crc32(request.node.nodeid.encode()))
