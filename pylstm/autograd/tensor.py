"""The recorded value (:class:`Tensor`), the graph node that made it, and the backward pass.

Define-by-run, as Chainer and PyTorch do it: every differentiable call that runs while recording
creates one :class:`Node` holding the call's backward function and the tensors it read. A
backward call from a scalar walks the nodes that lead to it in reverse topological order, hands
each node the sum of the gradients of its outputs, and adds what comes back into the node's
inputs: a value used twice (an encoder output read by attention at every decoder step, a weight
shared by two layers) gets the sum of both uses. Each node is freed once its backward has run,
so the arrays it kept are released as the pass goes.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np

from pylstm.errors import DTypeError, LstmValueError, ShapeError, TapeError

__all__ = ["Tensor", "Node", "no_grad", "record", "is_recording", "grad_enabled", "as_array"]

BackwardFn = Callable[[tuple[np.ndarray | None, ...]], Sequence[np.ndarray | None]]


class _Mode(threading.local):
    """Per-thread switches: ``grad`` (off inside :func:`no_grad`) and ``record`` depth."""

    def __init__(self) -> None:
        self.grad = True
        self.record = 0


_mode = _Mode()


@contextmanager
def no_grad() -> Iterator[None]:
    """Nothing inside records, not even calls on tensors that require gradients."""
    previous = _mode.grad
    _mode.grad = False
    try:
        yield
    finally:
        _mode.grad = previous


@contextmanager
def record() -> Iterator[None]:
    """Inside, every module call records and returns :class:`Tensor` values even when its
    inputs are plain arrays (a training step: ``with record(): loss = model.loss(batch)``).

    Outside, a module called on arrays is inference and returns arrays; a module called on a
    :class:`Tensor` records in both cases. The setting is per thread.
    """
    _mode.record += 1
    try:
        yield
    finally:
        _mode.record -= 1


def grad_enabled() -> bool:
    """False inside :func:`no_grad`."""
    return _mode.grad


def is_recording() -> bool:
    """True inside :func:`record` (and not inside :func:`no_grad`)."""
    return _mode.grad and _mode.record > 0


class Node:
    """One recorded call: its backward function and the tensors it read.

    ``backward(output_grads)`` receives one entry per output (``None`` for an output nothing
    depended on) and returns one entry per input (``None`` where an input gets no gradient).
    """

    __slots__ = ("backward_fn", "inputs", "n_outputs", "name")

    def __init__(self, backward_fn: BackwardFn, inputs: Sequence[Tensor | None],
                 n_outputs: int, name: str) -> None:
        self.backward_fn: BackwardFn | None = backward_fn
        self.inputs: tuple[Tensor | None, ...] = tuple(inputs)
        self.n_outputs = n_outputs
        self.name = name

    def __repr__(self) -> str:
        state = "freed" if self.backward_fn is None else f"{len(self.inputs)} inputs"
        return f"<Node {self.name}: {state}>"


class Tensor:
    """An array with what recorded it.

    ``data`` is the numpy array. A leaf (a :class:`~pylstm.nn.Parameter`, or a tensor made with
    ``requires_grad=True``) accumulates ``grad`` (an array of the same shape) in every backward
    pass; a tensor made by a recorded call points at its :class:`Node` instead. Arithmetic
    operators and the functions of :mod:`pylstm.autograd` record when an input requires
    gradients.
    """

    __slots__ = ("data", "grad", "requires_grad", "node", "index", "__weakref__")
    # numpy defers to Tensor's reflected operators (array + tensor) and refuses its ufuncs,
    # which would silently drop what was recorded.
    __array_ufunc__ = None

    def __init__(self, data: Any, requires_grad: bool = False) -> None:
        if isinstance(data, Tensor):
            data = data.data
        arr = np.asarray(data)
        if requires_grad and arr.dtype.kind != "f":
            raise DTypeError(f"data: a tensor that requires gradients must be float32 or float64, "
                             f"got {arr.dtype}")
        self.data: np.ndarray = arr
        self.grad: np.ndarray | None = None
        self.requires_grad = bool(requires_grad)
        self.node: Node | None = None
        self.index = 0

    # ------------------------------------------------------------------ views of the data
    @property
    def shape(self) -> tuple[int, ...]:
        """The array's shape."""
        return self.data.shape

    @property
    def dtype(self) -> np.dtype:
        """The array's dtype."""
        return self.data.dtype

    @property
    def ndim(self) -> int:
        """The array's number of dimensions."""
        return self.data.ndim

    @property
    def size(self) -> int:
        """The array's number of elements."""
        return self.data.size

    def __len__(self) -> int:
        return len(self.data)

    def numpy(self) -> np.ndarray:
        """The array (no copy); what was recorded stays with the tensor."""
        return self.data

    def item(self) -> float | int:
        """The value of a one-element tensor as a Python number."""
        if self.data.size != 1:
            raise ShapeError(f"item: expected a tensor of one element, got shape {self.shape}")
        return self.data.item()

    def __float__(self) -> float:
        return float(self.item())

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        if self.requires_grad:
            raise TypeError("np.asarray(tensor): the tensor requires gradients, and numpy would "
                            "drop them; use tensor.data (or .numpy()) for the values")
        return self.data if dtype is None else self.data.astype(dtype)

    def detach(self) -> Tensor:
        """The same data, not recorded."""
        return Tensor(self.data)

    def __repr__(self) -> str:
        how = f", node={self.node.name}" if self.node is not None else (
            ", requires_grad=True" if self.requires_grad else "")
        return f"Tensor({np.array2string(self.data, threshold=8)}{how})"

    # ------------------------------------------------------------------ backward
    def backward(self, grad: Any = None, retain_graph: bool = False) -> None:
        """Gradients of this tensor with respect to every leaf it depends on.

        ``grad`` defaults to 1 for a one-element tensor. The leaves' ``grad`` arrays
        accumulate. The nodes walked are freed unless ``retain_graph``; a second backward
        through a freed node raises :class:`~pylstm.TapeError`, as PyTorch does.
        """
        if not self.requires_grad:
            raise TapeError("backward: this tensor was not recorded and requires no gradient "
                            "(was it computed inside pylstm.record() or from parameters?)")
        if grad is None:
            if self.data.size != 1:
                raise ShapeError(f"grad: expected it for a tensor of shape {self.shape} (only a "
                                 "one-element tensor has an implicit gradient of 1)")
            seed = np.ones(self.shape, self.dtype)
        else:
            seed = np.asarray(grad.data if isinstance(grad, Tensor) else grad, self.dtype)
            if seed.shape != self.shape:
                raise ShapeError(f"grad: expected shape {self.shape}, got {seed.shape}")
        run_backward([(self, seed)], retain_graph)


