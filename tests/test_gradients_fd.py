"""Every gradient of every feature against central finite differences in float64."""

from __future__ import annotations

import numpy as np
import pytest

import pylstm
from pylstm import functional as F

ACTIVATIONS = ["Relu", "Tanh", "Sigmoid", "Affine", "LeakyRelu", "ThresholdedRelu", "ScaledTanh",
               "HardSigmoid", "Elu", "Softsign", "Softplus"]
_PARAMS = {"Affine": 2, "ScaledTanh": 2, "HardSigmoid": 2, "LeakyRelu": 1, "ThresholdedRelu": 1,
           "Elu": 1}
EPS = 1e-6


def numeric_grad(loss, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Central differences of ``loss()`` with respect to every element of each array (perturbed
    in place and restored)."""
    out = {}
    for name, arr in arrays.items():
        g = np.zeros_like(arr)
        flat, gflat = arr.reshape(-1), g.reshape(-1)
        assert np.shares_memory(flat, arr)
        for k in range(flat.size):
            old = flat[k]
            flat[k] = old + EPS
            up = loss()
            flat[k] = old - EPS
            down = loss()
            flat[k] = old
            gflat[k] = (up - down) / (2 * EPS)
        out[name] = g
    return out


def assert_grads_close(analytic, numeric, rtol=1e-5, atol=1e-7):
    assert set(analytic) == set(numeric), (set(analytic), set(numeric))
    for name in numeric:
        assert analytic[name].shape == numeric[name].shape, name
        np.testing.assert_allclose(analytic[name], numeric[name], rtol=rtol, atol=atol,
                                   err_msg=name)


# ----------------------------------------------------------------------------- functional.lstm


def _functional_case(rng, T=3, nb=2, n_in=2, H=2, direction="forward", layout=0, lens=None,
                     peepholes=True, states=True, bias=True, **attrs):
    nd = 2 if direction == "bidirectional" else 1
    x = {"X": rng.standard_normal((nb, T, n_in) if layout else (T, nb, n_in)),
         "W": rng.standard_normal((nd, 4 * H, n_in)) * 0.6,
         "R": rng.standard_normal((nd, 4 * H, H)) * 0.6}
    if bias:
        x["B"] = rng.standard_normal((nd, 8 * H)) * 0.6
    if peepholes:
        x["P"] = rng.standard_normal((nd, 3 * H)) * 0.6
    if states:
        shape = (nb, nd, H) if layout else (nd, nb, H)
        x["initial_h"] = rng.standard_normal(shape) * 0.6
        x["initial_c"] = rng.standard_normal(shape) * 0.6
    kw = dict(direction=direction, layout=layout, **attrs)
    if lens is not None:
        kw["sequence_lens"] = np.array(lens)
    return x, kw


def check_functional(rng, x, kw, rtol=1e-5, atol=1e-7):
    inputs = {k: v.copy() for k, v in x.items()}

    def call(**extra):
        a = dict(inputs)
        return F.lstm(a.pop("X"), a.pop("W"), a.pop("R"), **a, **kw, **extra)

    Y, Yh, Yc, tape = call(requires_grad=True)
    dY, dYh, dYc = (rng.standard_normal(a.shape) for a in (Y, Yh, Yc))
    analytic = F.lstm_backward(tape, dY, dYh, dYc)

    def loss():
        y, yh, yc = call()
        return float(np.sum(y * dY) + np.sum(yh * dYh) + np.sum(yc * dYc))

    numeric = numeric_grad(loss, inputs)
    assert_grads_close(analytic, numeric, rtol, atol)
    return analytic


@pytest.mark.parametrize("direction", ["forward", "reverse", "bidirectional"])
@pytest.mark.parametrize("layout", [0, 1])
@pytest.mark.parametrize("lens", [None, "varied"])
def test_functional_directions_layouts_lengths(direction, layout, lens, rng):
    lengths = [3, 1, 2] if lens else None
    x, kw = _functional_case(rng, T=3, nb=3, direction=direction, layout=layout, lens=lengths)
    check_functional(rng, x, kw)


@pytest.mark.parametrize("bias,peepholes,states", [(False, False, False), (True, False, True),
                                                   (False, True, False), (True, True, True)])
def test_functional_optional_inputs(bias, peepholes, states, rng):
    x, kw = _functional_case(rng, bias=bias, peepholes=peepholes, states=states,
                             direction="bidirectional")
    g = check_functional(rng, x, kw)
    for name in ("B", "P", "initial_h", "initial_c"):
        assert (name in g) == (name in x)
    if bias:  # both halves of B get the same gradient
        H = x["R"].shape[-1]
        np.testing.assert_array_equal(g["B"][:, :4 * H], g["B"][:, 4 * H:])


@pytest.mark.parametrize("direction", ["forward", "bidirectional"])
def test_functional_input_forget(direction, rng):
    x, kw = _functional_case(rng, direction=direction, input_forget=1, lens=[3, 2])
    g = check_functional(rng, x, kw)
    # The forget gate's weights are unused with input_forget (f = 1 - i).
    H = x["R"].shape[-1]
    assert not np.any(g["W"][:, 2 * H:3 * H]) and not np.any(g["R"][:, 2 * H:3 * H])
    assert not np.any(g["P"][:, 2 * H:])


@pytest.mark.parametrize("direction", ["forward", "reverse", "bidirectional"])
def test_functional_clip(direction, rng):
    x, kw = _functional_case(rng, T=4, direction=direction, clip=0.7, lens=[4, 2])
    check_functional(rng, x, kw)


def test_clip_bounds_gate_inputs_and_zeroes_their_gradient(rng):
    """With every gate input far beyond the clip, the gates are constants (f(+-clip)): the
    outputs follow from them, and no gradient flows into X, W, R, B, P or initial_h."""
    T, nb, n_in, H, clip = 3, 2, 2, 3, 0.5
    X = rng.standard_normal((T, nb, n_in)) * 0.1
    W = rng.standard_normal((1, 4 * H, n_in)) * 0.1
    R = rng.standard_normal((1, 4 * H, H)) * 0.1
    sign = np.where(rng.random(4 * H) < 0.5, -1.0, 1.0)
    B = np.concatenate([sign * 20.0, np.zeros(4 * H)])[None]
    P = rng.standard_normal((1, 3 * H)) * 0.1
    h0 = rng.standard_normal((1, nb, H)) * 0.1
    c0 = rng.standard_normal((1, nb, H)) * 0.1
    Y, Yh, Yc, tape = F.lstm(X, W, R, B, None, h0, c0, P, clip=clip, requires_grad=True)
    # Forward: gates are sigmoid(+-clip), cell candidate tanh(+-clip); h = o * tanh(c).
    z = sign * clip
    sig = 1 / (1 + np.exp(-z))
    i, o, f, g = sig[:H], sig[H:2 * H], sig[2 * H:3 * H], np.tanh(z[3 * H:])
    c = c0[0]
    for t in range(T):
        c = f * c + i * g
        np.testing.assert_allclose(Y[t, 0], o * np.tanh(c), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(Yc[0], c, rtol=1e-12, atol=1e-14)
    grads = F.lstm_backward(tape, np.ones_like(Y), np.ones_like(Yh), np.ones_like(Yc))
    for name in ("X", "W", "R", "B", "P", "initial_h"):
        assert not np.any(grads[name]), name
    # The cell state itself is not clipped: its gradient flows through f.
    np.testing.assert_allclose(grads["initial_c"][0], _dc0(f, o, c0[0], i, g, T), rtol=1e-10)


def _dc0(f, o, c0, i, g, T):
    """d/dc0 of sum_t sum(o * tanh(c_t)) + sum(c_T) with c_t = f c_{t-1} + i g (constants)."""
    total = np.zeros_like(c0)
    c = c0
    for t in range(1, T + 1):
        c = f * c + i * g
        total += o * (1 - np.tanh(c) ** 2) * f ** t
        if t == T:
            total += o * (1 - np.tanh(c) ** 2) * f ** t + f ** t  # Y_h and Y_c terms
    return total


@pytest.mark.parametrize("name", ACTIVATIONS)
@pytest.mark.parametrize("slot", [0, 1, 2])
def test_functional_every_activation(name, slot, rng):
    acts = ["Sigmoid", "Tanh", "Tanh"]
    acts[slot] = name
    alpha = [0.8] if name in _PARAMS else None
    beta = [0.3] if _PARAMS.get(name) == 2 else None
    if name == "ThresholdedRelu":
        alpha = [0.2]
    x, kw = _functional_case(rng, activations=acts, activation_alpha=alpha,
                             activation_beta=beta, lens=[3, 2])
    check_functional(rng, x, kw)


def test_functional_everything_at_once(rng):
    acts = ["HardSigmoid", "Softsign", "ScaledTanh", "Sigmoid", "Elu", "Affine"]
    x, kw = _functional_case(rng, T=4, nb=3, n_in=3, H=2, direction="bidirectional", layout=1,
                             lens=[4, 1, 3], clip=1.5, input_forget=1, activations=acts,
                             activation_alpha=[0.3, 0.9, 0.6, 1.1], activation_beta=[0.5, 0.7, 0.2])
    check_functional(rng, x, kw)


def test_functional_float32_gradients_close_to_float64(rng):
    x, kw = _functional_case(rng, direction="bidirectional", lens=[3, 2])
    a64 = {k: v.copy() for k, v in x.items()}
    a32 = {k: v.astype(np.float32) for k, v in x.items()}
    outs = []
    for a in (a64, a32):
        a = dict(a)
        Y, Yh, Yc, tape = F.lstm(a.pop("X"), a.pop("W"), a.pop("R"), **a, **kw,
                                 requires_grad=True)
        g = F.lstm_backward(tape, np.ones_like(Y), None, np.ones_like(Yc))
        outs.append(g)
    for k in outs[0]:
        assert outs[1][k].dtype == np.float32
        np.testing.assert_allclose(outs[1][k], outs[0][k], rtol=1e-4, atol=1e-5, err_msg=k)


def test_functional_backward_with_only_some_output_gradients(rng):
    """Omitted output gradients count as zero."""
    x, kw = _functional_case(rng, direction="bidirectional")
    a = {k: v.copy() for k, v in x.items()}
    Y, Yh, Yc, tape = F.lstm(a.pop("X"), a.pop("W"), a.pop("R"), **a, **kw, requires_grad=True)
    dYh = rng.standard_normal(Yh.shape)
    only_h = F.lstm_backward(tape, None, dYh, None)
    a = {k: v.copy() for k, v in x.items()}
    *_, tape2 = F.lstm(a.pop("X"), a.pop("W"), a.pop("R"), **a, **kw, requires_grad=True)
    explicit = F.lstm_backward(tape2, np.zeros_like(Y), dYh, np.zeros_like(Yc))
    for k in explicit:
        np.testing.assert_allclose(only_h[k], explicit[k], rtol=1e-13, atol=1e-15)
    assert any(np.any(v) for v in only_h.values())


# ----------------------------------------------------------------------------- modules


def _grads(m) -> dict[str, np.ndarray]:
    """Copies of every parameter's gradient by name."""
    return {n: p.grad.copy() for n, p in m.named_parameters()}


def _params(m) -> dict[str, np.ndarray]:
    """The live parameter arrays by name (perturbed in place by the finite differences)."""
    return {n: p.data for n, p in m.named_parameters()}


def check_module(m, x, rng, hx=None, lengths=None, masks_fixed=False):
    """Analytic gradients of m.forward/backward against central differences, for x, hx and
    every parameter. The module's dropout masks are recorded on the analytic pass and replayed
    on every finite-difference pass."""
    x = x.copy()
    hx = None if hx is None else (hx[0].copy(), hx[1].copy())
    recorded = []
    if masks_fixed:
        draw = m._masks

        def record(steps, batch):
            recorded.append(draw(steps, batch))
            return recorded[-1]
        m._masks = record
    (y, (hn, cn)), tape = m.forward(x, hx, lengths=lengths, requires_grad=True)
    dy, dh, dc = (rng.standard_normal(a.shape) for a in (y, hn, cn))
    m.zero_grad()
    dx, (dh0, dc0) = m.backward(tape, dy, dh, dc)
    analytic = {"x": dx, **_grads(m)}
    if hx is not None:
        analytic.update(h0=dh0, c0=dc0)
    if masks_fixed:
        assert len(recorded) == 1 and recorded[0] is not None
        m._masks = lambda steps, batch: recorded[0]

    def loss():
        yy, (hh, cc) = m.forward(x, hx, lengths=lengths)
        return float(np.sum(yy * dy) + np.sum(hh * dh) + np.sum(cc * dc))

    arrays = {"x": x, **_params(m)}
    if hx is not None:
        arrays.update(h0=hx[0], c0=hx[1])
    numeric = numeric_grad(loss, arrays)
    assert_grads_close(analytic, numeric)
    return recorded


MODULE_CONFIGS = [
    dict(),
    dict(proj_size=2),
    dict(num_layers=2),
    dict(bidirectional=True),
    dict(num_layers=2, bidirectional=True, proj_size=1, batch_first=True),
    dict(bias=False, num_layers=2),
]


@pytest.mark.parametrize("cfg", MODULE_CONFIGS,
                         ids=["-".join(f"{k}={v}" for k, v in c.items()) or "default"
                              for c in MODULE_CONFIGS])
@pytest.mark.parametrize("lengths", [None, [3, 1]], ids=["full", "lengths"])
def test_lstm_module(cfg, lengths, rng):
    m = pylstm.LSTM(2, 3, dtype=np.float64, seed=3, **cfg)
    T, nb = 3, 2
    x = rng.standard_normal((nb, T, 2) if m.batch_first else (T, nb, 2))
    nld, out = m.num_layers * m.num_directions, m.proj_size or 3
    hx = (rng.standard_normal((nld, nb, out)), rng.standard_normal((nld, nb, 3)))
    check_module(m, x, rng, hx, lengths=lengths)


def test_lstm_module_unbatched(rng):
    m = pylstm.LSTM(2, 3, num_layers=2, bidirectional=True, dtype=np.float64, seed=3)
    hx = (rng.standard_normal((4, 3)), rng.standard_normal((4, 3)))
    check_module(m, rng.standard_normal((3, 2)), rng, hx)


def _torch_free_stack(m, x, masks):
    """The multi-layer module as a composition of single-layer pylstm modules with the masks
    applied to each layer's output (inputs of layers 1..L-1)."""
    inp = x
    hs, cs = [], []
    for layer in range(m.num_layers):
        one = pylstm.LSTM(inp.shape[-1], m.hidden_size, bidirectional=m.bidirectional,
                          proj_size=m.proj_size, dtype=m.dtype)
        one.load_state_dict({k.replace(f"_l{layer}", "_l0"): v for k, v in _params(m).items()
                             if f"_l{layer}" in k})
        y, (h, c) = one(inp)
        hs.append(h)
        cs.append(c)
        inp = y * masks[layer] if layer < m.num_layers - 1 else y
    return inp, np.concatenate(hs), np.concatenate(cs)


@pytest.mark.parametrize("cfg", [dict(num_layers=2), dict(num_layers=3, bidirectional=True,
                                                         proj_size=2)],
                         ids=["2-layers", "3-layers-bi-proj"])
def test_lstm_dropout_train_mode_uses_the_tape_mask(cfg, rng):
    m = pylstm.LSTM(2, 3, dropout=0.4, dtype=np.float64, seed=5, **cfg)
    m.train()
    x = rng.standard_normal((4, 3, 2))
    recorded = check_module(m, x, rng, masks_fixed=True)
    masks = recorded[0]
    assert len(masks) == m.num_layers - 1
    keep = 1 - 0.4
    for mask in masks:
        assert set(np.unique(mask)) <= {0.0, 1 / keep} and np.any(mask == 0)
    # The recorded masks are the ones the engine applied.
    del m._masks
    m._masks = lambda steps, batch: masks
    y, (h, c) = m(x)
    ys, hs, cs = _torch_free_stack(m, x, masks)
    np.testing.assert_allclose(y, ys, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(h, hs, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(c, cs, rtol=1e-12, atol=1e-14)


def test_dropout_masks_live_in_the_tape(rng):
    """Two training forwards draw different masks; each tape's backward uses its own."""
    m = pylstm.LSTM(2, 3, num_layers=2, dropout=0.5, dtype=np.float64, seed=8)
    x = rng.standard_normal((3, 2, 2))
    draws = []
    draw = m._masks
    m._masks = lambda s, b: draws.append(draw(s, b)) or draws[-1]
    (y1, _), tape1 = m.forward(x, requires_grad=True)
    (y2, _), tape2 = m.forward(x, requires_grad=True)
    assert not np.allclose(y1, y2)  # a new mask each forward
    dy = rng.standard_normal(y1.shape)
    m.zero_grad()
    dx1, _ = m.backward(tape1, dy)
    g1 = _grads(m)
    m.zero_grad()
    dx2, _ = m.backward(tape2, dy)
    g2 = _grads(m)
    for (dx, g), mask in zip(((dx1, g1), (dx2, g2)), draws, strict=True):
        m._masks = lambda s, b, mask=mask: mask
        m.zero_grad()
        _, tape = m.forward(x, requires_grad=True)
        dx_ref, _ = m.backward(tape, dy)
        np.testing.assert_allclose(dx, dx_ref, rtol=1e-13, atol=1e-15)
        for k in g:
            np.testing.assert_allclose(g[k], m.get_parameter(k).grad, rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("batched", [True, False])
def test_lstm_cell(bias, batched, rng):
    cell = pylstm.LSTMCell(3, 2, bias=bias, dtype=np.float64, seed=1)
    lead = (2,) if batched else ()
    x = rng.standard_normal(lead + (3,))
    h0, c0 = rng.standard_normal(lead + (2,)), rng.standard_normal(lead + (2,))
    (h, c), tape = cell.forward(x, (h0, c0), requires_grad=True)
    dh, dc = rng.standard_normal(h.shape), rng.standard_normal(c.shape)
    cell.zero_grad()
    dx, (dhp, dcp) = cell.backward(tape, dh, dc)
    analytic = {"x": dx, "h0": dhp, "c0": dcp, **_grads(cell)}

    def loss():
        hh, cc = cell(x, (h0, c0))
        return float(np.sum(hh * dh) + np.sum(cc * dc))

    numeric = numeric_grad(loss, {"x": x, "h0": h0, "c0": c0, **_params(cell)})
    assert_grads_close(analytic, numeric)


# ----------------------------------------------------------------------------- several tapes


def _fwd(inputs, kw):
    a = dict(inputs)
    return F.lstm(a.pop("X"), a.pop("W"), a.pop("R"), **a, **kw, requires_grad=True)


@pytest.mark.parametrize("order", ["first-first", "last-first"])
def test_functional_several_tapes_pending(order, rng):
    xa, kw = _functional_case(rng, direction="bidirectional", lens=[3, 1])
    xb = {k: v + rng.standard_normal(v.shape) * 0.3 for k, v in xa.items()}
    douts = None
    sequential = []
    for x in (xa, xb):
        Y, Yh, Yc, tape = _fwd(x, kw)
        if douts is None:
            douts = [rng.standard_normal(a.shape) for a in (Y, Yh, Yc)]
        sequential.append(F.lstm_backward(tape, *douts))
    tapes = [_fwd(xa, kw)[3], _fwd(xb, kw)[3]]
    idx = [0, 1] if order == "first-first" else [1, 0]
    pending = {i: F.lstm_backward(tapes[i], *douts) for i in idx}
    for i in (0, 1):
        for k in sequential[i]:
            np.testing.assert_array_equal(pending[i][k], sequential[i][k], err_msg=k)
    assert not np.allclose(sequential[0]["W"], sequential[1]["W"])


def test_module_several_tapes_pending(rng):
    m = pylstm.LSTM(2, 3, num_layers=2, bidirectional=True, proj_size=2, dtype=np.float64, seed=2)
    xa, xb = rng.standard_normal((3, 2, 2)), rng.standard_normal((4, 2, 2))
    dya, dyb = rng.standard_normal((3, 2, 4)), rng.standard_normal((4, 2, 4))
    seq = []
    for x, dy in ((xa, dya), (xb, dyb)):
        m.zero_grad()
        _, tape = m.forward(x, requires_grad=True)
        dx, _ = m.backward(tape, dy)
        seq.append((dx, _grads(m)))
    m.zero_grad()
    _, ta = m.forward(xa, requires_grad=True)
    _, tb = m.forward(xb, requires_grad=True)
    dxb, _ = m.backward(tb, dyb)
    dxa, _ = m.backward(ta, dya)
    np.testing.assert_array_equal(dxa, seq[0][0])
    np.testing.assert_array_equal(dxb, seq[1][0])
    for k, p in m.named_parameters():
        np.testing.assert_allclose(p.grad, seq[0][1][k] + seq[1][1][k], rtol=1e-13,
                                   atol=1e-15, err_msg=k)


# ----------------------------------------------------------------------------- larger sizes

# Sizes that fill whole SIMD vectors and leave tails (H=19, batch 67), checked by directional
# derivatives (<grad, v> against a central difference along a random v) on every kernel path.
# ThresholdedRelu is left out here: it jumps at alpha, and with thousands of gate inputs some
# land within a finite-difference step of the jump (the small cases above cover it).
KERNELS = pylstm.info()["supported_kernels"]


@pytest.fixture
def restore_runtime():
    threads, kern = pylstm.get_num_threads(), pylstm.kernel()
    yield
    pylstm.set_num_threads(threads)
    pylstm.set_kernel(kern)


def _directional(call, args, douts, grads, rng):
    """With thousands of gate inputs, a step may cross a kink (Relu, clip, HardSigmoid) and
    spoil one step size; a wrong gradient matches at none of them."""
    v = {n: rng.standard_normal(a.shape) for n, a in args.items()}

    def loss(s):
        out = call({n: args[n] + s * v[n] for n in args})
        return sum(float(np.sum(o * d)) for o, d in zip(out, douts, strict=True))

    an = sum(float(np.sum(grads[n] * v[n])) for n in args)
    fds = [(loss(eps) - loss(-eps)) / (2 * eps) for eps in (1e-6, 1e-7, 1e-8)]
    assert min(abs(fd - an) for fd in fds) <= 1e-6 * max(1.0, abs(an)), (fds, an)


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("acts", [None, ["Relu", "Affine", "LeakyRelu", "Sigmoid", "Elu", "Tanh"],
                                  ["HardSigmoid", "ScaledTanh", "Softsign", "Softplus",
                                   "Softsign", "Sigmoid"]],
                         ids=["default", "mix1", "mix2"])
@pytest.mark.parametrize("threads", [1, 2])
def test_functional_directional_large(kernel, acts, threads, rng, restore_runtime):
    pylstm.set_kernel(kernel)
    pylstm.set_num_threads(threads)
    T, nb, n_in, H = 4, 67, 5, 19
    args, _ = _functional_case(rng, T=T, nb=nb, n_in=n_in, H=H, direction="bidirectional")
    # One alpha per activation that takes one, one beta per activation that takes two.
    n_alpha = sum(1 for a in acts or [] if a in _PARAMS)
    n_beta = sum(1 for a in acts or [] if _PARAMS.get(a) == 2)
    attrs = dict(sequence_lens=rng.integers(1, T + 1, nb), direction="bidirectional",
                 activations=acts, activation_alpha=[0.7] * n_alpha or None,
                 activation_beta=[0.2] * n_beta or None,
                 clip=2.5, input_forget=int(acts is not None and acts[0] == "Relu"))

    def call(a, **extra):
        a = dict(a)
        return F.lstm(a.pop("X"), a.pop("W"), a.pop("R"), **a, **attrs, **extra)

    Y, Yh, Yc, tape = call(args, requires_grad=True)
    douts = [rng.standard_normal(o.shape) for o in (Y, Yh, Yc)]
    grads = F.lstm_backward(tape, *douts)
    _directional(call, args, douts, grads, rng)


@pytest.mark.parametrize("kernel", KERNELS)
def test_module_directional_large(kernel, rng, restore_runtime):
    pylstm.set_kernel(kernel)
    m = pylstm.LSTM(9, 21, num_layers=2, bidirectional=True, proj_size=11, dtype=np.float64,
                    seed=0)
    x = rng.standard_normal((5, 66, 9))
    lengths = rng.integers(1, 6, 66)
    lengths[3] = 5
    hx = (rng.standard_normal((4, 66, 11)), rng.standard_normal((4, 66, 21)))
    (y, (h, c)), tape = m.forward(x, hx, lengths=lengths, requires_grad=True)
    douts = [rng.standard_normal(o.shape) for o in (y, h, c)]
    m.zero_grad()
    dx, (dh0, dc0) = m.backward(tape, *douts)
    args = {"x": x, "h0": hx[0], "c0": hx[1],
            **{k: v.copy() for k, v in _params(m).items()}}
    grads = {"x": dx, "h0": dh0, "c0": dc0, **_grads(m)}

    def call(a):
        m.load_state_dict({k: a[k] for k, _ in m.named_parameters()})
        yy, (hh, cc) = m.forward(a["x"], (a["h0"], a["c0"]), lengths=lengths)
        return yy, hh, cc

    _directional(call, args, douts, grads, rng)
