"""Optimisers (SGD, Adam, AdamW) with PyTorch's update formulas, and global-norm clipping.

Parameters are updated **in place** (the engine reads the live arrays). An optimiser takes

* a :class:`~pylstm.nn.Module` (all its parameters, by dotted name) or ``model.parameters()``
  (:class:`~pylstm.nn.Parameter` objects, named by position) or ``(name, Parameter)`` pairs
  (``model.named_parameters()``),
* ``(name, param, grad)`` array triples, for optimising plain arrays,
* or a list of parameter groups, dicts ``{"params": <one of the above>, "lr": ..., ...}`` whose
  missing options take the constructor's values (like ``torch.optim`` parameter groups).

Gradients are read at each :meth:`Optimizer.step` from each parameter's ``grad``, so
``model.zero_grad()`` and ``optimizer.zero_grad()`` are interchangeable. Each step bumps the
parameters' ``version``, which tells cached copies (packed weights, onnxruntime sessions) to
rebuild. Arithmetic runs in each parameter's dtype (float32 or float64), as PyTorch does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from pylstm.errors import DTypeError, LstmValueError, ShapeError

from .module import Module, Parameter

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "clip_grad_norm_"]


@dataclass(frozen=True)
class _Ref:
    """A named handle on one parameter (a :class:`Parameter` or a plain array pair)."""

    name: str
    data: np.ndarray
    grad: np.ndarray
    param: Parameter | None = None


def _param_ref(name: str, p: Parameter) -> _Ref:
    if p.grad is None:
        p.grad = np.zeros_like(p.data)
    return _Ref(name, p.data, p.grad, p)


def _refs(params: Any, what: str = "params") -> list[_Ref]:
    if isinstance(params, Module):
        return [_param_ref(n, p) for n, p in params.named_parameters()]
    if isinstance(params, Parameter):
        return [_param_ref("0", params)]
    try:
        items = list(params)
    except TypeError as exc:
        raise TypeError(
            f"{what}: expected a Module, Parameters, (name, Parameter) pairs or (name, param, "
            f"grad) triples, got {type(params).__name__}"
        ) from exc
    out: list[_Ref] = []
    for i, item in enumerate(items):
        if isinstance(item, Parameter):
            out.append(_param_ref(str(i), item))
        elif isinstance(item, tuple) and len(item) == 2 and isinstance(item[1], Parameter):
            out.append(_param_ref(str(item[0]), item[1]))
        elif isinstance(item, tuple) and len(item) == 3:
            name, p, g = item
            if not isinstance(p, np.ndarray) or not isinstance(g, np.ndarray):
                raise TypeError(f"{what}: triple {name!r} must hold numpy arrays")
            if p.shape != g.shape:
                raise ShapeError(
                    f"{what}: gradient of {name!r} expected shape {p.shape}, got {g.shape}"
                )
            out.append(_Ref(str(name), p, g))
        else:
            raise TypeError(
                f"{what}: expected Parameters, (name, Parameter) pairs or (name, param, grad) "
                f"triples, got {type(item).__name__}"
            )
    return out


def _float(value: Any) -> float:
    """``float(value)``; an int beyond any float is NaN (refused by every check here)."""
    try:
        return float(value)
    except OverflowError:
        return math.nan


def _check_lr(lr: Any) -> float:
    if isinstance(lr, bool) or not isinstance(lr, (int, float, np.floating, np.integer)):
        raise DTypeError(f"lr: expected a float, got {lr!r}")
    if not _float(lr) >= 0:
        raise LstmValueError(f"lr: expected >= 0, got {str(lr)[:40]}")
    return _float(lr)


def _number(group: dict[str, Any], key: str) -> float:
    v = group[key]
    if isinstance(v, bool) or not isinstance(v, (int, float, np.floating, np.integer)):
        raise LstmValueError(f"{key}: expected a number >= 0, got {v!r}")
    if not _float(v) >= 0:
        raise LstmValueError(f"{key}: expected a number >= 0, got {str(v)[:40]}")
    return _float(v)


MAX_STEP = 2**62  # a loaded step count: far more steps than any run, far below float overflow


def _same_kind(saved: Any, live: Any) -> bool:
    """A loaded option has the kind of the live one (a bool for a bool, a number for a
    number, a list of the same length for a list)."""
    if isinstance(live, bool):
        return isinstance(saved, bool)
    if isinstance(live, (int, float, np.integer, np.floating)):
        return isinstance(saved, (int, float, np.integer, np.floating)) and not isinstance(
            saved, bool)
    if isinstance(live, (list, tuple)):
        return isinstance(saved, (list, tuple)) and len(saved) == len(live)
    return True


class Optimizer:
    """Base class: parameter groups, per-parameter ``state`` keyed by name, ``state_dict``."""

    def __init__(self, params: Any, defaults: dict[str, Any]) -> None:
        self.defaults = dict(defaults)
        self.param_groups: list[dict[str, Any]] = []
        self.state: dict[str, dict[str, Any]] = {}
        if isinstance(params, (Module, Parameter)):
            groups: list[Any] = [{"params": params}]
        else:
            try:
                items = list(params)
            except TypeError as exc:
                raise TypeError(
                    "params: expected a Module, Parameters, (name, param, grad) triples or "
                    f"parameter-group dicts, got {type(params).__name__}"
                ) from exc
            if items and all(isinstance(it, dict) for it in items):
                groups = items
            else:
                groups = [{"params": items}]
        seen: set[str] = set()
        seen_ids: set[int] = set()
        for i, group in enumerate(groups):
            unknown = set(group) - set(defaults) - {"params"}
            if unknown:
                raise LstmValueError(f"param_groups[{i}]: unknown options {sorted(unknown)}")
            g = {**self.defaults, **group}
            g["params"] = _refs(group.get("params", []), f"param_groups[{i}].params")
            if len(groups) > 1:  # names by position must stay unique across groups
                g["params"] = [r if r.param is None or not r.name.isdigit()
                               else _Ref(f"{i}.{r.name}", r.data, r.grad, r.param)
                               for r in g["params"]]
            self._validate_group(g, i)
            for ref in g["params"]:
                if ref.name in seen or id(ref.data) in seen_ids:
                    raise LstmValueError(f"params: parameter {ref.name!r} appears twice")
                seen.add(ref.name)
                seen_ids.add(id(ref.data))
            self.param_groups.append(g)
        if not seen:
            raise LstmValueError("params: got an empty parameter list")

    def _validate_group(self, group: dict[str, Any], index: int) -> None:
        group["lr"] = _check_lr(group["lr"])

    def _state_keys(self, group: dict[str, Any]) -> tuple[set[str], set[str]] | None:
        """``(required, allowed)`` keys of a parameter's non-empty state under ``group``'s
        options, checked by :meth:`load_state_dict` (``None``: not checked)."""
        return None

    @property
    def lr(self) -> float:
        """The first group's learning rate (schedules set every group's)."""
        return float(self.param_groups[0]["lr"])

    def _live(self, ref: _Ref) -> tuple[np.ndarray, np.ndarray]:
        """The arrays to read now: a parameter's ``grad`` may have been replaced."""
        if ref.param is None:
            return ref.data, ref.grad
        p = ref.param
        if p.grad is None:
            p.grad = np.zeros_like(p.data)
        return p.data, p.grad

    def zero_grad(self) -> None:
        """Zero every gradient in place."""
        for group in self.param_groups:
            for ref in group["params"]:
                self._live(ref)[1].fill(0)

    def step(self) -> None:
        """Apply one update to every parameter, in place."""
        for group in self.param_groups:
            for ref in group["params"]:
                p, g = self._live(ref)
                if g.shape != p.shape:
                    raise ShapeError(
                        f"grad of {ref.name!r}: expected shape {p.shape}, got {g.shape}"
                    )
                self._update(p, g, self.state.setdefault(ref.name, {}), group)
                if ref.param is not None:
                    ref.param.version += 1

    def _update(
        self, p: np.ndarray, g: np.ndarray, state: dict[str, Any], group: dict[str, Any]
    ) -> None:
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        """``{"param_groups": [options + parameter names], "state": {name: {key: value}}}``.

        Values are copies: ints/floats and numpy arrays."""
        groups = [
            {**{k: v for k, v in g.items() if k != "params"},
             "params": [r.name for r in g["params"]]}
            for g in self.param_groups
        ]
        state = {
            name: {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in s.items()}
            for name, s in self.state.items()
        }
        return {"param_groups": groups, "state": state}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore options and state saved by :meth:`state_dict` (same parameter names).

        Everything is validated first (every option as the constructor validates it, every
        state entry's type, shape and dtype); on any problem nothing changes."""
        if not isinstance(state_dict, dict) or set(state_dict) != {"param_groups", "state"}:
            found = sorted(map(str, state_dict)) if isinstance(state_dict, dict) else \
                type(state_dict).__name__
            raise LstmValueError("state_dict: expected a dict with the keys 'param_groups' and "
                                 f"'state', got {found}")
        groups = state_dict["param_groups"]
        if not isinstance(groups, list) or len(groups) != len(self.param_groups):
            got = len(groups) if isinstance(groups, list) else type(groups).__name__
            raise LstmValueError(
                f"state_dict: expected {len(self.param_groups)} parameter groups, got {got}"
            )
        restored: list[dict[str, Any]] = []
        for i, (saved, group) in enumerate(zip(groups, self.param_groups, strict=True)):
            if not isinstance(saved, dict) or "params" not in saved:
                raise LstmValueError(f"state_dict: param_groups[{i}]: expected a dict with "
                                     f"'params', got {type(saved).__name__}")
            names = [r.name for r in group["params"]]
            if not isinstance(saved["params"], list) or saved["params"] != names:
                raise LstmValueError(
                    f"state_dict: param_groups[{i}] names {saved['params']!r} differ from "
                    f"the optimiser's {names}"
                )
            unknown = set(saved) - set(self.defaults) - set(group) - {"params"}
            if unknown:
                raise LstmValueError(f"state_dict: param_groups[{i}]: unknown options "
                                     f"{sorted(unknown)}")
            for key, value in saved.items():
                if key != "params" and key in group and not _same_kind(value, group[key]):
                    raise LstmValueError(f"state_dict: param_groups[{i}]: {key}: expected a "
                                         f"value like {group[key]!r}, got {value!r}")
            trial = {**group, **{k: v for k, v in saved.items() if k != "params"}}
            try:
                self._validate_group(trial, i)
                if "initial_lr" in trial:  # added by a schedule: a rate like lr
                    trial["initial_lr"] = _check_lr(trial["initial_lr"])
            except (TypeError, ValueError) as exc:
                raise LstmValueError(f"state_dict: param_groups[{i}]: {exc}") from None
            restored.append(trial)
        by_name = {r.name: r for g in self.param_groups for r in g["params"]}
        group_of = {r.name: trial for trial, g in zip(restored, self.param_groups, strict=True)
                    for r in g["params"]}
        saved_state = state_dict["state"]
        if not isinstance(saved_state, dict):
            raise LstmValueError(f"state_dict: state: expected a dict, got "
                                 f"{type(saved_state).__name__}")
        new_state: dict[str, dict[str, Any]] = {}
        for name, s in saved_state.items():
            if name not in by_name:
                raise LstmValueError(f"state_dict: state for unknown parameter {name!r}")
            if not isinstance(s, dict):
                raise LstmValueError(f"state_dict: state[{name!r}]: expected a dict, got "
                                     f"{type(s).__name__}")
            p = by_name[name].data
            entry: dict[str, Any] = {}
            for k, v in s.items():
                if isinstance(v, np.ndarray):
                    if v.shape != p.shape or v.dtype != p.dtype:
                        raise ShapeError(
                            f"state_dict: state[{name!r}][{k!r}] expected {p.dtype}{p.shape}, "
                            f"got {v.dtype}{v.shape}"
                        )
                    entry[k] = v.copy()
                elif k == "step":
                    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or \
                            not 0 <= v <= MAX_STEP:
                        raise LstmValueError(f"state_dict: state[{name!r}]['step']: expected an "
                                             f"integer in [0, 2**62], got {str(v)[:40]}")
                    entry[k] = int(v)
                else:
                    raise LstmValueError(f"state_dict: state[{name!r}][{k!r}]: expected an "
                                         f"array, got {type(v).__name__}")
            keys = self._state_keys(group_of[name])
            if entry and keys is not None and not keys[0] <= set(entry) <= keys[1]:
                required, allowed = keys
                extra = f" (and optionally {sorted(allowed - required)})" if allowed - required \
                    else ""
                raise LstmValueError(f"state_dict: state[{name!r}]: expected the keys "
                                     f"{sorted(required)}{extra}, got {sorted(entry)}")
            new_state[name] = entry
        for trial, group in zip(restored, self.param_groups, strict=True):
            group.update(trial)
        self.state = new_state


class SGD(Optimizer):
    """Stochastic gradient descent exactly as ``torch.optim.SGD``::

        g = grad + weight_decay * p
        buf = g (first step) | momentum * buf + (1 - dampening) * g
        g = g + momentum * buf (nesterov) | buf
        p -= lr * g
    """

    def __init__(
        self,
        params: Any,
        lr: float = 1e-3,
        momentum: float = 0.0,
        dampening: float = 0.0,
        weight_decay: float = 0.0,
        nesterov: bool = False,
    ) -> None:
        super().__init__(
            params,
            dict(lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay,
                 nesterov=nesterov),
        )

    def _validate_group(self, group: dict[str, Any], index: int) -> None:
        super()._validate_group(group, index)
        for key in ("momentum", "dampening", "weight_decay"):
            group[key] = _number(group, key)
        group["nesterov"] = bool(group["nesterov"])
        if group["nesterov"] and (group["momentum"] <= 0 or group["dampening"] != 0):
            raise LstmValueError(
                "nesterov: needs momentum > 0 and dampening == 0, got "
                f"momentum={group['momentum']}, dampening={group['dampening']}"
            )

    def _state_keys(self, group: dict[str, Any]) -> tuple[set[str], set[str]] | None:
        return set(), {"momentum_buffer"}

    def _update(
        self, p: np.ndarray, g: np.ndarray, state: dict[str, Any], group: dict[str, Any]
    ) -> None:
        d_p = g
        if group["weight_decay"]:
            d_p = d_p + group["weight_decay"] * p
        momentum = group["momentum"]
        if momentum:
            buf = state.get("momentum_buffer")
            if buf is None:
                buf = np.array(d_p, copy=True)
                state["momentum_buffer"] = buf
            else:
                buf *= p.dtype.type(momentum)
                buf += (1 - group["dampening"]) * d_p
            d_p = d_p + momentum * buf if group["nesterov"] else buf
        p -= group["lr"] * d_p


class Adam(Optimizer):
    """Adam exactly as ``torch.optim.Adam`` (``weight_decay`` is L2: added to the gradient;
    ``amsgrad`` supported)::

        m = m + (1 - beta1) * (g - m);  v = beta2 * v + (1 - beta2) * g * g
        denom = sqrt(v) / sqrt(1 - beta2**t) + eps
        p -= lr / (1 - beta1**t) * m / denom
    """

    _decoupled = False

    def __init__(
        self,
        params: Any,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        amsgrad: bool = False,
    ) -> None:
        super().__init__(
            params,
            dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad),
        )

    def _validate_group(self, group: dict[str, Any], index: int) -> None:
        super()._validate_group(group, index)
        raw = group["betas"]
        ok = (isinstance(raw, (tuple, list)) and len(raw) == 2
              and all(isinstance(b, (int, float, np.floating)) and not isinstance(b, bool)
                      and 0.0 <= _float(b) < 1.0 for b in raw))
        if not ok:
            raise LstmValueError(f"betas: expected two numbers in [0, 1), got {raw!r}")
        group["betas"] = [float(b) for b in raw]
        for key in ("eps", "weight_decay"):
            group[key] = _number(group, key)
        group["amsgrad"] = bool(group["amsgrad"])

    def _state_keys(self, group: dict[str, Any]) -> tuple[set[str], set[str]] | None:
        keys = {"step", "exp_avg", "exp_avg_sq"} | ({"max_exp_avg_sq"} if group["amsgrad"]
                                                    else set())
        return keys, keys

    def _update(
        self, p: np.ndarray, g: np.ndarray, state: dict[str, Any], group: dict[str, Any]
    ) -> None:
        lr, wd, eps = group["lr"], group["weight_decay"], group["eps"]
        beta1, beta2 = group["betas"]
        if not state:
            state["step"] = 0
            state["exp_avg"] = np.zeros_like(p)
            state["exp_avg_sq"] = np.zeros_like(p)
            if group["amsgrad"]:
                state["max_exp_avg_sq"] = np.zeros_like(p)
        state["step"] += 1
        t = state["step"]
        if self._decoupled:
            p *= p.dtype.type(1 - lr * wd)
        elif wd:
            g = g + wd * p
        m, v = state["exp_avg"], state["exp_avg_sq"]
        m += (1 - beta1) * (g - m)
        v *= p.dtype.type(beta2)
        v += (1 - beta2) * (g * g)
        bc1 = 1 - beta1**t
        bc2_sqrt = math.sqrt(1 - beta2**t)
        if group["amsgrad"]:
            vmax = state["max_exp_avg_sq"]
            np.maximum(vmax, v, out=vmax)
            denom = np.sqrt(vmax) / bc2_sqrt + eps
        else:
            denom = np.sqrt(v) / bc2_sqrt + eps
        p += (-(lr / bc1)) * (m / denom)


