"""Checkpoint folders and weights files: written atomically, never half-trusted, no pickle.

A checkpoint directory written by :func:`save_checkpoint`::

    model.safetensors      parameters by dotted name (bit-exact)
    optimizer.safetensors  optimiser arrays (momentum buffers, Adam moments), if saved
    config.json            format/version, the user's config, parameter shapes/dtypes, generator
                           states, optimiser/schedule scalars, and the files' digests

:func:`save_weights` / :func:`load_weights` write and read one safetensors file with its sha256.

The layers below, also used by :mod:`pylstm.runs` and :mod:`pylstm.train` (and re-exported
here):

* :mod:`pylstm.nn.checkpoint_io`: JSON and safetensors encoding and decoding, errors naming
  the file;
* :mod:`pylstm.nn.checkpoint_files`: atomic writes, digests, the commit journal
  (:func:`commit_files`, :func:`recover_files`, :func:`read_verified`);
* :mod:`pylstm.nn.checkpoint_state`: a model's, optimiser's and schedule's training state,
  validated completely before anything is assigned (:func:`capture_state`,
  :func:`restore_state`).

``safetensors`` is imported where it is used (``pip install pylstm[zoo]`` or ``safetensors``).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from pylstm.errors import CheckpointError, DTypeError

from .checkpoint_files import PARTIAL as PARTIAL  # re-exported, as before the split
from .checkpoint_files import (
    check_files,
    commit_files,
    file_digest,
    read_verified,
    recover_files,
    write_atomic,
)
from .checkpoint_io import Writer as Writer  # re-exported, as before the split
from .checkpoint_io import (
    dump_json,
    parse_json,
    parse_tensors,
    read_json,
    tensors_writer,
)
from .checkpoint_io import short as _short
from .checkpoint_state import capture_state, check_like, restore_state
from .module import Module
from .optim import Optimizer

__all__ = [
    "capture_state",
    "check_files",
    "check_like",
    "commit_files",
    "dump_json",
    "file_digest",
    "load_checkpoint",
    "load_weights",
    "parse_json",
    "parse_tensors",
    "read_json",
    "read_verified",
    "recover_files",
    "restore_state",
    "save_checkpoint",
    "save_weights",
    "tensors_writer",
    "write_atomic",
]

FORMAT = "pylstm.nn.checkpoint"
VERSION = 2  # 2: file digests in config.json (version 1 had none and cannot be verified)
WEIGHTS = "model.safetensors"
CONFIG = "config.json"
OPTIMIZER = "optimizer.safetensors"


def save_weights(path: str | os.PathLike[str], tensors: Mapping[str, np.ndarray],
                 metadata: Mapping[str, str] | None = None) -> str:
    """Write ``tensors`` (name -> array) to one safetensors file, atomically.

    Returns the file's sha256 (hex): keep it and pass it to :func:`load_weights`."""
    path = Path(path)
    write_atomic(path, tensors_writer(tensors, str(path), metadata))
    return file_digest(path)["sha256"]


