"""Checkpoints that are written atomically and never half-trusted; no pickle anywhere.

Two layers, both used by :mod:`pylstm.runs` and :mod:`pylstm.train` too:

* **Durable files.** :func:`commit_files` writes each file to ``<name>.partial`` (flushed and
  fsynced), records every new file's sha256 and size in a JSON *manifest* together with a
  ``pending`` list, renames the partial files over the old ones, then rewrites the manifest
  without ``pending``. A kill at any moment leaves the old files with the old manifest, or a
  manifest whose ``pending`` files :func:`recover_files` can finish renaming: never a file
  whose digest disagrees with its manifest. :func:`read_verified` checks size and sha256 before
  anything is parsed (safetensors has no checksum of its own).
* **Training state.** :func:`capture_state` gathers a model's parameters, its generators'
  states (``model.named_rngs()``), the optimiser's and the schedule's state;
  :func:`restore_state` validates all of it first (names, shapes, value types, generator
  states) and only then assigns, so a bad file leaves model, optimiser and schedule untouched.

A checkpoint directory written by :func:`save_checkpoint`::

    model.safetensors      parameters by dotted name (bit-exact)
    optimizer.safetensors  optimiser arrays (momentum buffers, Adam moments), if saved
    config.json            format/version, the user's config, parameter shapes/dtypes, generator
                           states, optimiser/schedule scalars, and the files' digests

``safetensors`` is imported where it is used (``pip install pylstm[zoo]`` or ``safetensors``).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from pylstm.errors import CheckpointError, DTypeError, LstmValueError, ShapeError

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
PARTIAL = ".partial"

Writer = Callable[[Path], None]


# ----------------------------------------------------------------------------- durable files
def _safetensors() -> Any:
    try:
        import safetensors.numpy as st
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "checkpoints need the 'safetensors' package: pip install pylstm[zoo] (or "
            "pip install safetensors)"
        ) from exc
    return st


def _fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable (POSIX; a no-op where directories cannot be opened)."""
    if not hasattr(os, "O_DIRECTORY"):  # pragma: no cover - Windows
        return
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_partial(path: Path, write: Writer) -> Path:
    """``write`` into ``<path>.partial``, flushed and fsynced; removed again on failure."""
    part = path.with_name(path.name + PARTIAL)
    try:
        write(part)
        with open(part, "rb+") as f:  # the writer may be a library call: sync what it wrote
            os.fsync(f.fileno())
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    return part


def write_atomic(path: str | os.PathLike[str], write: Writer) -> None:
    """Replace ``path`` by what ``write(tmp_path)`` writes, atomically and durably."""
    path = Path(path)
    os.replace(_write_partial(path, write), path)
    _fsync_dir(path.parent)


def file_digest(path: Path) -> dict[str, Any]:
    """``{"sha256": hex, "size": bytes}`` of a file."""
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
            size += len(chunk)
    return {"sha256": h.hexdigest(), "size": size}


def _plain(value: Any) -> Any:
    """numpy scalars as Python numbers for JSON (arrays are refused)."""
    if isinstance(value, (np.bool_,)):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    raise TypeError(f"{type(value).__name__} is not JSON-serialisable")


def dump_json(data: Any, what: str, *, allow_nan: bool = False) -> bytes:
    """``data`` as UTF-8 JSON (sorted keys, indented). Non-finite numbers only with
    ``allow_nan`` (Python's ``Infinity``/``NaN`` extension, e.g. a plateau schedule's
    ``best = inf``); ``what`` names the file in errors."""
    try:
        text = json.dumps(data, indent=2, sort_keys=True, allow_nan=allow_nan, default=_plain)
    except TypeError as exc:
        raise DTypeError(f"{what}: expected JSON-serialisable values ({exc})") from None
    except ValueError as exc:
        raise LstmValueError(f"{what}: expected finite numbers ({exc})") from None
    return (text + "\n").encode("utf-8")


