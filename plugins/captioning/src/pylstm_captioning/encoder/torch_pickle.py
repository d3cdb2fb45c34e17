"""Read a PyTorch checkpoint (``torch.save``'s legacy or zip format) into numpy arrays, without
torch and without trusting pickle.

The unpickler admits only the callables that rebuild tensors and ordered dicts, the allowlist
PyTorch's own ``weights_only=True`` loader uses, each mapped to a numpy-building function of
ours; any other global (``os.system``, ``builtins.eval``, ...) raises :class:`UnsafePickleError`
naming it, before anything is called.

Legacy format (torch < 1.6, and ``_use_new_zipfile_serialization=False``): five pickles in a
row, then the raw storages -- magic number, protocol version, system info, the object (storages
referenced by ``persistent_load`` ids), the list of storage keys; then for each key an int64
element count and the little-endian bytes. Zip format: ``<prefix>/data.pkl`` with the
storages in ``<prefix>/data/<key>``.
"""

from __future__ import annotations

import _compat_pickle
import collections
import io
import os
import pickle
import struct
import zipfile
from dataclasses import dataclass
from typing import IO, Any

import numpy as np

__all__ = ["UnsafePickleError", "load_torch_checkpoint"]

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001


class UnsafePickleError(pickle.UnpicklingError):
    """The checkpoint asks for a global outside the tensor/ordered-dict allowlist, or is not a
    checkpoint this reader understands."""


@dataclass(frozen=True, slots=True)
class _StorageType:
    """Stands in for ``torch.FloatStorage`` and its kin: only the dtype matters here."""

    name: str
    dtype: np.dtype


# torch.<Name>Storage -> numpy dtype. BFloat16 has no numpy dtype: read as uint16, widened later.
_STORAGE_DTYPES = {
    "DoubleStorage": "<f8", "FloatStorage": "<f4", "HalfStorage": "<f2",
    "BFloat16Storage": "<u2", "LongStorage": "<i8", "IntStorage": "<i4",
    "ShortStorage": "<i2", "CharStorage": "i1", "ByteStorage": "u1", "BoolStorage": "?",
    "UntypedStorage": "u1",
}
_STORAGE_TYPES = {name: _StorageType(name, np.dtype(dt)) for name, dt in _STORAGE_DTYPES.items()}


class _Storage:
    """A storage named by the pickle; its bytes arrive later (legacy) or on demand (zip)."""

    def __init__(self, key: str, stype: _StorageType, numel: int) -> None:
        self.key = key
        self.stype = stype
        self.numel = numel
        self.array: np.ndarray | None = None


@dataclass
class _TensorRef:
    """What ``_rebuild_tensor_v2`` returns: materialised once the storage bytes are read."""

    storage: _Storage
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]


def _rebuild_tensor_v2(storage: _Storage, storage_offset: int, size: tuple[int, ...],
                       stride: tuple[int, ...], requires_grad: bool = False,
                       backward_hooks: Any = None, metadata: Any = None) -> _TensorRef:
    if not isinstance(storage, _Storage):
        raise UnsafePickleError("_rebuild_tensor_v2: the first argument is not a storage")
    return _TensorRef(storage, int(storage_offset), tuple(int(s) for s in size),
                      tuple(int(s) for s in stride))


def _rebuild_parameter(data: Any, requires_grad: bool = False,
                       backward_hooks: Any = None) -> Any:
    return data  # an nn.Parameter is its tensor here


def _rebuild_parameter_with_state(data: Any, requires_grad: bool, backward_hooks: Any,
                                  state: Any) -> Any:
    return data


class _Callable:
    """An allowlisted function, sealed: a pickle's BUILD opcode cannot set its attributes
    (``__defaults__`` and the like) the way it could on a bare function."""

    __slots__ = ("_fn",)
    _fn: Any

    def __init__(self, fn: Any) -> None:
        object.__setattr__(self, "_fn", fn)

    def __call__(self, *args: Any) -> Any:
        return self._fn(*args)

    def __setattr__(self, name: str, value: Any) -> None:
        raise UnsafePickleError(f"refusing to set {name!r} on {self._fn.__name__}")


