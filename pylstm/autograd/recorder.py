"""Recording a layer call as one node.

A layer of :mod:`pylstm.nn` computes in two explicit halves, each checked by finite
differences: ``out, tape = layer.forward(*inputs, requires_grad=True)`` and
``grads = layer.backward(tape, dout)``. :func:`record_call` runs the first half on the inputs'
arrays and records the second as the node's backward, so a whole-sequence LSTM call stays one
engine call and one node, however long the sequence.

Inputs and outputs may be nested tuples and lists (``(y, (h_n, c_n))``); their array leaves are
what is differentiated. Only positional inputs carry gradients; keyword arguments (masks,
lengths, options) are passed through as constants.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from .tensor import Tensor, is_recording, make_outputs

__all__ = ["flatten", "unflatten", "wants_recording", "record_call", "plain"]


def flatten(tree: Any) -> tuple[list[Any], Any]:
    """Leaves of nested tuples/lists, and the structure to rebuild them with."""
    if isinstance(tree, (tuple, list)):
        if not any(isinstance(item, (tuple, list)) for item in tree):  # the common, flat case
            return list(tree), (type(tree), [(1, None)] * len(tree))
        leaves: list[Any] = []
        shapes = []
        for item in tree:
            sub, spec = flatten(item)
            leaves.extend(sub)
            shapes.append((len(sub), spec))
        return leaves, (type(tree), shapes)
    return [tree], None


def unflatten(spec: Any, leaves: list[Any]) -> Any:
    """Inverse of :func:`flatten`."""
    if spec is None:
        return leaves[0]
    kind, shapes = spec
    out, pos = [], 0
    for n, sub in shapes:
        out.append(unflatten(sub, leaves[pos:pos + n]))
        pos += n
    return kind(out)


def plain(tree: Any) -> Any:
    """The same structure with every tensor replaced by its array."""
    leaves, spec = flatten(tree)
    return unflatten(spec, [x.data if isinstance(x, Tensor) else x for x in leaves])


def _has_tensor(tree: Any) -> bool:
    """Whether a tensor is among the leaves of nested tuples/lists (without building them:
    this runs on every module call, one decoding step included)."""
    if isinstance(tree, Tensor):
        return True
    if isinstance(tree, (tuple, list)):
        return any(_has_tensor(item) for item in tree)
    return False


def wants_recording(args: Any, kwargs: dict[str, Any] | None = None) -> bool:
    """A call records inside :func:`~pylstm.autograd.record`, or when a tensor is passed."""
    if is_recording():
        return True
    return _has_tensor(args) or (bool(kwargs) and _has_tensor(list(kwargs.values())))


def record_call(forward: Callable[..., tuple[Any, Any]], backward: Callable[[Any, Any], Any],
                args: tuple, kwargs: dict[str, Any], name: str,
                single_input: bool) -> Any:
    """Run ``forward(*arrays, requires_grad=True, **kwargs)`` and record ``backward``.

    ``backward(tape, dout)`` receives the output gradients in the outputs' structure (``None``
    leaves for outputs nothing used) and returns the input gradients: one array when
    ``single_input``, else a tuple aligned with the positional inputs (nested like them; extra
    trailing entries are ignored).
    """
    in_leaves, in_spec = flatten(args)
    arrays = [x.data if isinstance(x, Tensor) else x for x in in_leaves]
    call_args = arrays if len(in_leaves) == len(args) else unflatten(in_spec, arrays)
    out, tape = forward(*call_args, requires_grad=True, **(plain(kwargs) if kwargs else {}))
    out_leaves, out_spec = flatten(out)
    array_slots = [i for i, x in enumerate(out_leaves) if isinstance(x, np.ndarray)]
    tensor_inputs = [x if isinstance(x, Tensor) else None for x in in_leaves]

    def node_backward(grads: tuple) -> list:
        full: list[Any] = [None] * len(out_leaves)
        for slot, g in zip(array_slots, grads, strict=True):
            full[slot] = g
        result = backward(tape, unflatten(out_spec, full))
        if single_input:
            result = (result,)
        flat: list[Any] = []
        for arg, g in zip(args, result, strict=False):
            n = len(flatten(arg)[0])
            if g is None:
                flat.extend([None] * n)
            else:
                sub = flatten(g)[0]
                flat.extend(sub if len(sub) == n else [None] * n)
        flat.extend([None] * (len(in_leaves) - len(flat)))
        return flat

    # Parameters are inputs too: a layer whose inputs are all constants still records when its
    # parameters require gradients. They are passed as a sentinel tensor that requires grad so
    # the node is kept; the layer's own backward accumulates into the parameters.
    tensors = make_outputs([out_leaves[i] for i in array_slots],
                           [*tensor_inputs, _PARAMS], node_backward_with_params(node_backward),
                           name)
    leaves = list(out_leaves)
    for slot, t in zip(array_slots, tensors, strict=True):
        leaves[slot] = t
    return unflatten(out_spec, leaves)


class _ParamsSentinel(Tensor):
    """Stands for "the layer's own parameters" among a node's inputs: it requires gradients
    (so a layer on constant inputs is still recorded) and ignores what reaches it."""

    def __init__(self) -> None:
        super().__init__(np.zeros(0, np.float32), requires_grad=True)


_PARAMS = _ParamsSentinel()


def node_backward_with_params(fn: Callable[[tuple], list]) -> Callable[[tuple], list]:
    """Append the sentinel's (empty) gradient to ``fn``'s input gradients."""
    return lambda grads: [*fn(grads), None]
