"""Optimisers and gradient clipping: hand-computed steps and torch.optim comparisons."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pylstm import nn

GRADS = [0.5, -1.0, 0.25]  # gradient of the single parameter at steps 1, 2, 3


def _grads(module):
    """``(name, grad)`` of every parameter."""
    return [(n, p.grad) for n, p in module.named_parameters()]


def _run(make_opt, grads=GRADS, p0=1.0):
    p = np.array([p0])
    g = np.zeros(1)
    opt = make_opt([("p", p, g)])
    out = []
    for gv in grads:
        g[0] = gv
        opt.step()
        out.append(p[0])
    return out


# -------------------------------------------------------------------------------- hand values
def test_sgd_plain_and_weight_decay_by_hand():
    assert _run(lambda ps: nn.SGD(ps, lr=0.1)) == pytest.approx([0.95, 1.05, 1.025], rel=1e-15)
    # d = g + 0.1 p: 0.5 + 0.1 = 0.6 -> 0.94; -1 + 0.094 = -0.906 -> 1.0306;
    # 0.25 + 0.10306 = 0.35306 -> 0.995294
    out = _run(lambda ps: nn.SGD(ps, lr=0.1, weight_decay=0.1))
    assert out == pytest.approx([0.94, 1.0306, 0.995294], rel=1e-14)


def test_sgd_momentum_and_nesterov_by_hand():
    # buf: 0.5; 0.45 - 1 = -0.55; -0.495 + 0.25 = -0.245
    out = _run(lambda ps: nn.SGD(ps, lr=0.1, momentum=0.9))
    assert out == pytest.approx([0.95, 1.005, 1.0295], rel=1e-14)
    # dampening 0.5: buf 0.5; 0.45 - 0.5 = -0.05; -0.045 + 0.125 = 0.08
    out = _run(lambda ps: nn.SGD(ps, lr=0.1, momentum=0.9, dampening=0.5))
    assert out == pytest.approx([0.95, 0.955, 0.947], rel=1e-14)
    # nesterov d = g + 0.9 buf: 0.95; -1 - 0.495 = -1.495; 0.25 - 0.2205 = 0.0295
    out = _run(lambda ps: nn.SGD(ps, lr=0.1, momentum=0.9, nesterov=True))
    assert out == pytest.approx([0.905, 1.0545, 1.05155], rel=1e-14)


def _adam_by_hand(decoupled_wd=0.0, l2=0.0, amsgrad=False):
    lr, b1, b2, eps = 0.1, 0.9, 0.999, 1e-8
    p, m, v, vmax = 1.0, 0.0, 0.0, 0.0
    out = []
    for t, g in enumerate(GRADS, start=1):
        p = p * (1 - lr * decoupled_wd)
        g = g + l2 * p
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        vmax = max(vmax, v)
        vv = vmax if amsgrad else v
        p = p - lr * (m / (1 - b1**t)) / (math.sqrt(vv / (1 - b2**t)) + eps)
        out.append(p)
    return out


def test_adam_by_hand():
    out = _run(lambda ps: nn.Adam(ps, lr=0.1))
    # step 1: m_hat = 0.5, v_hat = 0.25 -> p = 1 - 0.1 * 0.5 / (0.5 + 1e-8)
    assert out[0] == pytest.approx(1 - 0.05 / (0.5 + 1e-8), rel=1e-15)
    # step 2: m = -0.055, v = 0.00124975; m_hat = -0.055/0.19, v_hat = 0.00124975/0.001999
    step2 = out[0] + 0.1 * (0.055 / 0.19) / (math.sqrt(0.00124975 / 0.001999) + 1e-8)
    assert out[1] == pytest.approx(step2, rel=1e-14)
    assert out == pytest.approx(_adam_by_hand(), rel=1e-14)
    assert _run(lambda ps: nn.Adam(ps, lr=0.1, weight_decay=0.1)) == pytest.approx(
        _adam_by_hand(l2=0.1), rel=1e-14
    )
    assert _run(lambda ps: nn.Adam(ps, lr=0.1, amsgrad=True)) == pytest.approx(
        _adam_by_hand(amsgrad=True), rel=1e-14
    )


def test_adamw_by_hand():
    out = _run(lambda ps: nn.AdamW(ps, lr=0.1, weight_decay=0.1))
    assert out[0] == pytest.approx(0.99 - 0.05 / (0.5 + 1e-8), rel=1e-15)
    assert out == pytest.approx(_adam_by_hand(decoupled_wd=0.1), rel=1e-14)
    assert nn.AdamW([("p", np.zeros(1), np.zeros(1))]).param_groups[0]["weight_decay"] == 0.01


# ---------------------------------------------------------------------------- torch.optim
CASES = [
    ("SGD", dict(lr=0.1)),
    ("SGD", dict(lr=0.1, momentum=0.9, weight_decay=0.01)),
    ("SGD", dict(lr=0.05, momentum=0.8, dampening=0.3)),
    ("SGD", dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.05)),
    ("Adam", dict(lr=0.01)),
    ("Adam", dict(lr=0.01, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1)),
    ("Adam", dict(lr=0.01, amsgrad=True)),
    ("AdamW", dict(lr=0.01)),
    ("AdamW", dict(lr=0.01, weight_decay=0.3, amsgrad=True)),
]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name,kwargs", CASES)
def test_optimizers_match_torch(name, kwargs, dtype):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    layer = nn.Linear(4, 3, dtype=dtype, seed=0)
    tparams = [torch.tensor(p.data.copy()) for _, p in layer.named_parameters()]
    topt = getattr(torch.optim, name)(tparams, **kwargs)
    opt = getattr(nn, name)(layer, **kwargs)
    for _ in range(5):
        for (_, g), tp in zip(_grads(layer), tparams, strict=True):
            g[...] = rng.standard_normal(g.shape).astype(dtype)
            tp.grad = torch.tensor(g.copy())
        opt.step()
        topt.step()
    rtol = 1e-12 if dtype == np.float64 else 2e-6
    for (n, p), tp in zip(layer.named_parameters(), tparams, strict=True):
        assert p.dtype == dtype
        np.testing.assert_allclose(p.data, tp.detach().numpy(), rtol=rtol, atol=rtol, err_msg=n)


def test_updates_are_in_place_and_read_live_grads():
    layer = nn.Linear(2, 2, dtype=np.float64, seed=0)
    w = layer.weight.data
    before = w.copy()
    opt = nn.SGD(layer, lr=1.0)
    layer.weight.grad = np.ones((2, 2))  # replaced, not updated in place
    opt.step()
    assert layer.weight.data is w
    np.testing.assert_allclose(w, before - 1.0)
    opt.zero_grad()
    assert not layer.weight.grad.any()


def test_param_groups():
    layer = nn.Linear(2, 2, dtype=np.float64, seed=0)
    opt = nn.SGD(
        [{"params": [layer.weight]}, {"params": [layer.bias], "lr": 0.0}], lr=0.5
    )
    b0, w0 = layer.bias.data.copy(), layer.weight.data.copy()
    layer.weight.grad[...] = 1.0
    layer.bias.grad[...] = 1.0
    opt.step()
    np.testing.assert_array_equal(layer.bias.data, b0)
    np.testing.assert_allclose(layer.weight.data, w0 - 0.5)
    assert opt.lr == 0.5 and opt.param_groups[1]["lr"] == 0.0


def test_optimizer_state_dict_round_trip():
    a = nn.Linear(3, 2, dtype=np.float64, seed=0)
    b = nn.Linear(3, 2, dtype=np.float64, seed=0)
    oa, ob = nn.Adam(a, lr=0.1), nn.Adam(b, lr=0.1)
    for m in (a, b):
        for _, g in _grads(m):
            g[...] = 0.3
    oa.step()
    ob.load_state_dict(oa.state_dict())
    ob_state = ob.state_dict()
    assert ob_state["state"]["weight"]["step"] == 1
    b.load_state_dict(a.state_dict())
    oa.step()
    ob.step()
    for (_, pa), (_, pb) in zip(a.named_parameters(), b.named_parameters(), strict=True):
        np.testing.assert_array_equal(pa.data, pb.data)


def test_optimizer_errors():
    ps = [("p", np.zeros(2), np.zeros(2))]
    with pytest.raises(ValueError, match="nesterov: needs momentum > 0"):
        nn.SGD(ps, lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match=r"betas: expected two numbers in \[0, 1\)"):
        nn.Adam(ps, betas=(0.9, 1.0))
    with pytest.raises(ValueError, match="lr: expected >= 0, got -1"):
        nn.Adam(ps, lr=-1)
    with pytest.raises(ValueError, match="params: got an empty parameter list"):
        nn.SGD([], lr=0.1)
    with pytest.raises(nn.ShapeError, match=r"gradient of 'q' expected shape \(2,\), got \(3,\)"):
        nn.SGD([("q", np.zeros(2), np.zeros(3))])
    with pytest.raises(ValueError, match="parameter 'p' appears twice"):
        nn.SGD([{"params": ps}, {"params": ps}])
    with pytest.raises(ValueError, match=r"unknown options \['momentum'\]"):
        nn.Adam([{"params": ps, "momentum": 0.9}])
    with pytest.raises(TypeError, match="params: expected a Module"):
        nn.SGD(3)


# ----------------------------------------------------------------------------- clipping
def test_clip_grad_norm_by_hand():
    g1, g2 = np.array([3.0, 4.0]), np.array([12.0])
    total = nn.clip_grad_norm_([g1, g2], max_norm=6.5)
    assert total == pytest.approx(13.0)
    coef = 6.5 / (13.0 + 1e-6)
    np.testing.assert_allclose(g1, [3 * coef, 4 * coef], rtol=1e-15)
    np.testing.assert_allclose(g2, [12 * coef], rtol=1e-15)
    # below the threshold nothing changes
    g = np.array([0.3, 0.4])
    assert nn.clip_grad_norm_([g], 1.0) == pytest.approx(0.5)
    np.testing.assert_array_equal(g, [0.3, 0.4])
    assert nn.clip_grad_norm_([np.array([-7.0, 2.0])], 1.0, norm_type=math.inf) == 7.0


@pytest.mark.parametrize("norm_type", [2.0, 1.0, 3.0, math.inf])
def test_clip_grad_norm_matches_torch(norm_type):
    torch = pytest.importorskip("torch")
    layer = nn.Linear(5, 4, dtype=np.float64, seed=0)
    rng = np.random.default_rng(1)
    tps = []
    for _, g in _grads(layer):
        g[...] = rng.standard_normal(g.shape)
        t = torch.zeros(g.shape, dtype=torch.float64, requires_grad=True)
        t.grad = torch.tensor(g.copy())
        tps.append(t)
    total = nn.clip_grad_norm_(layer, 0.7, norm_type=norm_type)
    ttotal = torch.nn.utils.clip_grad_norm_(tps, 0.7, norm_type=norm_type)
    assert total == pytest.approx(ttotal.item(), rel=1e-12)
    for (_, g), t in zip(_grads(layer), tps, strict=True):
        np.testing.assert_allclose(g, t.grad.numpy(), rtol=1e-12)


def test_clip_grad_norm_errors_and_optimizer_input():
    g = np.array([np.inf, 1.0])
    with pytest.raises(ValueError, match="non-finite"):
        nn.clip_grad_norm_([g], 1.0, error_if_nonfinite=True)
    layer = nn.Linear(2, 2, dtype=np.float64, seed=0)
    for _, gg in _grads(layer):
        gg[...] = 10.0
    opt = nn.SGD(layer, lr=0.1)
    nn.clip_grad_norm_(opt, 1.0)
    norm = math.sqrt(sum(float(np.sum(gg**2)) for _, gg in _grads(layer)))
    assert norm == pytest.approx(1.0, rel=1e-5)
    with pytest.raises(ValueError, match="max_norm: expected >= 0"):
        nn.clip_grad_norm_(layer, -1.0)