def parse_json(raw: bytes, what: str) -> Any:
    """Parse JSON bytes; a truncated or malformed file is reported with its name and the
    line, column and character position of the problem."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CheckpointError(f"{what}: expected UTF-8 JSON, got a non-UTF-8 byte at position "
                              f"{exc.start}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{what}: invalid JSON at line {exc.lineno} column {exc.colno} "
                              f"(char {exc.pos} of {len(text)}): {exc.msg}") from None


def read_json(path: Path) -> Any:
    """Read and parse a JSON file (errors name it)."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise CheckpointError(f"{path}: file not found") from None
    return parse_json(raw, str(path))


def _check_entry(name: Any, entry: Any, where: str) -> None:
    if not isinstance(name, str) or not name or Path(name).is_absolute() or ".." in \
            Path(name).parts or name.endswith(PARTIAL):
        raise CheckpointError(f"{where}: files: expected relative file names, got {name!r}")
    ok = (isinstance(entry, dict) and set(entry) == {"sha256", "size"}
          and isinstance(entry["sha256"], str) and len(entry["sha256"]) == 64
          and all(c in "0123456789abcdef" for c in entry["sha256"])
          and isinstance(entry["size"], int) and not isinstance(entry["size"], bool)
          and entry["size"] >= 0)
    if not ok:
        raise CheckpointError(f"{where}: files[{name!r}]: expected {{\"sha256\": 64 hex digits, "
                              f"\"size\": integer >= 0}}, got {_short(entry)}")


def check_files(manifest: Mapping[str, Any], where: str) -> None:
    """Validate a manifest's ``files`` (name -> digest) and optional ``pending`` list."""
    files = manifest.get("files")
    if not isinstance(files, dict):
        raise CheckpointError(f"{where}: files: expected an object of file digests, got "
                              f"{_short(files)}")
    for name, entry in files.items():
        _check_entry(name, entry, where)
    pending = manifest.get("pending", [])
    if not isinstance(pending, list) or not all(isinstance(n, str) and n in files
                                                for n in pending):
        raise CheckpointError(f"{where}: pending: expected a list of names in files, got "
                              f"{_short(pending)}")


def commit_files(folder: Path, manifest_name: str, manifest: dict[str, Any],
                 writes: Mapping[str, Writer], *, allow_nan: bool = False) -> dict[str, Any]:
    """Write ``writes`` (relative name -> writer) and then ``manifest`` recording their
    digests in its ``files``, so that a kill at any moment leaves a consistent folder.

    Partial files a kill left before an earlier commit point are removed first (call this
    only on a manifest without ``pending``, i.e. after :func:`recover_files`). Returns the
    manifest as written (``manifest`` itself is not modified)."""
    target = folder / manifest_name
    for parent in {folder} | {(folder / name).parent for name in writes}:
        for stale in parent.glob("*" + PARTIAL):  # left by a kill before a commit point
            stale.unlink()
    digests: dict[str, dict[str, Any]] = {}
    parts: dict[str, Path] = {}
    try:
        for name, write in writes.items():
            final = folder / name
            final.parent.mkdir(parents=True, exist_ok=True)
            parts[name] = _write_partial(final, write)
            digests[name] = file_digest(parts[name])
    except BaseException:
        for part in parts.values():
            part.unlink(missing_ok=True)
        raise
    new = {k: v for k, v in manifest.items() if k != "pending"}
    new["files"] = {**manifest.get("files", {}), **digests}
    if digests:
        # The commit point: from here on recover_files() can finish the renames.
        journal = dump_json({**new, "pending": sorted(digests)}, str(target), allow_nan=allow_nan)
        write_atomic(target, lambda p: p.write_bytes(journal))
        for name, part in parts.items():
            os.replace(part, folder / name)
        for parent in {(folder / name).parent for name in parts}:
            _fsync_dir(parent)
    text = dump_json(new, str(target), allow_nan=allow_nan)
    write_atomic(target, lambda p: p.write_bytes(text))
    return new