# (module, name) -> our stand-in. The same set torch._weights_only_unpickler admits for plain
# tensors and state dicts; nothing here can reach the file system or run code.
_ALLOWED: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _Callable(_rebuild_tensor_v2),
    ("torch._utils", "_rebuild_parameter"): _Callable(_rebuild_parameter),
    ("torch._utils", "_rebuild_parameter_with_state"): _Callable(_rebuild_parameter_with_state),
    **{("torch", name): st for name, st in _STORAGE_TYPES.items()},
}


class RestrictedUnpickler(pickle.Unpickler):
    """A ``pickle.Unpickler`` whose ``find_class`` admits only :data:`_ALLOWED`.

    ``storages`` maps each persistent storage key to its :class:`_Storage` (filled as the
    pickle names them); ``persistent_load`` accepts only ``("storage", ...)`` ids.
    """

    def __init__(self, file: IO[bytes], *, zip_format: bool) -> None:
        super().__init__(file, encoding="utf-8")
        self.zip_format = zip_format
        self.storages: dict[str, _Storage] = {}

    def find_class(self, module: str, name: str) -> Any:
        # protocol 0-2 pickles name Python 2 modules (__builtin__.eval): report today's names
        if (module, name) in _compat_pickle.NAME_MAPPING:
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        elif module in _compat_pickle.IMPORT_MAPPING:
            module = _compat_pickle.IMPORT_MAPPING[module]
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise UnsafePickleError(
                f"refusing to unpickle {module}.{name}: only tensors, storages and "
                "collections.OrderedDict are allowed in a weights file") from None

    def persistent_load(self, pid: Any) -> Any:
        if not isinstance(pid, tuple) or not pid or _ascii(pid[0]) != "storage":
            raise UnsafePickleError(f"unsupported persistent id {pid!r:.80}")
        if self.zip_format:  # ("storage", type, key, location, numel)
            _, stype, key, _location, numel = pid
            view = None
        else:  # ("storage", type, root_key, location, numel, view_metadata)
            _, stype, key, _location, numel, view = pid
        if not isinstance(stype, _StorageType):
            raise UnsafePickleError(f"persistent id names {stype!r:.60}, not a storage type")
        if view is not None:
            raise UnsafePickleError("storage views (torch < 0.4 checkpoints) are not supported")
        key = _ascii(key)
        storage = self.storages.get(key)
        if storage is None:
            storage = self.storages[key] = _Storage(key, stype, int(numel))
        return storage


def _ascii(value: Any) -> str:
    return value.decode("ascii") if isinstance(value, bytes) else str(value)


