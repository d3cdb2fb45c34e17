"""Learning-rate schedules: hand values and torch.optim.lr_scheduler comparisons."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pylstm import nn


def _opt(lr=1.0, groups=1):
    ps = [{"params": [(f"p{i}", np.zeros(1), np.zeros(1))], "lr": lr * (i + 1)}
          for i in range(groups)]
    return nn.SGD(ps, lr=lr)


def _trace(sched, n):
    out = [sched.get_last_lr()[0]]
    for _ in range(n):
        sched.step()
        out.append(sched.get_last_lr()[0])
    return out


def test_step_and_exponential_by_hand():
    assert _trace(nn.StepLR(_opt(), step_size=2, gamma=0.5), 5) == pytest.approx(
        [1, 1, 0.5, 0.5, 0.25, 0.25]
    )
    assert _trace(nn.ExponentialLR(_opt(2.0), gamma=0.9), 3) == pytest.approx(
        [2.0, 1.8, 1.62, 1.458]
    )


def test_cosine_warmup_by_hand():
    s = nn.CosineWarmupLR(_opt(1.0), total_steps=6, warmup_steps=2, min_lr=0.1)
    # warmup 0, 0.5; then cosine over 4 steps from 1.0 to 0.1; then flat at min_lr
    expected = [0.0, 0.5] + [0.1 + 0.9 * (1 + math.cos(math.pi * k / 4)) / 2 for k in range(5)]
    expected += [0.1]
    assert _trace(s, 7) == pytest.approx(expected, abs=1e-15)
    s2 = nn.CosineWarmupLR(_opt(1.0), total_steps=4, warmup_steps=2, warmup_start_factor=0.2)
    assert _trace(s2, 1) == pytest.approx([0.2, 0.6])


def test_schedules_scale_every_group_and_restore():
    opt = _opt(1.0, groups=2)
    s = nn.StepLR(opt, step_size=1, gamma=0.5)
    s.step()
    assert s.get_last_lr() == [0.5, 1.0]
    state = s.state_dict()
    opt2 = _opt(1.0, groups=2)
    s2 = nn.StepLR(opt2, step_size=1, gamma=0.5)
    s2.load_state_dict(state)
    assert s2.get_last_lr() == [0.5, 1.0]
    s.step()
    s2.step()
    assert s2.get_last_lr() == s.get_last_lr() == [0.25, 0.5]


TORCH_CASES = [
    ("StepLR", dict(step_size=3, gamma=0.3), None),
    ("ExponentialLR", dict(gamma=0.95), None),
    ("CosineWarmupLR", dict(total_steps=10, min_lr=0.01), ("CosineAnnealingLR",
                                                         dict(T_max=10, eta_min=0.01))),
]


@pytest.mark.parametrize("name,kwargs,torch_spec", TORCH_CASES)
def test_schedules_match_torch(name, kwargs, torch_spec):
    torch = pytest.importorskip("torch")
    tname, tkwargs = torch_spec or (name, kwargs)
    topt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.5)
    tsched = getattr(torch.optim.lr_scheduler, tname)(topt, **tkwargs)
    sched = getattr(nn, name)(_opt(0.5), **kwargs)
    for _ in range(10):
        assert sched.get_last_lr()[0] == pytest.approx(tsched.get_last_lr()[0], rel=1e-12)
        topt.step()
        tsched.step()
        sched.step()


def test_cosine_warmup_matches_torch_linear_then_cosine():
    torch = pytest.importorskip("torch")
    topt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.5)
    lr_s = torch.optim.lr_scheduler
    tsched = lr_s.SequentialLR(
        topt,
        [lr_s.LinearLR(topt, start_factor=0.25, end_factor=1.0, total_iters=3),
         lr_s.CosineAnnealingLR(topt, T_max=5, eta_min=0.0)],
        milestones=[3],
    )
    sched = nn.CosineWarmupLR(_opt(0.5), total_steps=8, warmup_steps=3, warmup_start_factor=0.25)
    for _ in range(8):
        assert sched.get_last_lr()[0] == pytest.approx(tsched.get_last_lr()[0], rel=1e-9)
        topt.step()
        tsched.step()
        sched.step()


METRICS = [1.0, 0.9, 0.95, 0.95, 0.95, 0.89, 0.9, 0.91, 0.92, 0.93, 0.94, 0.95, 0.96]


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(patience=2),
        dict(patience=1, cooldown=2, factor=0.5),
        dict(mode="max", patience=1, threshold=0.01, threshold_mode="abs"),
        dict(patience=0, min_lr=0.004, factor=0.2),
    ],
)
def test_reduce_on_plateau_matches_torch(kwargs):
    torch = pytest.importorskip("torch")
    topt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    tsched = torch.optim.lr_scheduler.ReduceLROnPlateau(topt, **kwargs)
    opt = _opt(0.1)
    sched = nn.ReduceLROnPlateau(opt, **kwargs)
    for m in METRICS:
        tsched.step(m)
        sched.step(m)
        assert opt.lr == pytest.approx(topt.param_groups[0]["lr"], rel=1e-12)


def test_reduce_on_plateau_by_hand():
    opt = _opt(1.0)
    s = nn.ReduceLROnPlateau(opt, patience=1, factor=0.5)
    lrs = []
    for m in [1.0, 1.0, 1.0, 0.5, 0.6, 0.7]:
        s.step(m)
        lrs.append(opt.lr)
    assert lrs == [1.0, 1.0, 0.5, 0.5, 0.5, 0.25]


def test_schedule_errors():
    with pytest.raises(ValueError, match="step_size: expected a positive int, got 0"):
        nn.StepLR(_opt(), step_size=0)
    with pytest.raises(ValueError, match=r"warmup_steps: expected an int in \[0, total_steps=5\)"):
        nn.CosineWarmupLR(_opt(), total_steps=5, warmup_steps=5)
    with pytest.raises(ValueError, match=r"factor: expected in \(0, 1\), got 1.0"):
        nn.ReduceLROnPlateau(_opt(), factor=1.0)
    with pytest.raises(TypeError, match="optimizer: expected a pylstm.nn Optimizer"):
        nn.ExponentialLR(object(), gamma=0.5)
