"""Checkpoints: safetensors weights plus a JSON file; no pickle anywhere.

A checkpoint is a directory::

    model.safetensors      parameters by dotted name (bit-exact)
    config.json            format/version, the user's config, parameter shapes/dtypes, the
                           random-generator states of modules with an ``rng`` (dropout), and
                           the optimiser's and schedule's options and scalar state
    optimizer.safetensors  optimiser array state (momentum buffers, Adam moments), if saved

``safetensors`` is imported lazily (it is an optional dependency: ``pip install
pylstm[zoo]`` or ``safetensors``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from ._errors import LstmValueError
from .module import Module
from .optim import Optimizer

__all__ = ["save_checkpoint", "load_checkpoint", "save_weights", "load_weights"]

FORMAT = "pylstm.nn.checkpoint"
VERSION = 1
WEIGHTS = "model.safetensors"
CONFIG = "config.json"
OPTIMIZER = "optimizer.safetensors"


def _safetensors() -> Any:
    try:
        import safetensors.numpy as st
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "checkpoints need the 'safetensors' package: pip install safetensors"
        ) from exc
    return st


def _atomic(path: Path, write: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    os.replace(tmp, path)


def save_weights(path: str | os.PathLike[str], tensors: dict[str, np.ndarray]) -> None:
    """Write ``tensors`` (name -> array) to one safetensors file."""
    st = _safetensors()
    arrays = {k: np.ascontiguousarray(v) for k, v in tensors.items()}
    _atomic(Path(path), lambda p: st.save_file(arrays, str(p), metadata={"format": "np"}))


def load_weights(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """Read a safetensors file into a dict of numpy arrays."""
    return dict(_safetensors().load_file(str(path)))


def _json_dump(obj: Any, what: str) -> str:
    try:
        return json.dumps(obj, indent=2, sort_keys=True)
    except TypeError as exc:
        raise TypeError(f"{what}: expected JSON-serialisable values ({exc})") from exc


def save_checkpoint(
    directory: str | os.PathLike[str],
    model: Module,
    config: dict[str, Any] | None = None,
    *,
    optimizer: Optimizer | None = None,
    scheduler: Any | None = None,
) -> Path:
    """Save ``model``'s parameters, a JSON ``config`` and optionally optimiser/schedule state.

    Returns the checkpoint directory (created if needed).
    """
    if not isinstance(model, Module):
        raise TypeError(f"model: expected a pylstm.nn.Module, got {type(model).__name__}")
    if config is not None and not isinstance(config, dict):
        raise TypeError(f"config: expected a dict or None, got {type(config).__name__}")
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    state = model.state_dict()
    meta: dict[str, Any] = {
        "format": FORMAT,
        "version": VERSION,
        "config": config or {},
        "parameters": {
            k: {"shape": list(v.shape), "dtype": str(v.dtype)} for k, v in state.items()
        },
    }
    rng_states = {}
    for name, mod in model.named_modules():
        rng = getattr(mod, "rng", None)
        if isinstance(rng, np.random.Generator):
            rng_states[name] = rng.bit_generator.state
    if rng_states:
        meta["rng_states"] = rng_states
    opt_arrays: dict[str, np.ndarray] = {}
    if optimizer is not None:
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"optimizer: expected an Optimizer, got {type(optimizer).__name__}")
        sd = optimizer.state_dict()
        scalars: dict[str, dict[str, Any]] = {}
        arrays_index: list[list[str]] = []
        for name, entry in sd["state"].items():
            scalars[name] = {}
            for key, value in entry.items():
                if isinstance(value, np.ndarray):
                    tkey = f"state.{len(arrays_index)}"
                    arrays_index.append([name, key, tkey])
                    opt_arrays[tkey] = value
                else:
                    scalars[name][key] = value
        meta["optimizer"] = {
            "class": type(optimizer).__name__,
            "param_groups": sd["param_groups"],
            "scalar_state": scalars,
            "arrays": arrays_index,
        }
    if scheduler is not None:
        meta["scheduler"] = {"class": type(scheduler).__name__, "state": scheduler.state_dict()}
    text = _json_dump(meta, "config")
    save_weights(out / WEIGHTS, state)
    if optimizer is not None:
        save_weights(out / OPTIMIZER, opt_arrays)
    _atomic(out / CONFIG, lambda p: p.write_text(text, encoding="utf-8"))
    return out


def load_checkpoint(
    directory: str | os.PathLike[str],
    model: Module | None = None,
    *,
    optimizer: Optimizer | None = None,
    scheduler: Any | None = None,
    strict: bool = True,
) -> dict[str, Any]:
    """Restore what :func:`save_checkpoint` wrote, in place and bit for bit.

    Loads the weights (and dropout generator states) into ``model``, and optimiser/schedule
    state when given (their classes
    must match the saved ones). Returns the saved user config.
    """
    src = Path(directory)
    cfg_path = src / CONFIG
    if not cfg_path.is_file():
        raise FileNotFoundError(f"directory: no {CONFIG} in {str(src)!r}")
    meta = json.loads(cfg_path.read_text(encoding="utf-8"))
    if meta.get("format") != FORMAT:
        raise LstmValueError(
            f"directory: {CONFIG} has format {meta.get('format')!r}, expected {FORMAT!r}"
        )
    if meta.get("version") != VERSION:
        raise LstmValueError(
            f"directory: checkpoint version {meta.get('version')!r}, expected {VERSION}"
        )
    if model is not None:
        model.load_state_dict(load_weights(src / WEIGHTS), strict=strict)
        modules = dict(model.named_modules())
        for name, rng_state in meta.get("rng_states", {}).items():
            rng = getattr(modules.get(name), "rng", None)
            if isinstance(rng, np.random.Generator):
                rng.bit_generator.state = rng_state
    if optimizer is not None:
        saved = meta.get("optimizer")
        if saved is None:
            raise LstmValueError(f"optimizer: the checkpoint in {str(src)!r} has no optimiser")
        if saved["class"] != type(optimizer).__name__:
            raise LstmValueError(
                f"optimizer: checkpoint holds {saved['class']}, got {type(optimizer).__name__}"
            )
        arrays = load_weights(src / OPTIMIZER)
        state: dict[str, dict[str, Any]] = {k: dict(v) for k, v in saved["scalar_state"].items()}
        for name, key, tkey in saved["arrays"]:
            state.setdefault(name, {})[key] = arrays[tkey]
        optimizer.load_state_dict({"param_groups": saved["param_groups"], "state": state})
    if scheduler is not None:
        saved = meta.get("scheduler")
        if saved is None:
            raise LstmValueError(f"scheduler: the checkpoint in {str(src)!r} has no schedule")
        if saved["class"] != type(scheduler).__name__:
            raise LstmValueError(
                f"scheduler: checkpoint holds {saved['class']}, got {type(scheduler).__name__}"
            )
        scheduler.load_state_dict(saved["state"])
    return dict(meta["config"])
