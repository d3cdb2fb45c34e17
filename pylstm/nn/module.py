"""The :class:`Module` base class, :class:`ParamRef` and the :class:`Sequential` container.

Conventions shared by every layer in :mod:`pylstm.nn`:

* ``out, tape = layer.forward(x, ..., requires_grad=True)``; with ``requires_grad=False`` (the
  default) the tape is ``None``. ``layer(x, ...)`` is ``layer.forward(x, ...)[0]``.
* ``dx = layer.backward(tape, dout)`` *adds* the parameter gradients into ``layer.grads[name]``
  (in place) and returns the gradient with respect to the input(s).
* ``layer.parameters`` / ``layer.grads`` hold the module's *own* arrays (same keys and shapes);
  ``named_parameters()`` / ``named_grads()`` walk children and yield dotted names such as
  ``"encoder.weight_ih_l0"``. Optimisers update the parameter arrays in place.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._errors import DTypeError, LstmValueError, ShapeError

__all__ = ["Module", "ParamRef", "Sequential"]


@dataclass(frozen=True)
class ParamRef:
    """A named handle on one parameter: ``data`` and ``grad`` are looked up live on each access.

    Looking the gradient up by key (instead of holding the array) keeps optimisers correct even
    if a module replaces a gradient array instead of updating it in place.
    """

    name: str
    owner: Module
    key: str

    @property
    def data(self) -> np.ndarray:
        """The live parameter array (update in place)."""
        return self.owner.parameters[self.key]

    @property
    def grad(self) -> np.ndarray:
        """The accumulated gradient array."""
        return self.owner.grads[self.key]


class Module:
    """Base class: own parameters and gradients plus named child modules.

    Subclasses call ``super().__init__()`` first, register arrays with :meth:`register_parameter`
    and assign child modules as attributes (``self.encoder = LSTM(...)``).
    """

    parameters: dict[str, np.ndarray]
    grads: dict[str, np.ndarray]
    training: bool

    def __init__(self) -> None:
        object.__setattr__(self, "_children", {})
        self.parameters = {}
        self.grads = {}
        self.training = True

    # ----------------------------------------------------------------- registration
    def __setattr__(self, name: str, value: Any) -> None:
        children = self.__dict__.get("_children")
        if children is None:
            raise RuntimeError(
                f"{type(self).__name__}: call super().__init__() before assigning attributes"
            )
        if isinstance(value, Module):
            children[name] = value
        elif name in children:
            del children[name]
        object.__setattr__(self, name, value)

    def add_module(self, name: str, module: Module) -> None:
        """Register ``module`` as a child called ``name`` (also reachable as an attribute)."""
        if not isinstance(module, Module):
            raise TypeError(f"module: expected a pylstm.nn.Module, got {type(module).__name__}")
        if not name or "." in name:
            raise LstmValueError(f"name: expected a non-empty name without '.', got {name!r}")
        setattr(self, name, module)

    def register_parameter(self, name: str, value: np.ndarray) -> np.ndarray:
        """Register ``value`` as parameter ``name`` with a zero gradient of the same shape."""
        if not name or "." in name:
            raise LstmValueError(f"name: expected a non-empty name without '.', got {name!r}")
        if not isinstance(value, np.ndarray):
            raise DTypeError(f"{name}: expected a numpy.ndarray, got {type(value).__name__}")
        value = np.ascontiguousarray(value)
        self.parameters[name] = value
        self.grads[name] = np.zeros_like(value)
        return value

    # ----------------------------------------------------------------- traversal
    def named_children(self) -> Iterator[tuple[str, Module]]:
        """Direct children, in registration order."""
        yield from self._children.items()  # type: ignore[attr-defined]

    def named_modules(self, prefix: str = "") -> Iterator[tuple[str, Module]]:
        """This module (named ``prefix``) and all descendants, depth first."""
        yield prefix, self
        for name, child in self.named_children():
            yield from child.named_modules(f"{prefix}.{name}" if prefix else name)

    def parameter_refs(self, prefix: str = "") -> Iterator[ParamRef]:
        """A :class:`ParamRef` per parameter, own parameters first, then children's."""
        for mod_name, mod in self.named_modules(prefix):
            for key in mod.parameters:
                yield ParamRef(f"{mod_name}.{key}" if mod_name else key, mod, key)

    def named_parameters(self, prefix: str = "") -> Iterator[tuple[str, np.ndarray]]:
        """``(dotted_name, live_array)`` for every parameter."""
        for ref in self.parameter_refs(prefix):
            yield ref.name, ref.data

    def named_grads(self, prefix: str = "") -> Iterator[tuple[str, np.ndarray]]:
        """``(dotted_name, gradient_array)`` for every parameter."""
        for ref in self.parameter_refs(prefix):
            yield ref.name, ref.grad

    def num_parameters(self) -> int:
        """Total number of scalar parameters."""
        return int(sum(p.size for _, p in self.named_parameters()))

    # ----------------------------------------------------------------- state
    def zero_grad(self) -> None:
        """Set every gradient (recursively) to zero, in place."""
        for _, mod in self.named_modules():
            for g in mod.grads.values():
                g.fill(0)

    def train(self, mode: bool = True) -> Module:
        """Set training mode recursively (dropout active); returns ``self``."""
        if not isinstance(mode, bool):
            raise TypeError(f"mode: expected a bool, got {mode!r}")
        for _, mod in self.named_modules():
            mod.training = mode
            mod._on_train(mode)
        return self

    def eval(self) -> Module:
        """Same as ``train(False)``."""
        return self.train(False)

    def _on_train(self, mode: bool) -> None:
        """Hook for modules that must forward the mode elsewhere (engine wrappers)."""

    def mark_updated(self) -> None:
        """Called after this module's own parameters changed in place (optimiser steps,
        :meth:`load_state_dict`). A no-op here; engine wrappers forward it so cached backends
        (e.g. onnxruntime sessions) see the new weights."""

    def state_dict(self) -> dict[str, np.ndarray]:
        """Copies of all parameters by dotted name."""
        return {name: p.copy() for name, p in self.named_parameters()}

    def load_state_dict(self, state: Mapping[str, np.ndarray], strict: bool = True) -> None:
        """Copy ``state`` into the live parameter arrays (in place, bit for bit).

        Shapes and dtypes must match exactly. With ``strict`` (default) the key sets must be equal.
        """
        refs = {ref.name: ref for ref in self.parameter_refs()}
        if strict:
            missing = sorted(set(refs) - set(state))
            unexpected = sorted(set(state) - set(refs))
            if missing or unexpected:
                raise KeyError(
                    f"state: missing keys {missing}, unexpected keys {unexpected}"
                )
        for name, value in state.items():
            if name not in refs:
                continue
            target = refs[name].data
            if not isinstance(value, np.ndarray):
                raise DTypeError(f"state[{name!r}]: expected a numpy.ndarray, got {type(value)}")
            if value.shape != target.shape:
                raise ShapeError(
                    f"state[{name!r}]: expected shape {target.shape}, got {value.shape}"
                )
            if value.dtype != target.dtype:
                raise DTypeError(
                    f"state[{name!r}]: expected dtype {target.dtype}, got {value.dtype}"
                )
        touched: dict[int, Module] = {}
        for name, value in state.items():
            if name in refs:
                np.copyto(refs[name].data, value)
                touched[id(refs[name].owner)] = refs[name].owner
        for mod in touched.values():
            mod.mark_updated()

    # ----------------------------------------------------------------- compute
    def forward(self, *args: Any, **kwargs: Any) -> tuple[Any, Any]:
        """Return ``(out, tape)``; ``tape`` is ``None`` unless ``requires_grad=True``."""
        raise NotImplementedError

    def backward(self, tape: Any, *grads: Any, **kwargs: Any) -> Any:
        """Accumulate parameter gradients and return input gradients."""
        raise NotImplementedError

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Inference: ``forward(..., requires_grad=False)[0]``."""
        if "requires_grad" in kwargs:
            raise TypeError("requires_grad: use module.forward(...) for a tape, not module(...)")
        return self.forward(*args, requires_grad=False, **kwargs)[0]

    def extra_repr(self) -> str:
        """Arguments shown by ``repr``."""
        return ""

    def __repr__(self) -> str:
        lines = [f"{type(self).__name__}({self.extra_repr()}"]
        children = list(self.named_children())
        if not children:
            return lines[0] + ")"
        for name, child in children:
            body = repr(child).replace("\n", "\n  ")
            lines.append(f"  ({name}): {body}")
        return "\n".join(lines) + "\n)"


def _check_tape(tape: Any, cls: type, who: str) -> None:
    if tape is None:
        raise LstmValueError(
            f"tape: {who}.backward got None; call forward(..., requires_grad=True) first"
        )
    if not isinstance(tape, cls):
        raise TypeError(f"tape: expected a {cls.__name__}, got {type(tape).__name__}")


class Sequential(Module):
    """Chain of single-input, single-output modules, children named ``"0"``, ``"1"``, ...

    ``forward`` feeds each module's output to the next; ``backward`` runs the chain in reverse.
    A module whose backward returns ``None`` (e.g. :class:`~pylstm.nn.Embedding`, whose input is
    integer ids) must come first.
    """

    def __init__(self, *modules: Module) -> None:
        super().__init__()
        for i, m in enumerate(modules):
            self.add_module(str(i), m)

    def __len__(self) -> int:
        return len(self._children)  # type: ignore[attr-defined]

    def __getitem__(self, index: int) -> Module:
        return list(self._children.values())[index]  # type: ignore[attr-defined]

    def forward(self, x: Any, requires_grad: bool = False) -> tuple[Any, list[Any] | None]:
        tapes: list[Any] = []
        for _, m in self.named_children():
            x, t = m.forward(x, requires_grad=requires_grad)
            tapes.append(t)
        return x, (tapes if requires_grad else None)

    def backward(self, tape: list[Any] | None, dout: Any) -> Any:  # type: ignore[override]
        if tape is None:
            raise LstmValueError(
                "tape: Sequential.backward got None; call forward(..., requires_grad=True) first"
            )
        mods = [m for _, m in self.named_children()]
        if len(tape) != len(mods):
            raise LstmValueError(f"tape: expected {len(mods)} entries, got {len(tape)}")
        for i in range(len(mods) - 1, -1, -1):
            if dout is None:
                raise LstmValueError(
                    f"Sequential: module {i} ({type(mods[i + 1]).__name__} at {i + 1}) returned "
                    "no input gradient; it must be the first module"
                )
            dout = mods[i].backward(tape[i], dout)
        return dout
