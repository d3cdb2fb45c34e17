"""Learning-rate schedules, following ``torch.optim.lr_scheduler``'s stepping convention.

Creating a schedule records each group's ``initial_lr`` and sets the learning rate for step 0;
each :meth:`LRScheduler.step` call (once per epoch or per batch, after ``optimizer.step()``)
advances ``last_epoch`` by one and writes the new rate into every parameter group. Rates are
computed in closed form from ``last_epoch``, so a schedule restored from :meth:`state_dict`
continues exactly.
"""

from __future__ import annotations

import math
from typing import Any, Literal

from ._errors import LstmValueError
from .optim import Optimizer

__all__ = [
    "LRScheduler",
    "StepLR",
    "ExponentialLR",
    "CosineWarmupLR",
    "ReduceLROnPlateau",
]


def _check_optimizer(optimizer: Any) -> Optimizer:
    if not isinstance(optimizer, Optimizer):
        raise TypeError(
            f"optimizer: expected a pylstm.nn Optimizer, got {type(optimizer).__name__}"
        )
    return optimizer


class LRScheduler:
    """Base class: subclasses implement :meth:`factor` or :meth:`lr_at`."""

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

    def _apply(self) -> None:
        for group, base in zip(self.optimizer.param_groups, self.base_lrs, strict=True):
            group["lr"] = self.lr_at(base, self.last_epoch)

    def step(self) -> None:
        """Advance one step and update the optimiser's learning rates."""
        self.last_epoch += 1
        self._apply()

    def get_last_lr(self) -> list[float]:
        """The current learning rate of every group."""
        return [float(g["lr"]) for g in self.optimizer.param_groups]

    def state_dict(self) -> dict[str, Any]:
        """JSON-serialisable state (everything but the optimiser)."""
        return {k: v for k, v in self.__dict__.items() if k != "optimizer"}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` output and re-apply the learning rates."""
        self.__dict__.update({k: v for k, v in state.items() if k != "optimizer"})
        self._apply()


class StepLR(LRScheduler):
    """``lr = base_lr * gamma ** (epoch // step_size)`` (like ``torch``'s ``StepLR``)."""

    def __init__(self, optimizer: Optimizer, step_size: int, gamma: float = 0.1) -> None:
        if isinstance(step_size, bool) or not isinstance(step_size, int) or step_size <= 0:
            raise LstmValueError(f"step_size: expected a positive int, got {step_size!r}")
        if not float(gamma) > 0:
            raise LstmValueError(f"gamma: expected > 0, got {gamma}")
        self.step_size = step_size
        self.gamma = float(gamma)
        super().__init__(optimizer)

    def factor(self, epoch: int) -> float:
        return self.gamma ** (epoch // self.step_size)


class ExponentialLR(LRScheduler):
    """``lr = base_lr * gamma ** epoch``."""

    def __init__(self, optimizer: Optimizer, gamma: float) -> None:
        if not float(gamma) > 0:
            raise LstmValueError(f"gamma: expected > 0, got {gamma}")
        self.gamma = float(gamma)
        super().__init__(optimizer)

    def factor(self, epoch: int) -> float:
        return self.gamma**epoch


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
        if isinstance(total_steps, bool) or not isinstance(total_steps, int) or total_steps <= 0:
            raise LstmValueError(f"total_steps: expected a positive int, got {total_steps!r}")
        if not isinstance(warmup_steps, int) or not 0 <= warmup_steps < total_steps:
            raise LstmValueError(
                f"warmup_steps: expected an int in [0, total_steps={total_steps}), "
                f"got {warmup_steps!r}"
            )
        if not float(min_lr) >= 0:
            raise LstmValueError(f"min_lr: expected >= 0, got {min_lr}")
        if not 0.0 <= float(warmup_start_factor) <= 1.0:
            raise LstmValueError(
                f"warmup_start_factor: expected in [0, 1], got {warmup_start_factor}"
            )
        self.total_steps = total_steps
        self.warmup_steps = warmup_steps
        self.min_lr = float(min_lr)
        self.warmup_start_factor = float(warmup_start_factor)
        super().__init__(optimizer)

    def lr_at(self, base_lr: float, epoch: int) -> float:
        if epoch < self.warmup_steps:
            s = self.warmup_start_factor
            return base_lr * (s + (1.0 - s) * epoch / self.warmup_steps)
        progress = min(1.0, (epoch - self.warmup_steps) / (self.total_steps - self.warmup_steps))
        return self.min_lr + (base_lr - self.min_lr) * (1.0 + math.cos(math.pi * progress)) / 2


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
        if mode not in ("min", "max"):
            raise LstmValueError(f"mode: expected 'min' or 'max', got {mode!r}")
        if threshold_mode not in ("rel", "abs"):
            raise LstmValueError(f"threshold_mode: expected 'rel' or 'abs', got {threshold_mode!r}")
        if not 0.0 < float(factor) < 1.0:
            raise LstmValueError(f"factor: expected in (0, 1), got {factor}")
        if not isinstance(patience, int) or patience < 0:
            raise LstmValueError(f"patience: expected an int >= 0, got {patience!r}")
        if not isinstance(cooldown, int) or cooldown < 0:
            raise LstmValueError(f"cooldown: expected an int >= 0, got {cooldown!r}")
        n = len(optimizer.param_groups)
        if isinstance(min_lr, (list, tuple)):
            if len(min_lr) != n:
                raise LstmValueError(f"min_lr: expected {n} values (one per group), got {min_lr}")
            self.min_lrs = [float(v) for v in min_lr]
        else:
            self.min_lrs = [float(min_lr)] * n
        self.mode = mode
        self.factor = float(factor)
        self.patience = patience
        self.threshold = float(threshold)
        self.threshold_mode = threshold_mode
        self.cooldown = cooldown
        self.eps = float(eps)
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
        """Record ``metric`` and reduce the rates after ``patience`` bad steps."""
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
        return {k: v for k, v in self.__dict__.items() if k != "optimizer"}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` output."""
        self.__dict__.update({k: v for k, v in state.items() if k != "optimizer"})
