"""Learning-rate schedules, following ``torch.optim.lr_scheduler``'s stepping convention.

Creating a schedule records each group's ``initial_lr`` and sets the learning rate for step 0;
each :meth:`LRScheduler.step` call (once per epoch or per batch, after ``optimizer.step()``)
advances ``last_epoch`` by one and writes the new rate into every parameter group. Rates are
computed in closed form from ``last_epoch``, so a schedule restored from :meth:`state_dict`
continues exactly.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any, Literal

import numpy as np

from ._errors import DTypeError, LstmValueError
from .optim import Optimizer

__all__ = [
    "LRScheduler",
    "StepLR",
    "ExponentialLR",
    "CosineWarmupLR",
    "ReduceLROnPlateau",
]

Check = Callable[[Any, str], Any]  # (value, name) -> the normalised value, or raise


def _check_optimizer(optimizer: Any) -> Optimizer:
    if not isinstance(optimizer, Optimizer):
        raise DTypeError(
            f"optimizer: expected a pylstm.nn Optimizer, got {type(optimizer).__name__}"
        )
    return optimizer


# ----------------------------------------------------------------------------- value checks
# One check per kind of value, shared by the constructors and load_state_dict (whose messages
# are prefixed with "state_dict: "). Python and numpy numbers are accepted, never bools.
def _r(value: Any) -> str:
    """``repr(value)``, shortened for a one-line message."""
    text = repr(value)
    return text if len(text) <= 40 else text[:40] + "..."


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(
        value, (bool, np.bool_))


def _positive_int(value: Any, name: str) -> int:
    if not _is_int(value) or value <= 0:
        raise LstmValueError(f"{name}: expected a positive int, got {_r(value)}")
    return int(value)


def _count(value: Any, name: str) -> int:
    if not _is_int(value) or value < 0:
        raise LstmValueError(f"{name}: expected an int >= 0, got {_r(value)}")
    return int(value)


def _finite(value: Any, name: str, what: str, ok: Callable[[float], bool]) -> float:
    try:
        v = float(value) if _is_number(value) else math.nan
    except OverflowError:  # an int beyond any float
        v = math.inf
    if not math.isfinite(v) or not ok(v):
        raise LstmValueError(f"{name}: expected {what}, got {_r(value)}")
    return v


def _positive(value: Any, name: str) -> float:
    return _finite(value, name, "a finite number > 0", lambda v: v > 0)


def _nonneg(value: Any, name: str) -> float:
    return _finite(value, name, "a finite number >= 0", lambda v: v >= 0)


def _unit(value: Any, name: str) -> float:
    return _finite(value, name, "in [0, 1]", lambda v: 0.0 <= v <= 1.0)


def _open_unit(value: Any, name: str) -> float:
    return _finite(value, name, "in (0, 1)", lambda v: 0.0 < v < 1.0)


def _rates(value: Any, name: str, n: int) -> list[float]:
    if not isinstance(value, (list, tuple)) or len(value) != n:
        raise LstmValueError(f"{name}: expected a list of {n} rates (one per parameter group), "
                             f"got {_r(value)}")
    return [_nonneg(v, f"{name}[{i}]") for i, v in enumerate(value)]


def _choice(*choices: str) -> Check:
    def check(value: Any, name: str) -> str:
        if not isinstance(value, str) or value not in choices:
            raise LstmValueError(f"{name}: expected one of {list(choices)}, got {_r(value)}")
        return value

    return check


def _like(current: Any) -> Check:
    """The check for a subclass's own attribute: a value of the live value's kind."""

    def check(value: Any, name: str) -> Any:
        if isinstance(current, bool):
            ok = isinstance(value, bool)
        elif _is_int(current):
            ok = _is_int(value)
        elif _is_number(current):
            ok = _is_number(value)
        elif isinstance(current, (list, tuple)):
            ok = isinstance(value, (list, tuple)) and len(value) == len(current)
        elif isinstance(current, (str, dict)):
            ok = isinstance(value, type(current))
        else:
            ok = True
        if not ok:
            raise LstmValueError(f"{name}: expected a value like {_r(current)}, got {_r(value)}")
        return value

    return check


def _checked_state(obj: Any, state: Any, checks: Mapping[str, Check]) -> dict[str, Any]:
    """``state`` validated key by key against ``obj``'s own (nothing assigned)."""
    if not isinstance(state, Mapping):
        raise DTypeError(f"state_dict: expected a dict, got {type(state).__name__}")
    expected = set(obj.state_dict())
    missing = sorted(expected - set(state))
    unexpected = sorted(str(k) for k in set(state) - expected)
    if missing or unexpected:
        raise LstmValueError(f"state_dict: expected the keys {sorted(expected)}, got missing "
                             f"{missing} and unexpected {unexpected}")
    live = obj.state_dict()
    return {key: checks.get(key, _like(live[key]))(state[key], f"state_dict: {key}")
            for key in sorted(expected)}


