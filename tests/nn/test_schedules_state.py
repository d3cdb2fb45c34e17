"""Schedules' ``load_state_dict``: every key's type and value is validated before anything is
assigned (``check_state_dict``), with one-line errors naming the key, the expected and the
actual value; the constructors share the same checks."""

from __future__ import annotations

import copy
import json
import math

import numpy as np
import pytest

import pylstm
from pylstm import nn


def _opt(groups=1):
    ps = [{"params": [(f"p{i}", np.zeros(1), np.zeros(1))], "lr": 0.5 * (i + 1)}
          for i in range(groups)]
    return nn.SGD(ps, lr=0.5)


MAKERS = {
    "StepLR": lambda o: nn.StepLR(o, step_size=2, gamma=0.5),
    "ExponentialLR": lambda o: nn.ExponentialLR(o, gamma=0.9),
    "CosineWarmupLR": lambda o: nn.CosineWarmupLR(o, total_steps=10, warmup_steps=3,
                                                  min_lr=0.01, warmup_start_factor=0.1),
    "ReduceLROnPlateau": lambda o: nn.ReduceLROnPlateau(o, patience=1, cooldown=2),
}


def _advanced(name, groups=2, steps=3):
    opt = _opt(groups)
    sched = MAKERS[name](opt)
    for k in range(steps):
        sched.step(float(k % 2)) if name == "ReduceLROnPlateau" else sched.step()
    return opt, sched


def _snapshot(opt, sched):
    return copy.deepcopy(sched.state_dict()), [dict((k, v) for k, v in g.items() if k != "params")
                                               for g in opt.param_groups]


@pytest.mark.parametrize("name", sorted(MAKERS))
def test_state_round_trips_through_json(name):
    opt, sched = _advanced(name)
    state = json.loads(json.dumps(sched.state_dict()))  # what a checkpoint stores
    opt2 = _opt(2)
    sched2 = MAKERS[name](opt2)
    assert sched2.check_state_dict(state) == sched.state_dict()
    sched2.load_state_dict(state)
    assert sched2.state_dict() == sched.state_dict()
    if name != "ReduceLROnPlateau":  # its rates live in the optimiser's state, as in torch
        assert sched2.get_last_lr() == sched.get_last_lr()