def _materialise(obj: Any) -> Any:
    """Replace every :class:`_TensorRef` in ``obj`` (dicts, lists, tuples) with an array."""
    if isinstance(obj, _TensorRef):
        data = obj.storage.array
        if data is None:
            raise UnsafePickleError(f"storage {obj.storage.key} has no data in the file")
        item = data.itemsize
        if len(obj.size) != len(obj.stride):
            raise UnsafePickleError(f"a tensor of storage {obj.storage.key}: size and stride "
                                    "differ in length")
        pairs = zip(obj.size, obj.stride, strict=True)
        needed = 0 if 0 in obj.size else obj.offset + sum((n - 1) * s for n, s in pairs) + 1
        if obj.offset < 0 or any(s < 0 for s in obj.stride) or needed > data.size:
            raise UnsafePickleError(f"a tensor reaches past its storage {obj.storage.key}")
        view = np.lib.stride_tricks.as_strided(
            data[obj.offset:], shape=obj.size, strides=[s * item for s in obj.stride])
        out = np.array(view, copy=True)  # own the memory: contiguous, writeable
        if obj.storage.stype.name == "BFloat16Storage":
            out = (out.astype(np.uint32) << 16).view(np.float32)
        return out
    if isinstance(obj, dict):
        new = type(obj)() if isinstance(obj, collections.OrderedDict) else {}
        for k, v in obj.items():
            new[k] = _materialise(v)
        return new
    if isinstance(obj, list):
        return [_materialise(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(_materialise(v) for v in obj)
    return obj


def _load(up: RestrictedUnpickler, what: str) -> Any:
    try:
        return up.load()
    except UnsafePickleError:
        raise
    except Exception as exc:  # EOFError, UnpicklingError, a stand-in called with bad arguments
        raise UnsafePickleError(f"not a PyTorch checkpoint ({what}: {exc})") from None


def _read_legacy(f: IO[bytes]) -> Any:
    def plain(what: str) -> Any:
        return _load(RestrictedUnpickler(f, zip_format=False), what)

    if plain("magic number") != _LEGACY_MAGIC:
        raise UnsafePickleError("not a PyTorch checkpoint (wrong magic number)")
    if plain("protocol version") != _LEGACY_PROTOCOL:
        raise UnsafePickleError("unsupported PyTorch legacy protocol version")
    sys_info = plain("system info")
    if isinstance(sys_info, dict) and not sys_info.get("little_endian", True):
        raise UnsafePickleError("big-endian checkpoints are not supported")
    up = RestrictedUnpickler(f, zip_format=False)
    result = _load(up, "the object")
    keys = plain("storage keys")
    if not isinstance(keys, list):
        raise UnsafePickleError("not a PyTorch checkpoint (no list of storage keys)")
    for key in keys:
        storage = up.storages.get(_ascii(key))
        if storage is None:
            raise UnsafePickleError(f"storage key {key!r} is not used by the checkpoint")
        (count,) = struct.unpack("<q", _read_exact(f, 8))
        if count != storage.numel:
            raise UnsafePickleError(f"storage {key}: {count} elements, expected {storage.numel}")
        nbytes = count * storage.stype.dtype.itemsize
        storage.array = np.frombuffer(_read_exact(f, nbytes), dtype=storage.stype.dtype)
    return _materialise(result)


def _read_exact(f: IO[bytes], n: int) -> bytes:
    data = f.read(n)
    if len(data) != n:
        raise UnsafePickleError("the checkpoint is truncated")
    return data


def _read_zip(path: str | os.PathLike[str]) -> Any:
    with zipfile.ZipFile(path) as zf:
        pkl = [n for n in zf.namelist() if n.endswith("/data.pkl") or n == "data.pkl"]
        if len(pkl) != 1:
            raise UnsafePickleError("not a PyTorch zip checkpoint (no single data.pkl)")
        prefix = pkl[0][: -len("data.pkl")]
        order = prefix + "byteorder"
        if order in zf.namelist() and zf.read(order).strip() != b"little":
            raise UnsafePickleError("big-endian checkpoints are not supported")
        up = RestrictedUnpickler(io.BytesIO(zf.read(pkl[0])), zip_format=True)
        result = _load(up, "data.pkl")
        for storage in up.storages.values():
            try:
                raw = zf.read(f"{prefix}data/{storage.key}")
            except KeyError:
                raise UnsafePickleError(f"storage {storage.key} is missing from the zip") from None
            nbytes = storage.numel * storage.stype.dtype.itemsize
            if len(raw) < nbytes:
                raise UnsafePickleError(f"storage {storage.key} is truncated")
            storage.array = np.frombuffer(raw[:nbytes], dtype=storage.stype.dtype)
    return _materialise(result)


def load_torch_checkpoint(path: str | os.PathLike[str]) -> Any:
    """The object ``torch.save`` wrote to ``path`` (typically a state dict), tensors as numpy
    arrays; no torch needed and no code in the file is run.

    Raises :class:`UnsafePickleError` for a global outside the allowlist (the message names
    ``module.name``), a malformed file, or an unsupported variant (big-endian, storage views,
    the tar format of torch < 0.4).
    """
    if zipfile.is_zipfile(path):
        return _read_zip(path)
    with open(path, "rb") as f:
        return _read_legacy(f)