class LRScheduler:
    """Base class: subclasses implement :meth:`factor` or :meth:`lr_at`, and list their
    hyperparameters' checks in :meth:`_state_checks` (the base class checks ``base_lrs`` and
    ``last_epoch``)."""

    def __init__(self, optimizer: Optimizer) -> None:
        self.optimizer = _check_optimizer(optimizer)
        for group in optimizer.param_groups:
            group.setdefault("initial_lr", group["lr"])
        self.base_lrs = [float(g["initial_lr"]) for g in optimizer.param_groups]
        self.last_epoch = 0
        self._apply()

    def lr_at(self, base_lr: float, epoch: int) -> float:
        """Learning rate of a group with ``base_lr`` at ``epoch``."""
        return base_lr * self.factor(epoch)

    def factor(self, epoch: int) -> float:
        """Multiplier of the base rate at ``epoch``."""
        raise NotImplementedError

    def _rates_at(self, epoch: int) -> list[float]:
        """Every group's rate at ``epoch``; a rate that overflows or is not a finite number
        >= 0 is an error naming the step."""
        out = []
        for base in self.base_lrs:
            try:
                lr = float(self.lr_at(base, epoch))
            except (OverflowError, ZeroDivisionError, ValueError):
                lr = math.nan
            if not (math.isfinite(lr) and lr >= 0):
                raise LstmValueError(f"last_epoch: the learning rate at step {epoch} is not a "
                                     f"finite number >= 0 (base rate {base})")
            out.append(lr)
        return out

    def _apply(self) -> None:
        for group, lr in zip(self.optimizer.param_groups, self._rates_at(self.last_epoch),
                             strict=True):
            group["lr"] = lr

    def step(self) -> None:
        """Advance one step and update the optimiser's learning rates (an error, changing
        nothing, if the new rate would overflow)."""
        rates = self._rates_at(self.last_epoch + 1)
        self.last_epoch += 1
        for group, lr in zip(self.optimizer.param_groups, rates, strict=True):
            group["lr"] = lr

    def get_last_lr(self) -> list[float]:
        """The current learning rate of every group."""
        return [float(g["lr"]) for g in self.optimizer.param_groups]

    def state_dict(self) -> dict[str, Any]:
        """JSON-serialisable state (everything but the optimiser)."""
        return {k: (list(v) if isinstance(v, list) else v) for k, v in self.__dict__.items()
                if k != "optimizer"}

    def _state_checks(self) -> dict[str, Check]:
        n = len(self.optimizer.param_groups)
        return {"base_lrs": lambda v, name: _rates(v, name, n), "last_epoch": _count}

    def check_state_dict(self, state: Any) -> dict[str, Any]:
        """The validated copy of ``state`` that :meth:`load_state_dict` would restore: the
        same keys as :meth:`state_dict`, each value of the right type and range, and a finite
        learning rate at the saved step. Assigns nothing; raises ``LstmValueError`` /
        ``DTypeError`` naming the key, the expected and the actual value."""
        new = _checked_state(self, state, self._state_checks())
        trial = object.__new__(type(self))
        trial.__dict__.update({**self.__dict__, **new})
        try:
            trial._rates_at(new["last_epoch"])
        except LstmValueError as exc:
            raise LstmValueError(f"state_dict: {exc}") from None
        return new

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` output and re-apply the learning rates. Everything is
        validated first (:meth:`check_state_dict`); on any problem nothing changes."""
        self.__dict__.update(self.check_state_dict(state))
        self._apply()


class StepLR(LRScheduler):
    """``lr = base_lr * gamma ** (epoch // step_size)`` (like ``torch``'s ``StepLR``)."""

    def __init__(self, optimizer: Optimizer, step_size: int, gamma: float = 0.1) -> None:
        self.step_size = _positive_int(step_size, "step_size")
        self.gamma = _positive(gamma, "gamma")
        super().__init__(optimizer)

    def factor(self, epoch: int) -> float:
        return self.gamma ** (epoch // self.step_size)

    def _state_checks(self) -> dict[str, Check]:
        return {**super()._state_checks(), "step_size": _positive_int, "gamma": _positive}


class ExponentialLR(LRScheduler):
    """``lr = base_lr * gamma ** epoch``."""

    def __init__(self, optimizer: Optimizer, gamma: float) -> None:
        self.gamma = _positive(gamma, "gamma")
        super().__init__(optimizer)

    def factor(self, epoch: int) -> float:
        return self.gamma**epoch

    def _state_checks(self) -> dict[str, Check]:
        return {**super()._state_checks(), "gamma": _positive}


def _warmup(value: Any, name: str, total_steps: int) -> int:
    if not _is_int(value) or not 0 <= value < total_steps:
        raise LstmValueError(f"{name}: expected an int in [0, total_steps={total_steps}), "
                             f"got {_r(value)}")
    return int(value)


class CosineWarmupLR(LRScheduler):
    """Linear warmup then cosine decay to ``min_lr``.

    For ``epoch < warmup_steps``: ``lr = base_lr * (s + (1 - s) * epoch / warmup_steps)`` with
    ``s = warmup_start_factor``. Afterwards, with ``p = min(1, (epoch - warmup_steps) /
    (total_steps - warmup_steps))``: ``lr = min_lr + (base_lr - min_lr) * (1 + cos(pi p)) / 2``,
    staying at ``min_lr`` after ``total_steps``. With ``warmup_steps=0`` this is torch's
    ``CosineAnnealingLR(T_max=total_steps, eta_min=min_lr)`` up to ``total_steps``.
    """

    def __init__(
        self,
        optimizer: Optimizer,
        total_steps: int,
        warmup_steps: int = 0,
        min_lr: float = 0.0,
        warmup_start_factor: float = 0.0,
    ) -> None:
        self.total_steps = _positive_int(total_steps, "total_steps")
        self.warmup_steps = _warmup(warmup_steps, "warmup_steps", self.total_steps)
        self.min_lr = _nonneg(min_lr, "min_lr")
        self.warmup_start_factor = _unit(warmup_start_factor, "warmup_start_factor")
        super().__init__(optimizer)

    def lr_at(self, base_lr: float, epoch: int) -> float:
        if epoch < self.warmup_steps:
            s = self.warmup_start_factor
            return base_lr * (s + (1.0 - s) * epoch / self.warmup_steps)
        progress = min(1.0, (epoch - self.warmup_steps) / (self.total_steps - self.warmup_steps))
        return self.min_lr + (base_lr - self.min_lr) * (1.0 + math.cos(math.pi * progress)) / 2

    def check_state_dict(self, state: Any) -> dict[str, Any]:
        # warmup_steps is checked against the saved total_steps, so validate that one first
        if isinstance(state, Mapping) and "total_steps" in state:
            total = _positive_int(state["total_steps"], "state_dict: total_steps")
            _warmup(state.get("warmup_steps"), "state_dict: warmup_steps", total)
        return super().check_state_dict(state)

    def _state_checks(self) -> dict[str, Check]:
        return {**super()._state_checks(), "total_steps": _positive_int,
                "warmup_steps": _count, "min_lr": _nonneg, "warmup_start_factor": _unit}


class ReduceLROnPlateau:
    """Multiply the learning rates by ``factor`` when a metric stops improving (torch's
    ``ReduceLROnPlateau``): call ``step(metric)`` once per evaluation."""

    def __init__(
        self,
        optimizer: Optimizer,
        mode: Literal["min", "max"] = "min",
        factor: float = 0.1,
        patience: int = 10,
        threshold: float = 1e-4,
        threshold_mode: Literal["rel", "abs"] = "rel",
        cooldown: int = 0,
        min_lr: float | list[float] = 0.0,
        eps: float = 1e-8,
    ) -> None:
        self.optimizer = _check_optimizer(optimizer)
        n = len(optimizer.param_groups)
        self.mode = _choice("min", "max")(mode, "mode")
        self.factor = _open_unit(factor, "factor")
        self.patience = _count(patience, "patience")
        self.threshold = _nonneg(threshold, "threshold")
        self.threshold_mode = _choice("rel", "abs")(threshold_mode, "threshold_mode")
        self.cooldown = _count(cooldown, "cooldown")
        self.min_lrs = (_rates(min_lr, "min_lr", n) if isinstance(min_lr, (list, tuple))
                        else [_nonneg(min_lr, "min_lr")] * n)
        self.eps = _nonneg(eps, "eps")
        self.best = math.inf if mode == "min" else -math.inf
        self.num_bad_epochs = 0
        self.cooldown_counter = 0
        self.last_epoch = 0

    def _is_better(self, a: float) -> bool:
        t = self.threshold
        if self.mode == "min":
            return a < (self.best * (1 - t) if self.threshold_mode == "rel" else self.best - t)
        return a > (self.best * (1 + t) if self.threshold_mode == "rel" else self.best + t)

    def step(self, metric: float) -> None:
        """Record ``metric`` and reduce the rates after ``patience`` bad steps (a NaN metric
        counts as a bad step)."""
        if not _is_number(metric) and not (isinstance(metric, np.ndarray) and metric.ndim == 0
                                           and _is_number(metric[()])):
            raise DTypeError(f"metric: expected a number, got {_r(metric)}")
        current = float(metric)
        self.last_epoch += 1
        if self._is_better(current):
            self.best = current
            self.num_bad_epochs = 0
        else:
            self.num_bad_epochs += 1
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.num_bad_epochs = 0
        if self.num_bad_epochs > self.patience:
            for group, min_lr in zip(self.optimizer.param_groups, self.min_lrs, strict=True):
                old = float(group["lr"])
                new = max(old * self.factor, min_lr)
                if old - new > self.eps:
                    group["lr"] = new
            self.cooldown_counter = self.cooldown
            self.num_bad_epochs = 0

    def get_last_lr(self) -> list[float]:
        """The current learning rate of every group."""
        return [float(g["lr"]) for g in self.optimizer.param_groups]

    def state_dict(self) -> dict[str, Any]:
        """JSON-serialisable state (everything but the optimiser)."""
        return {k: (list(v) if isinstance(v, list) else v) for k, v in self.__dict__.items()
                if k != "optimizer"}

    def check_state_dict(self, state: Any) -> dict[str, Any]:
        """The validated copy of ``state`` that :meth:`load_state_dict` would restore (see
        :meth:`LRScheduler.check_state_dict`); assigns nothing."""
        n = len(self.optimizer.param_groups)

        def best(value: Any, name: str) -> float:  # +-inf before the first metric
            try:
                v = float(value) if _is_number(value) else math.nan
            except OverflowError:  # an int beyond any float
                v = math.nan
            if math.isnan(v):
                raise LstmValueError(f"{name}: expected a number (or +-Infinity), got "
                                     f"{_r(value)}")
            return v

        new = _checked_state(self, state, {
            "mode": _choice("min", "max"), "factor": _open_unit, "patience": _count,
            "threshold": _nonneg, "threshold_mode": _choice("rel", "abs"), "cooldown": _count,
            "min_lrs": lambda v, name: _rates(v, name, n), "eps": _nonneg, "best": best,
            "num_bad_epochs": _count, "cooldown_counter": _count, "last_epoch": _count,
        })
        if new["cooldown_counter"] > new["cooldown"]:
            raise LstmValueError(f"state_dict: cooldown_counter: expected an int in [0, "
                                 f"cooldown={new['cooldown']}], got {new['cooldown_counter']}")
        return new

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` output. Everything is validated first
        (:meth:`check_state_dict`); on any problem nothing changes."""
        self.__dict__.update(self.check_state_dict(state))
