"""Training state: everything that continues a run bit for bit, captured and restored.

:func:`capture_state` gathers a model's parameters, its generators' states
(``model.named_rngs()``), the optimiser's and the schedule's state; :func:`restore_state`
validates all of it first (names, shapes, value types, generator states, the optimiser's and
the schedule's values) and only then assigns, so a bad file leaves model, optimiser and
schedule untouched.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from pylstm.errors import CheckpointError, DTypeError, ShapeError

from .checkpoint_io import short
from .module import Module
from .optim import Optimizer

__all__ = ["MAX_STEP", "capture_state", "check_like", "restore_state"]

MAX_STEP = 2**62  # more optimiser steps than any run takes; far below float overflow


def _describe(value: Any) -> str:
    if isinstance(value, bool):
        return "a bool"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, (list, tuple)):
        return f"a list of {len(value)}"
    if isinstance(value, dict):
        return "an object"
    return "null" if value is None else type(value).__name__


def check_like(saved: Any, current: Any, where: str) -> None:
    """Check that a JSON value loaded from a file has the kind of the live value it will
    replace (an integer for an integer, a number for a float, lists of the same length...)."""
    if isinstance(current, bool):
        ok = isinstance(saved, bool)
    elif isinstance(current, (int, np.integer)):
        ok = isinstance(saved, int) and not isinstance(saved, bool)
    elif isinstance(current, (float, np.floating)):
        ok = isinstance(saved, (int, float)) and not isinstance(saved, bool)
    elif isinstance(current, str):
        ok = isinstance(saved, str)
    elif isinstance(current, (list, tuple)):
        ok = isinstance(saved, list) and len(saved) == len(current)
        if ok:
            for i, (s, c) in enumerate(zip(saved, current, strict=True)):
                check_like(s, c, f"{where}[{i}]")
    elif isinstance(current, dict):
        ok = isinstance(saved, dict) and set(saved) == set(current)
        if ok:
            for k in current:
                check_like(saved[k], current[k], f"{where}.{k}")
    else:  # None or another type: anything JSON may replace it
        ok = True
    if not ok:
        raise CheckpointError(f"{where}: expected {_describe(current)}, got {short(saved)}")


def capture_state(model: Module, optimizer: Optimizer | None = None,
                  scheduler: Any | None = None) -> tuple[dict[str, dict[str, np.ndarray]],
                                                         dict[str, Any]]:
    """``({"model": params, "optimizer": arrays}, meta)``: everything that continues a
    training run bit for bit, as arrays for safetensors and a JSON-able ``meta`` with
    ``rng_states`` and, when given, ``optimizer`` and ``scheduler``."""
    if not isinstance(model, Module):
        raise DTypeError(f"model: expected a pylstm.nn.Module, got {type(model).__name__}")
    meta: dict[str, Any] = {
        "rng_states": {name: rng.bit_generator.state for name, rng in model.named_rngs()},
    }
    arrays: dict[str, dict[str, np.ndarray]] = {"model": model.state_dict(), "optimizer": {}}
    if optimizer is not None:
        if not isinstance(optimizer, Optimizer):
            raise DTypeError(f"optimizer: expected a pylstm.nn Optimizer, got "
                             f"{type(optimizer).__name__}")
        sd = optimizer.state_dict()
        scalars: dict[str, dict[str, Any]] = {}
        index: list[list[str]] = []
        for name, entry in sd["state"].items():
            scalars[name] = {}
            for key, value in entry.items():
                if isinstance(value, np.ndarray):
                    tkey = f"state.{len(index)}"
                    index.append([name, key, tkey])
                    arrays["optimizer"][tkey] = value
                else:
                    scalars[name][key] = value
        meta["optimizer"] = {"class": type(optimizer).__name__,
                             "param_groups": sd["param_groups"], "scalar_state": scalars,
                             "arrays": index}
    if scheduler is not None:
        meta["scheduler"] = {"class": type(scheduler).__name__, "state": scheduler.state_dict()}
    return arrays, meta


def _check_model_tensors(model: Module, tensors: Mapping[str, np.ndarray], strict: bool,
                         where: str) -> None:
    targets = dict(model.named_parameters(remove_duplicate=False))
    if strict:
        missing = sorted(set(targets) - set(tensors))
        unexpected = sorted(set(tensors) - set(targets))
        if missing or unexpected:
            raise CheckpointError(f"{where}: expected the model's parameters, got missing "
                                  f"{missing} and unexpected {unexpected}")
    problems: list[str] = []
    for name, target in targets.items():  # the model's order: the same message every time
        arr = tensors.get(name)
        if arr is None:
            continue
        if arr.dtype.kind != "f":
            raise DTypeError(f"{where}: {name}: expected a float array, got {arr.dtype}")
        if arr.shape != target.shape:
            problems.append(f"{name}: expected shape {list(target.shape)}, got "
                            f"{list(arr.shape)}")
    if problems:
        raise ShapeError(f"{where}: {'; '.join(problems)}")


def _checked_rng_states(model: Module, states: Any, strict: bool, where: str
                        ) -> list[tuple[np.random.Generator, Any]]:
    if not isinstance(states, dict):
        raise CheckpointError(f"{where}: rng_states: expected an object of module names to "
                              f"generator states, got {short(states)}")
    rngs = dict(model.named_rngs())
    if strict and set(states) != set(rngs):
        raise CheckpointError(f"{where}: rng_states: expected the generators of modules "
                              f"{sorted(rngs)}, got {sorted(states)}")
    out = []
    for name, state in states.items():
        if name not in rngs:
            continue
        rng = rngs[name]
        kind = type(rng.bit_generator).__name__
        # The live state's keys and kinds first (numpy itself reads 1.5 as 1 and True as 1),
        # then the values on a scratch generator: numpy checks their ranges.
        trial = type(rng.bit_generator)()
        try:
            check_like(state, rng.bit_generator.state, "state")
            trial.state = state
        except (TypeError, ValueError, KeyError, OverflowError) as exc:
            raise CheckpointError(f"{where}: rng_states[{name!r}]: expected a {kind} state, "
                                  f"got {short(state)} ({exc})") from None
        out.append((rng, state))
    return out


def _checked_optimizer_state(optimizer: Optimizer, saved: Any, arrays: Mapping[str, np.ndarray],
                             where: str) -> dict[str, Any]:
    if not isinstance(saved, dict) or set(saved) != {"class", "param_groups", "scalar_state",
                                                     "arrays"}:
        raise CheckpointError(f"{where}: optimizer: expected an object with class, "
                              f"param_groups, scalar_state and arrays, got {short(saved)}")
    if saved["class"] != type(optimizer).__name__:
        raise CheckpointError(f"{where}: optimizer.class: expected {type(optimizer).__name__} "
                              f"(the optimizer given), got {saved['class']!r}")
    current = optimizer.state_dict()
    groups = saved["param_groups"]
    if not isinstance(groups, list) or len(groups) != len(current["param_groups"]):
        raise CheckpointError(f"{where}: optimizer.param_groups: expected a list of "
                              f"{len(current['param_groups'])}, got {short(groups)}")
    for i, (group, live) in enumerate(zip(groups, current["param_groups"], strict=True)):
        if not isinstance(group, dict):
            raise CheckpointError(f"{where}: optimizer.param_groups[{i}]: expected an object, "
                                  f"got {short(group)}")
        missing = sorted(set(live) - set(group) - {"initial_lr"})  # a schedule adds that one
        if missing:
            raise CheckpointError(f"{where}: optimizer.param_groups[{i}]: expected the options "
                                  f"{sorted(live)}, got missing {missing}")
        for key, value in group.items():
            if key in live:
                check_like(value, live[key], f"{where}: optimizer.param_groups[{i}].{key}")
    scalars = saved["scalar_state"]
    if not isinstance(scalars, dict) or not all(isinstance(v, dict) for v in scalars.values()):
        raise CheckpointError(f"{where}: optimizer.scalar_state: expected an object of "
                              f"objects, got {short(scalars)}")
    state: dict[str, dict[str, Any]] = {}
    for name, entry in scalars.items():
        for key, value in entry.items():
            if key == "step":  # an optimiser step count: Adam raises beta ** step to it
                ok = isinstance(value, int) and not isinstance(value, bool)
                expected = "an integer"
                if ok and not 0 <= value <= MAX_STEP:
                    ok, expected = False, "an integer in [0, 2**62]"
            else:
                ok = isinstance(value, (int, float)) and not isinstance(value, bool) and \
                    not (isinstance(value, float) and value != value)
                expected = "a number"
            if not ok:
                raise CheckpointError(f"{where}: optimizer.scalar_state[{name!r}].{key}: "
                                      f"expected {expected}, got {short(value)}")
        state[name] = dict(entry)
    index = saved["arrays"]
    if not isinstance(index, list):
        raise CheckpointError(f"{where}: optimizer.arrays: expected a list, got {short(index)}")
    for item in index:
        if not (isinstance(item, list) and len(item) == 3 and all(isinstance(s, str)
                                                                  for s in item)):
            raise CheckpointError(f"{where}: optimizer.arrays: expected [name, key, tensor] "
                                  f"string triples, got {short(item)}")
        name, key, tkey = item
        if tkey not in arrays:
            raise CheckpointError(f"{where}: optimizer.arrays: tensor {tkey!r} is missing "
                                  "from the optimizer's safetensors file")
        state.setdefault(name, {})[key] = arrays[tkey]
    # Keys a schedule added to the live groups (``initial_lr``) are not optimiser options,
    # which load_state_dict refuses: restore_state sets them itself (checked above).
    extras = [{k: v for k, v in g.items() if k not in optimizer.defaults and k != "params"
               and k in live} for g, live in zip(groups, current["param_groups"], strict=True)]
    groups = [{k: v for k, v in g.items() if k not in extra}
              for g, extra in zip(groups, extras, strict=True)]
    return {"param_groups": groups, "state": state, "extras": extras}


def _checked_schedule_state(scheduler: Any, state: Any, where: str) -> Any:
    """Every value of the kind of the live one, then the schedule's own validation
    (``check_state_dict``: every key's range) when it has one."""
    check_like(state, scheduler.state_dict(), f"{where}: scheduler.state")
    check = getattr(scheduler, "check_state_dict", None)
    if check is None:
        return state
    try:
        return check(state)
    except (TypeError, ValueError) as exc:
        text = str(exc).removeprefix("state_dict: ")
        sep = ": " if text.startswith("expected") else "."  # the keys, or one key's value
        raise CheckpointError(f"{where}: scheduler.state{sep}{text}") from None


def restore_state(model: Module | None, model_tensors: Mapping[str, np.ndarray] | None,
                  meta: Mapping[str, Any], *, optimizer: Optimizer | None = None,
                  optimizer_arrays: Mapping[str, np.ndarray] | None = None,
                  scheduler: Any | None = None, strict: bool = True, where: str) -> None:
    """Load what :func:`capture_state` saved into ``model``, ``optimizer`` and ``scheduler``.

    Everything is validated before anything is assigned; errors name ``where`` (the file),
    the key, the expected and the actual value."""
    rng_plan: list[tuple[np.random.Generator, Any]] = []
    if model is not None:
        if not isinstance(model, Module):
            raise DTypeError(f"model: expected a pylstm.nn.Module, got {type(model).__name__}")
        _check_model_tensors(model, model_tensors or {}, strict, where)
        rng_plan = _checked_rng_states(model, meta.get("rng_states", {}), strict, where)
    opt_state = None
    if optimizer is not None:
        if not isinstance(optimizer, Optimizer):
            raise DTypeError(f"optimizer: expected a pylstm.nn Optimizer, got "
                             f"{type(optimizer).__name__}")
        if "optimizer" not in meta:
            raise CheckpointError(f"{where}: optimizer: expected optimizer state, got none "
                                  "(the checkpoint was saved without an optimizer)")
        opt_state = _checked_optimizer_state(optimizer, meta["optimizer"],
                                             optimizer_arrays or {}, where)
    sched_state = None
    if scheduler is not None:
        saved = meta.get("scheduler")
        if saved is None:
            raise CheckpointError(f"{where}: scheduler: expected schedule state, got none "
                                  "(the checkpoint was saved without a schedule)")
        if not isinstance(saved, dict) or set(saved) != {"class", "state"}:
            raise CheckpointError(f"{where}: scheduler: expected an object with class and "
                                  f"state, got {short(saved)}")
        if saved["class"] != type(scheduler).__name__:
            raise CheckpointError(f"{where}: scheduler.class: expected "
                                  f"{type(scheduler).__name__} (the schedule given), got "
                                  f"{saved['class']!r}")
        sched_state = _checked_schedule_state(scheduler, saved["state"], where)
    # Assign: the optimiser validates its values itself before changing anything; should it
    # still refuse, nothing else has been touched yet.
    if opt_state is not None:
        extras = opt_state.pop("extras")
        try:
            optimizer.load_state_dict(opt_state)  # type: ignore[union-attr]
        except (TypeError, ValueError) as exc:
            raise CheckpointError(f"{where}: optimizer: {exc}") from None
        for group, extra in zip(optimizer.param_groups, extras, strict=True):  # type: ignore
            group.update(extra)
    if sched_state is not None and scheduler is not None:
        scheduler.load_state_dict(sched_state)
    if model is not None:
        model.load_state_dict(dict(model_tensors or {}), strict=strict)
        for rng, state in rng_plan:
            rng.bit_generator.state = state
