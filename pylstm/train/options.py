"""The training loop's options, validated once, saved with each checkpoint."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any, Literal

from pylstm.errors import DTypeError, LstmValueError

__all__ = ["TrainOptions"]

#: Names of the values every history row has; validation metrics may not reuse them.
ROW_KEYS = ("epoch", "step", "train_loss", "lr", "seconds", "tokens_per_s", "allreduce_s")


def _int_or_none(value: Any, name: str, minimum: int) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        raise DTypeError(f"{name}: expected an integer >= {minimum} or None, got {value!r}")
    if value < minimum:
        raise LstmValueError(f"{name}: expected an integer >= {minimum} or None, got {value}")


def _positive_or_none(value: Any, name: str) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise DTypeError(f"{name}: expected a number > 0 or None, got {value!r}")
    if not (value > 0 and math.isfinite(value)):
        raise LstmValueError(f"{name}: expected a finite number > 0 or None, got {value}")


@dataclass(frozen=True)
class TrainOptions:
    """How :class:`pylstm.train.Trainer` trains.

    Attributes:
        epochs: passes over the data (``None``: until another limit stops it).
        max_steps: stop after this many optimiser steps in all (finishing that epoch's
            validation and checkpoint).
        time_budget: seconds of training (a resumed run counts the time spent before); checked
            between batches: the batch in progress finishes, then the epoch is validated and
            checkpointed.
        clip: clip gradients to this global L2 norm before each step (``None``: no clipping).
        patience: stop after this many epochs in a row without a better ``metric``.
        metric: the value that picks the best epoch: a key of ``validate()``'s result, or
            ``"train_loss"``.
        mode: ``"min"`` or ``"max"``: whether a smaller or a larger ``metric`` is better.
        schedule_every: step the scheduler after every optimiser ``"step"`` or once per
            ``"epoch"`` (a ``ReduceLROnPlateau`` is always stepped per epoch with ``metric``).
    """

    epochs: int | None = 10
    max_steps: int | None = None
    time_budget: float | None = None
    clip: float | None = 1.0
    patience: int | None = None
    metric: str = "loss"
    mode: Literal["min", "max"] = "min"
    schedule_every: Literal["step", "epoch"] = "step"

    def __post_init__(self) -> None:
        _int_or_none(self.epochs, "epochs", 1)
        _int_or_none(self.max_steps, "max_steps", 1)
        _int_or_none(self.patience, "patience", 1)
        _positive_or_none(self.time_budget, "time_budget")
        _positive_or_none(self.clip, "clip")
        if self.epochs is None and self.max_steps is None:
            raise LstmValueError("epochs: expected a number of epochs, or max_steps, got both "
                                 "None (training would never end)")
        if not isinstance(self.metric, str) or not self.metric or (
                self.metric in ROW_KEYS and self.metric != "train_loss"):
            raise LstmValueError(f"metric: expected the name of a validation metric or "
                                 f"'train_loss', got {self.metric!r}")
        if self.mode not in ("min", "max"):
            raise LstmValueError(f"mode: expected 'min' or 'max', got {self.mode!r}")
        if self.schedule_every not in ("step", "epoch"):
            raise LstmValueError(f"schedule_every: expected 'step' or 'epoch', got "
                                 f"{self.schedule_every!r}")

    def to_dict(self) -> dict[str, Any]:
        """The options as a JSON-able dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> TrainOptions:
        """Options from :meth:`to_dict` output (unknown keys are an error)."""
        if not isinstance(data, dict):
            raise DTypeError(f"options: expected a dict, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise LstmValueError(f"options: unknown keys {unknown} (expected some of "
                                 f"{sorted(known)})")
        return cls(**data)

    def better(self, value: float, best: float | None) -> bool:
        """Whether ``value`` improves on ``best`` (strictly; anything beats ``None``)."""
        if best is None:
            return True
        return value < best if self.mode == "min" else value > best