BAD_COMMON = [
    ({"last_epoch": "three"}, "state_dict: last_epoch: expected an int >= 0, got 'three'"),
    ({"last_epoch": -1}, "state_dict: last_epoch: expected an int >= 0, got -1"),
    ({"last_epoch": 1.5}, "state_dict: last_epoch: expected an int >= 0, got 1.5"),
    ({"last_epoch": True}, "state_dict: last_epoch: expected an int >= 0, got True"),
    ({"last_epoch": None}, "state_dict: last_epoch: expected an int >= 0, got None"),
]
BAD = {
    "StepLR": BAD_COMMON + [
        ({"base_lrs": "x"}, r"state_dict: base_lrs: expected a list of 2 rates"),
        ({"base_lrs": [0.5]}, r"state_dict: base_lrs: expected a list of 2 rates"),
        ({"base_lrs": [0.5, float("nan")]}, r"state_dict: base_lrs\[1\]: expected a finite "
                                            r"number >= 0, got nan"),
        ({"base_lrs": [0.5, -1]}, r"state_dict: base_lrs\[1\]: expected a finite number >= 0"),
        ({"step_size": 0}, "state_dict: step_size: expected a positive int, got 0"),
        ({"step_size": "2"}, "state_dict: step_size: expected a positive int, got '2'"),
        ({"gamma": "x"}, "state_dict: gamma: expected a finite number > 0, got 'x'"),
        ({"gamma": float("inf")}, "state_dict: gamma: expected a finite number > 0, got inf"),
        ({"gamma": [0.5]}, r"state_dict: gamma: expected a finite number > 0, got \[0.5\]"),
    ],
    "ExponentialLR": BAD_COMMON + [
        ({"gamma": 0}, "state_dict: gamma: expected a finite number > 0, got 0"),
        # a step whose rate overflows (1.5 ** 10**6) is refused, not an OverflowError later
        ({"gamma": 1.5, "last_epoch": 10**6}, "state_dict: last_epoch: the learning rate at "
                                              "step 1000000 is not a finite number"),
        ({"last_epoch": 10**400}, "state_dict: last_epoch: the learning rate at step"),
    ],
    "CosineWarmupLR": BAD_COMMON + [
        ({"total_steps": 0}, "state_dict: total_steps: expected a positive int, got 0"),
        ({"warmup_steps": 10}, r"state_dict: warmup_steps: expected an int in \[0, "
                               r"total_steps=10\), got 10"),
        ({"total_steps": 2}, r"state_dict: warmup_steps: expected an int in \[0, "
                             r"total_steps=2\), got 3"),
        ({"min_lr": -0.1}, "state_dict: min_lr: expected a finite number >= 0, got -0.1"),
        ({"warmup_start_factor": 2}, r"state_dict: warmup_start_factor: expected in \[0, 1\]"),
    ],
    "ReduceLROnPlateau": BAD_COMMON + [
        ({"mode": "mid"}, r"state_dict: mode: expected one of \['min', 'max'\], got 'mid'"),
        ({"threshold_mode": 1}, r"state_dict: threshold_mode: expected one of \['rel', 'abs'\]"),
        ({"factor": 1.0}, r"state_dict: factor: expected in \(0, 1\), got 1.0"),
        ({"patience": "x"}, "state_dict: patience: expected an int >= 0, got 'x'"),
        ({"cooldown": -1}, "state_dict: cooldown: expected an int >= 0, got -1"),
        ({"cooldown_counter": 3}, r"state_dict: cooldown_counter: expected an int in \[0, "
                                  r"cooldown=2\], got 3"),
        ({"num_bad_epochs": 0.5}, "state_dict: num_bad_epochs: expected an int >= 0"),
        ({"min_lrs": [0.0]}, "state_dict: min_lrs: expected a list of 2 rates"),
        ({"eps": "tiny"}, "state_dict: eps: expected a finite number >= 0, got 'tiny'"),
        ({"threshold": float("nan")}, "state_dict: threshold: expected a finite number >= 0"),
        ({"best": float("nan")}, r"state_dict: best: expected a number \(or \+-Infinity\)"),
        ({"best": "x"}, r"state_dict: best: expected a number \(or \+-Infinity\), got 'x'"),
    ],
}
CASES = [(name, edit, pattern) for name, cases in BAD.items() for edit, pattern in cases]


@pytest.mark.parametrize(("name", "edit", "pattern"), CASES,
                         ids=[f"{n}-{sorted(e)[0]}-{i}" for i, (n, e, _) in enumerate(CASES)])
def test_bad_values_are_refused_before_anything_changes(name, edit, pattern):
    opt, sched = _advanced(name)
    good = sched.state_dict()
    before = _snapshot(opt, sched)
    bad = {**good, **edit}
    with pytest.raises(pylstm.PylstmError, match=pattern) as info:
        sched.load_state_dict(bad)
    assert isinstance(info.value, (ValueError, TypeError))
    assert "\n" not in str(info.value)
    assert _snapshot(opt, sched) == before
    with pytest.raises(pylstm.PylstmError, match=pattern):
        sched.check_state_dict(bad)


@pytest.mark.parametrize("name", sorted(MAKERS))
def test_wrong_containers_and_keys(name):
    opt, sched = _advanced(name)
    before = _snapshot(opt, sched)
    good = sched.state_dict()
    with pytest.raises(pylstm.DTypeError, match="state_dict: expected a dict, got list"):
        sched.load_state_dict([good])
    with pytest.raises(pylstm.DTypeError, match="state_dict: expected a dict, got str"):
        sched.load_state_dict("state")
    missing = dict(good)
    del missing["last_epoch"]
    with pytest.raises(pylstm.LstmValueError, match=r"missing \['last_epoch'\] and unexpected "
                                                    r"\[\]"):
        sched.load_state_dict(missing)
    with pytest.raises(pylstm.LstmValueError, match=r"missing \[\] and unexpected "
                                                    r"\['optimizer'\]"):
        sched.load_state_dict({**good, "optimizer": None})
    assert _snapshot(opt, sched) == before