class AdamW(Adam):
    """AdamW exactly as ``torch.optim.AdamW``: decoupled weight decay
    ``p *= 1 - lr * weight_decay`` before the Adam update (default ``weight_decay=1e-2``)."""

    _decoupled = True

    def __init__(
        self,
        params: Any,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        amsgrad: bool = False,
    ) -> None:
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad)


def clip_grad_norm_(
    params: Any,
    max_norm: float,
    norm_type: float = 2.0,
    error_if_nonfinite: bool = False,
) -> float:
    """Scale all gradients in place so that their global norm is at most ``max_norm``.

    Like ``torch.nn.utils.clip_grad_norm_``: the total norm is the ``norm_type``-norm of the
    per-array norms (``inf`` allowed); every gradient is multiplied by
    ``min(1, max_norm / (total + 1e-6))``. ``params``: a Module, ``model.parameters()``, an
    Optimizer, ``(name, param, grad)`` triples or plain gradient arrays. Returns the total norm
    (before clipping) as a float.
    """
    if isinstance(params, Optimizer):
        grads = [params._live(r)[1] for g in params.param_groups for r in g["params"]]
    elif isinstance(params, np.ndarray):
        grads = [params]
    else:
        items = list(params.parameters()) if isinstance(params, Module) else list(params)
        if items and all(isinstance(x, np.ndarray) for x in items):
            grads = items
        else:
            grads = [r.grad for r in _refs(items)]
    max_norm = float(max_norm)
    if not max_norm >= 0:
        raise LstmValueError(f"max_norm: expected >= 0, got {max_norm}")
    norm_type = float(norm_type)
    if not norm_type > 0:
        raise LstmValueError(f"norm_type: expected > 0 or inf, got {norm_type}")
    if not grads:
        return 0.0
    if math.isinf(norm_type):
        norms = [float(np.max(np.abs(g))) if g.size else 0.0 for g in grads]
        total = max(norms)
    else:
        norms = [
            float(np.sum(np.abs(g.astype(np.float64)) ** norm_type) ** (1.0 / norm_type))
            for g in grads
        ]
        total = float(np.sum(np.asarray(norms) ** norm_type) ** (1.0 / norm_type))
    if error_if_nonfinite and not math.isfinite(total):
        raise LstmValueError(
            f"clip_grad_norm_: the total norm of order {norm_type} is non-finite ({total})"
        )
    coef = min(max_norm / (total + 1e-6), 1.0)
    for g in grads:
        g *= g.dtype.type(coef)
    return total
