"""One training loop for every task (:class:`Trainer`, :class:`TrainOptions`), checkpointing
each epoch into a :class:`pylstm.runs.Run` folder so that an interrupted run resumes to the
same result, bit for bit."""

from __future__ import annotations

from .options import TrainOptions
from .state import TrainState
from .trainer import Trainer

__all__ = ["TrainOptions", "TrainState", "Trainer"]