def test_a_subclass_attribute_is_checked_by_its_kind():
    class Halving(nn.LRScheduler):
        def __init__(self, optimizer, every: int) -> None:
            self.every = every
            super().__init__(optimizer)

        def factor(self, epoch: int) -> float:
            return 0.5 ** (epoch // self.every)

    opt = _opt()
    sched = Halving(opt, 2)
    with pytest.raises(pylstm.LstmValueError, match="state_dict: every: expected a value like "
                                                    "2, got 'x'"):
        sched.load_state_dict({**sched.state_dict(), "every": "x"})
    sched.load_state_dict({**sched.state_dict(), "every": 3, "last_epoch": 3})
    assert sched.get_last_lr() == [0.25]


def test_constructors_share_the_checks():
    with pytest.raises(pylstm.LstmValueError, match="gamma: expected a finite number > 0, got "
                                                    "'x'"):
        nn.StepLR(_opt(), step_size=1, gamma="x")
    with pytest.raises(pylstm.LstmValueError, match="gamma: expected a finite number > 0, got "
                                                    "inf"):
        nn.ExponentialLR(_opt(), gamma=math.inf)
    with pytest.raises(pylstm.LstmValueError, match="eps: expected a finite number >= 0, got "
                                                    "'tiny'"):
        nn.ReduceLROnPlateau(_opt(), eps="tiny")
    with pytest.raises(pylstm.LstmValueError, match=r"min_lr\[0\]: expected a finite number"):
        nn.ReduceLROnPlateau(_opt(), min_lr=[-1.0])
    with pytest.raises(pylstm.DTypeError, match="optimizer: expected a pylstm.nn Optimizer"):
        nn.StepLR(object(), step_size=1)
    s = nn.StepLR(_opt(), step_size=np.int64(2), gamma=np.float32(0.5))  # numpy numbers
    assert type(s.step_size) is int and type(s.gamma) is float


def test_plateau_metric_must_be_a_number():
    opt = _opt()
    sched = nn.ReduceLROnPlateau(opt)
    with pytest.raises(pylstm.DTypeError, match="metric: expected a number, got 'x'"):
        sched.step("x")
    assert sched.last_epoch == 0
    sched.step(np.float32(0.5))
    sched.step(np.array(0.25))
    assert sched.best == 0.25


def test_a_step_whose_rate_overflows_changes_nothing():
    opt = _opt()
    sched = nn.ExponentialLR(opt, gamma=10.0)
    sched.load_state_dict({**sched.state_dict(), "last_epoch": 300})
    with pytest.raises(pylstm.LstmValueError, match="the learning rate at step 309 is not a "
                                                    "finite number"):
        for _ in range(20):
            sched.step()
    assert sched.last_epoch == 308 and math.isfinite(opt.lr)


def test_a_checkpoint_names_the_file_and_changes_nothing(tmp_path):
    pytest.importorskip("safetensors")
    model = nn.Linear(3, 2, seed=0)
    opt = nn.Adam(model, lr=0.1)
    sched = nn.StepLR(opt, step_size=2, gamma=0.5)
    sched.step()
    nn.save_checkpoint(tmp_path, model, optimizer=opt, scheduler=sched)
    config = tmp_path / "config.json"
    doc = json.loads(config.read_text())
    fresh = nn.Linear(3, 2, seed=1)
    fresh_opt = nn.Adam(fresh, lr=0.3)
    fresh_sched = nn.StepLR(fresh_opt, step_size=3, gamma=0.1)
    before = ({k: v.copy() for k, v in fresh.state_dict().items()}, _snapshot(fresh_opt,
                                                                               fresh_sched))
    for key, value, pattern in [
        ("step_size", 0, "scheduler.state.step_size: expected a positive int, got 0"),
        ("gamma", "x", "scheduler.state.gamma: expected a number, got str 'x'"),
        ("last_epoch", -3, "scheduler.state.last_epoch: expected an int >= 0, got -3"),
    ]:
        bad = copy.deepcopy(doc)
        bad["scheduler"]["state"][key] = value
        config.write_text(json.dumps(bad))
        with pytest.raises(pylstm.CheckpointError, match=pattern) as info:
            nn.load_checkpoint(tmp_path, fresh, optimizer=fresh_opt, scheduler=fresh_sched)
        assert str(info.value).startswith(f"{config}: ")
        after = ({k: v.copy() for k, v in fresh.state_dict().items()}, _snapshot(fresh_opt,
                                                                                  fresh_sched))
        assert all(np.array_equal(before[0][k], after[0][k]) for k in before[0])
        assert after[1] == before[1]
