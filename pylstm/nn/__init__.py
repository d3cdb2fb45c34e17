"""pylstm's training toolkit: layers, losses, optimisers, schedules and checkpoints.

Pure numpy plus the Rust LSTM engine (:class:`pylstm.LSTM`); no deep-learning framework.

Conventions:

* Layers: ``out, tape = layer.forward(x, ..., requires_grad=True)`` (``tape`` is ``None``
  without ``requires_grad``); ``dx = layer.backward(tape, dout)`` adds parameter gradients into
  ``layer.grads[name]`` and returns input gradients. ``layer(x)`` is inference.
* Losses: ``value, tape = loss.forward(pred, target, mask, requires_grad=True)``;
  ``dpred = loss.backward(tape)``.
* Optimisers update parameters in place; ``model.zero_grad()`` between steps.
"""

from __future__ import annotations

from ._errors import DTypeError, LstmValueError, ShapeError
from .attention import Attention
from .checkpoint import load_checkpoint, load_weights, save_checkpoint, save_weights
from .layers import Dropout, Embedding, LayerNorm, Linear
from .losses import CrossEntropyLoss, HuberLoss, Loss, MSELoss, QuantileLoss
from .module import Module, ParamRef, Sequential
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
    "ParamRef",
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
