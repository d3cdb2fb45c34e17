"""Gradients for models written as ordinary Python: a define-by-run recorder.

* :class:`Tensor` — an array with what recorded it; ``loss.backward()`` fills the ``grad`` of
  every leaf (parameters) it depends on.
* :func:`record` — inside, module calls record and return tensors even on plain arrays (a
  training step); outside, modules called on arrays are inference and return arrays.
* :func:`no_grad` — nothing records.
* The functions below (``tanh``, ``concat``, ``masked_softmax``, ...) and the tensor operators
  record one node each; a layer of :mod:`pylstm.nn` records one node per call, its backward
  being the layer's own (an LSTM over a whole sequence is one engine call and one node).

See ``docs/ARCHITECTURE.md`` ("Gradients of composite models") for why the recorder works at the
granularity of layer calls.
"""

from __future__ import annotations

from .ops import (
    abs,
    add,
    clip_values,
    concat,
    div,
    exp,
    getitem,
    log,
    log_softmax,
    masked_softmax,
    matmul,
    maximum,
    mean,
    mul,
    neg,
    power,
    relu,
    reshape,
    sigmoid,
    softmax,
    sqrt,
    stack,
    sub,
    sum,
    tanh,
    tensor,
    transpose,
    unbroadcast,
    where,
)
from .recorder import record_call, wants_recording
from .tensor import (
    Node,
    Tensor,
    as_array,
    grad_enabled,
    is_recording,
    no_grad,
    record,
    run_backward,
)

__all__ = [
    "Node", "Tensor", "abs", "add", "as_array", "clip_values", "concat", "div", "exp", "getitem",
    "grad_enabled", "is_recording", "log", "log_softmax", "masked_softmax", "matmul", "maximum",
    "mean", "mul", "neg", "no_grad", "power", "record", "record_call", "relu", "reshape",
    "run_backward", "sigmoid", "softmax", "sqrt", "stack", "sub", "sum", "tanh", "tensor",
    "transpose", "unbroadcast", "wants_recording", "where",
]
