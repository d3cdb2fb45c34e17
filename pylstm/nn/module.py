"""The one module system: :class:`Parameter`, :class:`Module` and :class:`Sequential`.

The convention every module follows, stated once:

* ``m(x, ...)`` on numpy arrays is inference: arrays in, arrays out, nothing recorded.
* ``m(t, ...)`` on a :class:`~pylstm.autograd.Tensor`, or any call inside
  :func:`pylstm.record`, records and returns tensors; ``loss.backward()`` then fills every
  parameter's ``.grad``.
* A *layer* (a module that defines :meth:`Module.backward`) also offers its two explicit halves:
  ``out = m.forward(x)``; ``out, tape = m.forward(x, requires_grad=True)`` and
  ``input_grads = m.backward(tape, output_grads)``, which adds the parameter gradients into each
  ``p.grad``. The recorder is built on exactly these.
* A *composite* module (your model) defines only ``forward`` in ordinary Python over other
  modules and :mod:`pylstm.autograd` functions; its gradients come from the recorder.

Parameters are :class:`Parameter` tensors assigned as attributes (``self.weight =
Parameter(w)``) or registered by name; ``p.data`` is the live array (optimisers update it in
place and the engine reads it), ``p.grad`` an array of the same shape. Assigning one module's
parameter to another (``decoder.out.weight = decoder.embed.weight``) ties them: both layers read
and accumulate into the same arrays, and :meth:`Module.parameters` yields it once.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, ClassVar

import numpy as np

from pylstm.autograd.recorder import record_call, wants_recording
from pylstm.autograd.tensor import Tensor
from pylstm.errors import DTypeError, LstmValueError, ShapeError, TapeError

__all__ = ["Module", "Parameter", "Sequential", "check_tape"]


class Parameter(Tensor):
    """A trainable array: a leaf tensor that requires gradients, with ``grad`` preallocated
    (zeros of the same shape and dtype) so backward passes accumulate in place.

    ``version`` counts in-place updates (optimiser steps, ``load_state_dict``,
    ``mark_updated``): copies derived from the data (packed weights, onnxruntime sessions)
    rebuild when it changes."""

    __slots__ = ("version",)

    def __init__(self, data: Any, requires_grad: bool = True) -> None:
        arr = data.data if isinstance(data, Tensor) else data
        if not isinstance(arr, np.ndarray):
            raise DTypeError(f"data: expected a numpy.ndarray, got {type(arr).__name__}")
        if arr.dtype not in (np.float32, np.float64):
            raise DTypeError(f"data: expected float32 or float64, got {arr.dtype}")
        super().__init__(np.ascontiguousarray(arr), requires_grad=requires_grad)
        self.grad = np.zeros_like(self.data)
        self.version = 0

    def __repr__(self) -> str:
        return f"Parameter(shape={list(self.shape)}, dtype={self.dtype})"

    def __reduce__(self) -> tuple:
        return (_rebuild_parameter, (self.data, self.grad, self.requires_grad))


def _rebuild_parameter(data: np.ndarray, grad: np.ndarray, requires_grad: bool) -> Parameter:
    p = Parameter(data, requires_grad)
    p.grad = grad
    return p


def check_tape(tape: Any, cls: type, who: str) -> None:
    """Refuse a missing tape or one another layer made."""
    if tape is None:
        raise TapeError(f"tape: {who}.backward got None; call forward(..., requires_grad=True) "
                        "first")
    if not isinstance(tape, cls):
        raise TapeError(f"tape: expected a {cls.__name__}, got {type(tape).__name__}")


class Module:
    """Base class of layers and models: parameters, child modules, modes, state dicts.

    Subclasses call ``super().__init__()`` first, then assign parameters and child modules as
    attributes.
    """

    training: bool
    #: A layer whose ``backward`` returns the gradient of its one differentiable input (not a
    #: tuple aligned with the positional inputs).
    single_input: ClassVar[bool] = False

    def __init__(self) -> None:
        object.__setattr__(self, "_parameters", {})
        object.__setattr__(self, "_modules", {})
        object.__setattr__(self, "training", True)

    # ----------------------------------------------------------------- registration
    def __setattr__(self, name: str, value: Any) -> None:
        params = self.__dict__.get("_parameters")
        if params is None:
            raise RuntimeError(f"{type(self).__name__}: call super().__init__() before "
                               "assigning attributes")
        mods = self.__dict__["_modules"]
        if isinstance(value, Parameter):
            mods.pop(name, None)
            self.__dict__.pop(name, None)
            params[name] = value
            self._parameters_changed()
        elif isinstance(value, Module):
            params.pop(name, None)
            self.__dict__.pop(name, None)
            mods[name] = value
        else:
            if name in params:
                raise TypeError(f"{name}: expected a pylstm.nn.Parameter (it is a parameter "
                                f"of {type(self).__name__}), got {type(value).__name__}")
            mods.pop(name, None)
            object.__setattr__(self, name, value)

    def __getattr__(self, name: str) -> Any:
        d = self.__dict__
        if "_parameters" in d and name in d["_parameters"]:
            return d["_parameters"][name]
        if "_modules" in d and name in d["_modules"]:
            return d["_modules"][name]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __delattr__(self, name: str) -> None:
        if name in self._parameters:
            del self._parameters[name]
        elif name in self._modules:
            del self._modules[name]
        else:
            object.__delattr__(self, name)

    def _parameters_changed(self) -> None:
        """Called when a parameter is assigned (engine modules drop cached packs)."""

    def register_parameter(self, name: str, value: Parameter | np.ndarray) -> Parameter:
        """Register ``value`` (an array becomes a :class:`Parameter`) as ``name``."""
        if not isinstance(name, str) or not name or "." in name:
            raise LstmValueError(f"name: expected a non-empty name without '.', got {name!r}")
        p = value if isinstance(value, Parameter) else Parameter(value)
        setattr(self, name, p)
        return p

    def add_module(self, name: str, module: Module) -> None:
        """Register ``module`` as a child called ``name`` (also reachable as an attribute)."""
        if not isinstance(module, Module):
            raise TypeError(f"module: expected a pylstm.nn.Module, got {type(module).__name__}")
        if not isinstance(name, str) or not name or "." in name:
            raise LstmValueError(f"name: expected a non-empty name without '.', got {name!r}")
        setattr(self, name, module)

    # ----------------------------------------------------------------- traversal
    def named_children(self) -> Iterator[tuple[str, Module]]:
        """Direct children, in registration order."""
        yield from self._modules.items()

    def children(self) -> Iterator[Module]:
        """Direct children, in registration order."""
        yield from self._modules.values()

    def named_modules(self, prefix: str = "") -> Iterator[tuple[str, Module]]:
        """This module (named ``prefix``) and every descendant once, depth first."""
        seen: set[int] = set()

        def walk(mod: Module, name: str) -> Iterator[tuple[str, Module]]:
            if id(mod) in seen:
                return
            seen.add(id(mod))
            yield name, mod
            for child_name, child in mod._modules.items():
                yield from walk(child, f"{name}.{child_name}" if name else child_name)

        yield from walk(self, prefix)

    def modules(self) -> Iterator[Module]:
        """This module and every descendant once."""
        for _, m in self.named_modules():
            yield m

    def _all_named_parameters(self, prefix: str = "") -> Iterator[tuple[str, Parameter]]:
        for mod_name, mod in self.named_modules(prefix):
            for key, p in mod._parameters.items():
                yield (f"{mod_name}.{key}" if mod_name else key), p

    def named_parameters(self, prefix: str = "",
                         remove_duplicate: bool = True) -> Iterator[tuple[str, Parameter]]:
        """``(dotted name, parameter)`` for every parameter; a tied parameter once, under its
        first name, unless ``remove_duplicate=False``."""
        seen: set[int] = set()
        for name, p in self._all_named_parameters(prefix):
            if remove_duplicate:
                if id(p) in seen:
                    continue
                seen.add(id(p))
            yield name, p

    def parameters(self) -> Iterator[Parameter]:
        """Every parameter once (what an optimiser takes)."""
        for _, p in self.named_parameters():
            yield p

    def get_parameter(self, target: str) -> Parameter:
        """The parameter with dotted name ``target`` (``"encoder.weight_ih_l0"``)."""
        for name, p in self._all_named_parameters():
            if name == target:
                return p
        raise LstmValueError(f"target: no parameter named {target!r} in "
                             f"{type(self).__name__}")

    def named_rngs(self) -> Iterator[tuple[str, np.random.Generator]]:
        """The random generators of the modules (dropout masks, initialisation), by module
        name: what a checkpoint saves so a resumed run draws the same masks."""
        for name, mod in self.named_modules():
            rng = mod.__dict__.get("rng", mod.__dict__.get("_rng"))
            if isinstance(rng, np.random.Generator):
                yield name, rng

    def num_parameters(self) -> int:
        """Total number of scalar parameters (tied ones counted once)."""
        return int(sum(p.size for p in self.parameters()))

    # ----------------------------------------------------------------- state
    def zero_grad(self) -> None:
        """Set every parameter's gradient to zero, in place."""
        for p in self.parameters():
            if p.grad is None:
                p.grad = np.zeros_like(p.data)
            else:
                p.grad.fill(0)

    def train(self, mode: bool = True) -> Module:
        """Training mode (dropout active) for this module and its descendants; returns self."""
        if not isinstance(mode, bool):
            raise TypeError(f"mode: expected a bool, got {mode!r}")
        for mod in self.modules():
            object.__setattr__(mod, "training", mode)
        return self

    def eval(self) -> Module:
        """Same as ``train(False)``."""
        return self.train(False)

    def mark_updated(self) -> None:
        """Tell this module and its descendants that parameters changed in place (optimiser
        steps and :meth:`load_state_dict` call it): cached backends and packed copies
        rebuild."""
        for mod in self.modules():
            for p in mod._parameters.values():
                p.version += 1
            mod._parameters_changed()

    def state_dict(self) -> dict[str, np.ndarray]:
        """Copies of every parameter by dotted name (tied parameters under each name)."""
        return {name: p.data.copy()
                for name, p in self.named_parameters(remove_duplicate=False)}

    def load_state_dict(self, state: Mapping[str, Any], strict: bool = True) -> None:
        """Copy ``state`` into the live parameter arrays.

        Everything is checked before anything is assigned: with ``strict`` (default) the names
        must match exactly; shapes must match; values must be numeric arrays (numpy, or
        tensors of a framework with ``.detach().cpu().numpy()``), converted to each
        parameter's dtype. One error lists every problem.
        """
        if not isinstance(state, Mapping):
            raise TypeError(f"state: expected a mapping of names to arrays, got "
                            f"{type(state).__name__}")
        targets = dict(self.named_parameters(remove_duplicate=False))
        problems: list[str] = []
        if strict:
            missing = sorted(set(targets) - set(state))
            unexpected = sorted(set(state) - set(targets))
            if missing:
                problems.append(f"missing keys {missing}")
            if unexpected:
                problems.append(f"unexpected keys {unexpected}")
        arrays: dict[str, np.ndarray] = {}
        for name, value in state.items():
            if name not in targets:
                continue
            arr = _to_numpy(value)
            target = targets[name]
            if not isinstance(arr, np.ndarray) or arr.dtype.kind not in "fiu":
                got = arr.dtype if isinstance(arr, np.ndarray) else type(value).__name__
                problems.append(f"{name}: expected a numeric array, got {got}")
            elif arr.shape != target.shape:
                problems.append(f"{name}: expected shape {list(target.shape)}, got "
                                f"{list(arr.shape)}")
            else:
                arrays[name] = arr
        if problems:
            raise ShapeError(f"state_dict: {'; '.join(problems)}")
        for name, arr in arrays.items():
            np.copyto(targets[name].data, arr, casting="unsafe")
        self.mark_updated()

    # ----------------------------------------------------------------- compute
    def forward(self, *args: Any, **kwargs: Any) -> Any:
        """The computation (see the module docstring for the convention)."""
        raise NotImplementedError(f"{type(self).__name__} defines no forward")

    def backward(self, tape: Any, dout: Any) -> Any:
        """Layers only: add parameter gradients into ``p.grad``, return input gradients."""
        raise NotImplementedError(f"{type(self).__name__} is not a layer with its own backward")

    def is_layer(self) -> bool:
        """Whether this module has its own backward (is recorded as one node per call)."""
        return type(self).backward is not Module.backward

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Inference on arrays; recorded on tensors or inside :func:`pylstm.record`."""
        if "requires_grad" in kwargs:
            raise TypeError("requires_grad: use module.forward(..., requires_grad=True) for the "
                            "explicit tape, or call the module on tensors to record")
        if self.is_layer() and wants_recording(args, kwargs):
            return record_call(self.forward, self.backward, args, kwargs, type(self).__name__,
                               self.single_input)
        return self.forward(*args, **kwargs)

    def extra_repr(self) -> str:
        """Arguments shown by ``repr``."""
        return ""

    def __repr__(self) -> str:
        head = f"{type(self).__name__}({self.extra_repr()}"
        children = list(self.named_children())
        if not children:
            return head + ")"
        lines = [head]
        for name, child in children:
            body = repr(child).replace("\n", "\n  ")
            lines.append(f"  ({name}): {body}")
        return "\n".join(lines) + "\n)"


def _to_numpy(value: Any) -> Any:
    """Arrays from numpy, pylstm tensors or framework tensors (``.detach().cpu().numpy()``)."""
    if isinstance(value, Tensor):
        return value.data
    if hasattr(value, "detach") and hasattr(value, "cpu"):
        value = value.detach().cpu().numpy()
    return np.asarray(value) if isinstance(value, (list, tuple, np.generic, float, int)) \
        else value


class Sequential(Module):
    """Modules applied one after another, children named ``"0"``, ``"1"``, ..."""

    def __init__(self, *modules: Module) -> None:
        super().__init__()
        for i, m in enumerate(modules):
            self.add_module(str(i), m)

    def __len__(self) -> int:
        return len(self._modules)

    def __getitem__(self, index: int) -> Module:
        return list(self._modules.values())[index]

    def forward(self, x: Any) -> Any:
        """Each module's output is the next one's input."""
        for m in self._modules.values():
            x = m(x)
        return x