def recover_files(folder: Path, manifest_name: str, manifest: dict[str, Any], *,
                  allow_nan: bool = False) -> dict[str, Any]:
    """Finish a :func:`commit_files` that was killed after its commit point (the manifest
    lists ``pending`` files); returns the manifest without ``pending``. A no-op otherwise."""
    pending = manifest.get("pending")
    if not pending:
        return manifest
    target = folder / manifest_name
    check_files(manifest, str(target))
    for name in pending:
        final = folder / name
        part = final.with_name(final.name + PARTIAL)
        expected = manifest["files"][name]
        if part.is_file() and file_digest(part) == expected:
            os.replace(part, final)
        elif not (final.is_file() and file_digest(final) == expected):
            raise CheckpointError(
                f"{final}: an interrupted save left neither this file nor {part.name} with "
                f"the recorded sha256 {expected['sha256']}: the folder is damaged")
    for parent in {(folder / name).parent for name in pending}:
        _fsync_dir(parent)
    new = {k: v for k, v in manifest.items() if k != "pending"}
    text = dump_json(new, str(target), allow_nan=allow_nan)
    write_atomic(target, lambda p: p.write_bytes(text))
    return new


def read_verified(folder: Path, name: str, files: Mapping[str, Any], manifest: str) -> bytes:
    """The bytes of ``folder/name`` after checking its size and sha256 against ``files``
    (the digests of the manifest file named ``manifest``)."""
    path = folder / name
    entry = files.get(name)
    if entry is None:
        raise CheckpointError(f"{manifest}: files: expected an entry for {name!r}, got none "
                              f"(recorded: {sorted(files)})")
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise CheckpointError(f"{path}: file not found (it is recorded in {manifest})") from None
    actual = hashlib.sha256(raw).hexdigest()
    if actual != entry["sha256"] or len(raw) != entry["size"]:
        raise CheckpointError(
            f"{path}: sha256 mismatch: expected {entry['sha256']} ({entry['size']} bytes, "
            f"recorded in {manifest}), got {actual} ({len(raw)} bytes): the file is corrupt "
            "or was changed")
    return raw


def tensors_writer(tensors: Mapping[str, np.ndarray], what: str,
                   metadata: Mapping[str, str] | None = None) -> Writer:
    """A writer of ``tensors`` (name -> array) as one safetensors file (validated now)."""
    st = _safetensors()
    if not isinstance(tensors, Mapping):
        raise DTypeError(f"{what}: expected a dict of names to numpy arrays, got "
                         f"{type(tensors).__name__}")
    arrays: dict[str, np.ndarray] = {}
    for key, value in tensors.items():
        if not isinstance(key, str) or not isinstance(value, np.ndarray) or value.dtype.kind \
                not in "biuf":
            got = value.dtype if isinstance(value, np.ndarray) else type(value).__name__
            raise DTypeError(f"{what}: tensors[{key!r}]: expected a numeric numpy array, got "
                             f"{got}")
        arrays[key] = np.ascontiguousarray(value)
    meta = {"format": "np", **(metadata or {})}
    return lambda p: st.save_file(arrays, str(p), metadata=meta)


def parse_tensors(raw: bytes, what: str) -> dict[str, np.ndarray]:
    """Arrays from safetensors bytes; a malformed file is an error naming ``what``."""
    st = _safetensors()
    try:
        return dict(st.load(raw))
    except Exception as exc:  # safetensors raises its own (Rust) error types
        raise CheckpointError(f"{what}: not a valid safetensors file ({exc})") from None


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


# ----------------------------------------------------------------------------- training state
def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    kind = type(value).__name__
    return f"{kind} {text if len(text) <= limit else text[:limit] + '...'}"


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
        raise CheckpointError(f"{where}: expected {_describe(current)}, got {_short(saved)}")


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
                              f"generator states, got {_short(states)}")
    rngs = dict(model.named_rngs())
    if strict and set(states) != set(rngs):
        raise CheckpointError(f"{where}: rng_states: expected the generators of modules "
                              f"{sorted(rngs)}, got {sorted(states)}")
    out = []
    for name, state in states.items():
        if name not in rngs:
            continue
        rng = rngs[name]
        trial = type(rng.bit_generator)()  # validate on a scratch generator first
        try:
            trial.state = state
        except (TypeError, ValueError, KeyError) as exc:
            raise CheckpointError(f"{where}: rng_states[{name!r}]: expected a "
                                  f"{type(rng.bit_generator).__name__} state, got "
                                  f"{_short(state)} ({exc})") from None
        out.append((rng, state))
    return out