def load_weights(path: str | os.PathLike[str], *, sha256: str | None = None
                 ) -> dict[str, np.ndarray]:
    """Read a safetensors file into a dict of numpy arrays, checking ``sha256`` first when
    given (a mismatch names the file, the expected and the actual digest)."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise CheckpointError(f"{path}: file not found") from None
    if sha256 is not None:
        actual = hashlib.sha256(raw).hexdigest()
        if actual != sha256:
            raise CheckpointError(f"{path}: sha256 mismatch: expected {sha256}, got {actual}: "
                                  "the file is corrupt or was changed")
    return parse_tensors(raw, str(path))


# ----------------------------------------------------------------------------- checkpoints
def save_checkpoint(
    directory: str | os.PathLike[str],
    model: Module,
    config: dict[str, Any] | None = None,
    *,
    optimizer: Optimizer | None = None,
    scheduler: Any | None = None,
) -> Path:
    """Save ``model``'s parameters, a JSON ``config`` and optionally optimiser/schedule state
    into ``directory`` (created if needed), atomically. Returns the directory."""
    if config is not None and not isinstance(config, dict):
        raise DTypeError(f"config: expected a dict or None, got {type(config).__name__}")
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    arrays, state_meta = capture_state(model, optimizer, scheduler)
    dump_json(config or {}, "config")  # refuse a bad config before writing anything
    meta: dict[str, Any] = {
        "format": FORMAT,
        "version": VERSION,
        "config": config or {},
        "parameters": {k: {"shape": list(v.shape), "dtype": str(v.dtype)}
                       for k, v in arrays["model"].items()},
        **state_meta,
    }
    writes = {WEIGHTS: tensors_writer(arrays["model"], str(out / WEIGHTS))}
    if optimizer is not None:
        writes[OPTIMIZER] = tensors_writer(arrays["optimizer"], str(out / OPTIMIZER))
    commit_files(out, CONFIG, {**meta, "files": {}}, writes, allow_nan=True)
    if optimizer is None:
        (out / OPTIMIZER).unlink(missing_ok=True)  # an older save's, no longer recorded
    return out


_REQUIRED = {"format", "version", "config", "parameters", "rng_states", "files"}
_OPTIONAL = {"optimizer", "scheduler", "pending"}


def _read_config(src: Path) -> dict[str, Any]:
    path = src / CONFIG
    if not path.is_file():
        raise CheckpointError(f"directory: expected a checkpoint folder, got {str(src)!r} (no "
                              f"{CONFIG})")
    meta = read_json(path)
    if not isinstance(meta, dict):
        raise CheckpointError(f"{path}: expected a JSON object, got {_short(meta)}")
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{path}: format: expected {FORMAT!r}, got "
                              f"{meta.get('format')!r}")
    if meta.get("version") != VERSION or isinstance(meta.get("version"), bool):
        raise CheckpointError(f"{path}: version: expected {VERSION}, got {meta.get('version')!r}"
                              " (version 1 checkpoints have no digests; save them again)")
    missing = sorted(_REQUIRED - set(meta))
    unexpected = sorted(set(meta) - _REQUIRED - _OPTIONAL)
    if missing or unexpected:
        raise CheckpointError(f"{path}: expected the keys {sorted(_REQUIRED)} (and optionally "
                              f"{sorted(_OPTIONAL)}), got missing {missing} and unexpected "
                              f"{unexpected}")
    if not isinstance(meta["config"], dict):
        raise CheckpointError(f"{path}: config: expected an object, got "
                              f"{_short(meta['config'])}")
    _check_parameters(meta["parameters"], str(path))
    check_files(meta, str(path))
    return recover_files(src, CONFIG, meta, allow_nan=True)


def _check_parameters(params: Any, where: str) -> None:
    """``parameters``: name -> ``{"shape": [int >= 0, ...], "dtype": str}``."""
    if not isinstance(params, dict):
        raise CheckpointError(f"{where}: parameters: expected an object of parameter names to "
                              f"shapes and dtypes, got {_short(params)}")
    for name, entry in params.items():
        ok = (isinstance(entry, dict) and set(entry) == {"shape", "dtype"}
              and isinstance(entry["shape"], list) and isinstance(entry["dtype"], str)
              and all(isinstance(d, int) and not isinstance(d, bool) and d >= 0
                      for d in entry["shape"]))
        if not ok:
            raise CheckpointError(f"{where}: parameters[{name!r}]: expected {{\"shape\": "
                                  f"[integers >= 0], \"dtype\": string}}, got {_short(entry)}")


def _check_recorded(params: dict[str, Any], tensors: Mapping[str, np.ndarray],
                    where: str) -> None:
    """The weights file holds exactly the parameters config.json records."""
    actual = {k: {"shape": list(v.shape), "dtype": str(v.dtype)} for k, v in tensors.items()}
    if actual != params:
        names = sorted(set(actual) | set(params))
        diff = [n for n in names if actual.get(n) != params.get(n)]
        first = diff[0]
        raise CheckpointError(f"{where}: parameters[{first!r}]: expected what {WEIGHTS} holds, "
                              f"{actual.get(first)}, got {params.get(first)} ({len(diff)} "
                              "parameters differ)")


def load_checkpoint(
    directory: str | os.PathLike[str],
    model: Module | None = None,
    *,
    optimizer: Optimizer | None = None,
    scheduler: Any | None = None,
    strict: bool = True,
) -> dict[str, Any]:
    """Restore what :func:`save_checkpoint` wrote, in place and bit for bit.

    Every file's sha256 is checked and every value validated before anything is assigned;
    the classes of ``optimizer`` and ``scheduler`` must match the saved ones. Returns the
    saved user config."""
    src = Path(directory)
    meta = _read_config(src)
    where = str(src / CONFIG)
    tensors = None
    if model is not None:
        tensors = parse_tensors(read_verified(src, WEIGHTS, meta["files"], where),
                                str(src / WEIGHTS))
        _check_recorded(meta["parameters"], tensors, where)
    opt_arrays = None
    if optimizer is not None and "optimizer" in meta:
        opt_arrays = parse_tensors(read_verified(src, OPTIMIZER, meta["files"], where),
                                   str(src / OPTIMIZER))
    restore_state(model, tensors, meta, optimizer=optimizer, optimizer_arrays=opt_arrays,
                  scheduler=scheduler, strict=strict, where=where)
    return dict(meta["config"])

