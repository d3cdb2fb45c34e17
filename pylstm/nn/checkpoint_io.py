"""The checkpoint file formats: JSON and safetensors, encoded and decoded with errors that name
the file.

* :func:`dump_json` writes sorted, indented UTF-8 JSON (finite numbers unless allowed);
  :func:`parse_json` / :func:`read_json` report a malformed file with its name and position.
* :func:`tensors_writer` validates a dict of arrays before anything is written;
  :func:`parse_tensors` turns any malformed safetensors content into a ``CheckpointError``.

``safetensors`` is imported where it is used (``pip install pylstm[zoo]`` or ``safetensors``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from pylstm.errors import CheckpointError, DTypeError, LstmValueError

__all__ = ["Writer", "dump_json", "parse_json", "parse_tensors", "read_json", "short",
           "tensors_writer"]

Writer = Callable[[Path], object]  # what it returns (e.g. write_bytes's count) is unused


def short(value: Any, limit: int = 60) -> str:
    """``value``'s type and (shortened) repr, for error messages."""
    text = repr(value)
    kind = type(value).__name__
    return f"{kind} {text if len(text) <= limit else text[:limit] + '...'}"


def _safetensors() -> Any:
    try:
        import safetensors.numpy as st
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "checkpoints need the 'safetensors' package: pip install pylstm[zoo] (or "
            "pip install safetensors)"
        ) from exc
    return st


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