def _checked_optimizer_state(optimizer: Optimizer, saved: Any, arrays: Mapping[str, np.ndarray],
                             where: str) -> dict[str, Any]:
    if not isinstance(saved, dict) or set(saved) != {"class", "param_groups", "scalar_state",
                                                     "arrays"}:
        raise CheckpointError(f"{where}: optimizer: expected an object with class, "
                              f"param_groups, scalar_state and arrays, got {_short(saved)}")
    if saved["class"] != type(optimizer).__name__:
        raise CheckpointError(f"{where}: optimizer.class: expected {type(optimizer).__name__} "
                              f"(the optimizer given), got {saved['class']!r}")
    current = optimizer.state_dict()
    groups = saved["param_groups"]
    if not isinstance(groups, list) or len(groups) != len(current["param_groups"]):
        raise CheckpointError(f"{where}: optimizer.param_groups: expected a list of "
                              f"{len(current['param_groups'])}, got {_short(groups)}")
    for i, (group, live) in enumerate(zip(groups, current["param_groups"], strict=True)):
        if not isinstance(group, dict):
            raise CheckpointError(f"{where}: optimizer.param_groups[{i}]: expected an object, "
                                  f"got {_short(group)}")
        for key, value in group.items():
            if key in live:
                check_like(value, live[key], f"{where}: optimizer.param_groups[{i}].{key}")
    scalars = saved["scalar_state"]
    if not isinstance(scalars, dict) or not all(isinstance(v, dict) for v in scalars.values()):
        raise CheckpointError(f"{where}: optimizer.scalar_state: expected an object of "
                              f"objects, got {_short(scalars)}")
    state: dict[str, dict[str, Any]] = {}
    for name, entry in scalars.items():
        for key, value in entry.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)) or (
                    key == "step" and not isinstance(value, int)):
                expected = "an integer" if key == "step" else "a number"
                raise CheckpointError(f"{where}: optimizer.scalar_state[{name!r}].{key}: "
                                      f"expected {expected}, got {_short(value)}")
        state[name] = dict(entry)
    index = saved["arrays"]
    if not isinstance(index, list):
        raise CheckpointError(f"{where}: optimizer.arrays: expected a list, got {_short(index)}")
    for item in index:
        if not (isinstance(item, list) and len(item) == 3 and all(isinstance(s, str)
                                                                  for s in item)):
            raise CheckpointError(f"{where}: optimizer.arrays: expected [name, key, tensor] "
                                  f"string triples, got {_short(item)}")
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
                                  f"state, got {_short(saved)}")
        if saved["class"] != type(scheduler).__name__:
            raise CheckpointError(f"{where}: scheduler.class: expected "
                                  f"{type(scheduler).__name__} (the schedule given), got "
                                  f"{saved['class']!r}")
        check_like(saved["state"], scheduler.state_dict(), f"{where}: scheduler.state")
        sched_state = saved["state"]
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
    if sched_state is not None:
        scheduler.load_state_dict(sched_state)
    if model is not None:
        model.load_state_dict(dict(model_tensors or {}), strict=strict)
        for rng, state in rng_plan:
            rng.bit_generator.state = state


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
    if meta.get("version") != VERSION:
        raise CheckpointError(f"{path}: version: expected {VERSION}, got {meta.get('version')!r}"
                              " (version 1 checkpoints have no digests; save them again)")
    if not isinstance(meta.get("config"), dict):
        raise CheckpointError(f"{path}: config: expected an object, got "
                              f"{_short(meta.get('config'))}")
    check_files(meta, str(path))
    return recover_files(src, CONFIG, meta, allow_nan=True)


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
    opt_arrays = None
    if optimizer is not None and "optimizer" in meta:
        opt_arrays = parse_tensors(read_verified(src, OPTIMIZER, meta["files"], where),
                                   str(src / OPTIMIZER))
    restore_state(model, tensors, meta, optimizer=optimizer, optimizer_arrays=opt_arrays,
                  scheduler=scheduler, strict=strict, where=where)
    return dict(meta["config"])

