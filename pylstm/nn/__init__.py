"""pylstm's training toolkit: one module system, layers, losses, optimisers, schedules and
checkpoints.

Pure numpy plus the Rust LSTM engine; no deep-learning framework. The convention every module
follows is stated once, in :mod:`pylstm.nn.module`: ``m(x)`` on arrays is inference; on
:class:`~pylstm.autograd.Tensor` values (or inside :func:`pylstm.record`) the call is recorded and
``loss.backward()`` fills each :class:`Parameter`'s ``grad``. Layers also expose the explicit
``forward(..., requires_grad=True)`` / ``backward(tape, dout)`` pair the recorder is built on.
"""

from __future__ import annotations

from ._errors import DTypeError, LstmValueError, ShapeError
from .attention import Attention
from .checkpoint import load_checkpoint, load_weights, save_checkpoint, save_weights
from .gated import GatedLSTM
from .layers import Dropout, Embedding, LayerNorm, Linear
from .losses import CrossEntropyLoss, HuberLoss, Loss, MSELoss, QuantileLoss
from .module import Module, Parameter, Sequential
from .optim import SGD, Adam, AdamW, Optimizer, clip_grad_norm_
from .recurrent import LSTM, LSTMCell
from .schedules import (
    CosineWarmupLR,
    ExponentialLR,
    LRScheduler,
    ReduceLROnPlateau,
    StepLR,
)

__all__ = [
    "Adam",
    "AdamW",
    "Attention",
    "CosineWarmupLR",
    "CrossEntropyLoss",
    "DTypeError",
    "Dropout",
    "Embedding",
    "GatedLSTM",
    "ExponentialLR",
    "HuberLoss",
    "LRScheduler",
    "LSTM",
    "LSTMCell",
    "LayerNorm",
    "Linear",
    "Loss",
    "LstmValueError",
    "MSELoss",
    "Module",
    "Optimizer",
    "Parameter",
    "QuantileLoss",
    "ReduceLROnPlateau",
    "SGD",
    "Sequential",
    "ShapeError",
    "StepLR",
    "clip_grad_norm_",
    "load_checkpoint",
    "load_weights",
    "save_checkpoint",
    "save_weights",
]