def as_array(value: Any) -> Any:
    """``value.data`` for a tensor, the value itself otherwise."""
    return value.data if isinstance(value, Tensor) else value


def _accumulate_leaf(leaf: Tensor, g: np.ndarray) -> None:
    if g.shape != leaf.shape:
        raise ShapeError(f"backward: a gradient of shape {g.shape} reached a leaf of shape "
                         f"{leaf.shape}")
    if leaf.grad is None:
        leaf.grad = np.array(g, dtype=leaf.dtype, copy=True)
    else:
        np.add(leaf.grad, g, out=leaf.grad, casting="unsafe")


def _ordered_nodes(roots: Sequence[Node]) -> list[Node]:
    """Nodes reachable from ``roots``, each after every node that consumes its outputs."""
    order: list[Node] = []
    seen: set[int] = set()
    for root in roots:
        if id(root) in seen:
            continue
        seen.add(id(root))
        stack: list[tuple[Node, Iterator[Tensor | None]]] = [(root, iter(root.inputs))]
        while stack:
            node, it = stack[-1]
            for t in it:
                child = t.node if t is not None else None
                if child is not None and id(child) not in seen:
                    seen.add(id(child))
                    stack.append((child, iter(child.inputs)))
                    break
            else:
                stack.pop()
                order.append(node)
    order.reverse()
    return order


def run_backward(seeds: Sequence[tuple[Tensor, np.ndarray]], retain_graph: bool = False) -> None:
    """Backward from several ``(tensor, gradient)`` pairs at once."""
    pending: dict[int, list[np.ndarray | None]] = {}
    roots: list[Node] = []
    for t, g in seeds:
        if t.node is None:
            if t.requires_grad:
                _accumulate_leaf(t, g)
            continue
        slots = pending.setdefault(id(t.node), [None] * t.node.n_outputs)
        slots[t.index] = g if slots[t.index] is None else slots[t.index] + g
        roots.append(t.node)
    for node in _ordered_nodes(roots):
        grads = pending.pop(id(node), None)
        if grads is None or all(g is None for g in grads):
            continue
        fn = node.backward_fn
        if fn is None:
            raise TapeError(f"backward: the recorded {node.name} call was already freed by an "
                            "earlier backward; pass retain_graph=True to that backward to run "
                            "a second one")
        in_grads = fn(tuple(grads))
        if len(in_grads) != len(node.inputs):
            raise LstmValueError(f"backward of {node.name}: expected {len(node.inputs)} input "
                                 f"gradients, got {len(in_grads)}")
        inputs = node.inputs
        if not retain_graph:
            node.backward_fn = None
            node.inputs = ()
        for t, g in zip(inputs, in_grads, strict=True):
            if t is None or g is None or not t.requires_grad:
                continue
            g = np.asarray(g)
            if t.node is None:
                _accumulate_leaf(t, g)
                continue
            if g.shape != t.shape:
                raise ShapeError(f"backward of {node.name}: a gradient of shape {g.shape} for "
                                 f"an input of shape {t.shape}")
            slots = pending.setdefault(id(t.node), [None] * t.node.n_outputs)
            slots[t.index] = g if slots[t.index] is None else slots[t.index] + g


def make_outputs(outputs: Sequence[np.ndarray], inputs: Sequence[Tensor | None],
                 backward_fn: BackwardFn, name: str) -> list[Tensor]:
    """Tensors for ``outputs``; recorded (one node) when an input requires gradients and
    gradients are enabled."""
    live = [t if t is not None and t.requires_grad else None for t in inputs]
    record_it = _mode.grad and any(t is not None for t in live)
    tensors = [Tensor(o) for o in outputs]
    if record_it:
        node = Node(backward_fn, live, len(outputs), name)
        for i, t in enumerate(tensors):
            t.requires_grad = t.data.dtype.kind == "f"
            t.node = node
            t.index = i
    return tensors
