"""Compute backends chosen at run time.

A *backend* runs :func:`pylstm.functional.lstm` and the inference of :class:`pylstm.LSTM` /
:class:`pylstm.LSTMCell`. Two are built in:

``rust``
    the default: the Rust core (``pylstm._core``), forward and backward, CPU.
``onnxruntime``
    ONNX Runtime ``InferenceSession`` objects, inference only; prefers the
    ``CUDAExecutionProvider`` when ``onnxruntime-gpu`` is installed and a CUDA device works,
    otherwise the CPU provider.

Where backends come from:

* the built-ins (:data:`BUILTIN_BACKEND_MODULES`) implement the same ``register_backends``
  hook as any plugin, but are resolved by calling that hook function directly: computing never
  loads the plugin manager, so a broken third-party plugin cannot break the engine;
* third-party backends come from plugins (``register_backends(register)`` in
  :mod:`pylstm.hookspecs`); the plugin manager (:mod:`pylstm.plugins`) is consulted only when
  a name is not built in, or when listing everything (:func:`list_backends`). A plugin that
  fails to load is named in the :class:`~pylstm.BackendError` for an unknown name.

Selecting a backend, from the strongest to the weakest (:func:`get_backend`):

1. an explicit name, e.g. ``F.lstm(..., backend="onnxruntime")``;
2. the innermost :func:`use_backend` context (per thread / per asyncio task);
3. the process-wide :func:`set_backend`;
4. the environment variable ``PYLSTM_BACKEND``;
5. ``"rust"``.

A selection is a name with optional execution providers, either as arguments
(``set_backend("onnxruntime", providers=["CPUExecutionProvider"])``) or as one string
``"onnxruntime:cuda,cpu"`` (``cuda``/``cpu`` are short for ``CUDAExecutionProvider`` /
``CPUExecutionProvider``), which is also the format of ``PYLSTM_BACKEND``.
"""

from __future__ import annotations

import contextlib
import contextvars
import importlib
import os
import threading
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

from pylstm.errors import BackendError

__all__ = [
    "Backend",
    "BackendInfo",
    "BackendError",
    "BUILTIN_BACKEND_MODULES",
    "DEFAULT_BACKEND",
    "ENV_VAR",
    "current_selection",
    "get_backend",
    "list_backends",
    "parse_selection",
    "set_backend",
    "use_backend",
]

ENV_VAR = "PYLSTM_BACKEND"
"""Environment variable naming the default backend (``name`` or ``name:provider,...``)."""

DEFAULT_BACKEND = "rust"
"""The backend used when nothing else selects one."""

BUILTIN_BACKEND_MODULES: tuple[str, ...] = (
    "pylstm.backends.rust_backend",
    "pylstm.backends.onnxruntime_backend",
)
"""Modules of the built-in backends; each implements the ``register_backends`` hook."""

_REQUIRED = ("name", "available", "devices", "lstm", "run_module")

_PROVIDER_ALIASES = {
    "cuda": "CUDAExecutionProvider",
    "gpu": "CUDAExecutionProvider",
    "cpu": "CPUExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
    "rocm": "ROCMExecutionProvider",
    "dml": "DmlExecutionProvider",
    "coreml": "CoreMLExecutionProvider",
}


@runtime_checkable
class Backend(Protocol):
    """What a backend object provides (see ``docs/ARCHITECTURE.md``, "Backends").

    Optional: ``with_providers(providers) -> Backend`` returns the same backend bound to a list
    of execution providers / devices (used by :func:`set_backend` and :func:`use_backend` when
    ``providers`` is given), and ``unavailable_reason() -> str``.
    """

    name: str

    def available(self) -> bool:
        """Whether the backend can run here (its libraries import, a device exists)."""
        ...

    def devices(self) -> list[str]:
        """Devices or execution providers this backend would use, best first."""
        ...

    def lstm(self, **onnx_args: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Run the ONNX LSTM operator; takes ``functional.lstm``'s validated arguments."""
        ...

    def run_module(
        self, module: Any, x: np.ndarray, hx: Any, lengths: np.ndarray | None
    ) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray]]:
        """Inference of an ``LSTM`` / ``LSTMCell`` module: ``(y, (h_n, c_n))``."""
        ...


@dataclass(frozen=True)
class BackendInfo:
    """One row of :func:`list_backends`.

    ``plugin`` is the plugin that registered the backend (the module name for built-ins). A
    plugin that failed to load gets a row of its own: ``name`` and ``plugin`` are the plugin's
    name, ``available`` is False and ``error`` says why.
    """

    name: str
    available: bool
    devices: list[str] = field(default_factory=list)
    plugin: str = ""
    error: str = ""

    def __str__(self) -> str:
        if self.available:
            return f"{self.name}: {', '.join(self.devices) or '-'}"
        return f"{self.name}: unavailable ({self.error or 'not installed'})"


# --------------------------------------------------------------------------- selection state

@dataclass(frozen=True)
class _Selection:
    name: str
    providers: tuple[str, ...] | None = None


_context: contextvars.ContextVar[_Selection | None] = contextvars.ContextVar(
    "pylstm_backend", default=None
)
_global_selection: _Selection | None = None
_lock = threading.RLock()


def _normalise_providers(providers: Sequence[str] | str | None) -> tuple[str, ...] | None:
    if providers is None:
        return None
    if isinstance(providers, str):
        providers = [p for p in providers.split(",") if p.strip()]
    if not isinstance(providers, Sequence) or not all(isinstance(p, str) for p in providers):
        raise BackendError(f"providers: expected a list of execution provider names, got "
                           f"{providers!r}")
    return tuple(_PROVIDER_ALIASES.get(p.strip().lower(), p.strip()) for p in providers)


def parse_selection(
    spec: str | Backend, providers: Sequence[str] | str | None = None
) -> tuple[str, tuple[str, ...] | None]:
    """Split ``"name:prov1,prov2"`` into ``(name, providers)``; ``providers`` overrides."""
    if not isinstance(spec, str):
        return _check_object(spec).name, _normalise_providers(providers)
    name, _, provs = spec.strip().partition(":")
    name = name.strip().lower()
    if not name:
        raise BackendError(f"backend: expected a backend name, got {spec!r}")
    if providers is None and provs:
        providers = provs
    return name, _normalise_providers(providers)


def set_backend(name: str | None, providers: Sequence[str] | str | None = None) -> None:
    """Select the process-wide backend (``None`` clears the selection).

    ``providers`` (onnxruntime execution providers, best first) is passed to the backend's
    ``with_providers``. The name is checked at once: an unknown name raises ``BackendError``.
    """
    global _global_selection
    if name is None:
        with _lock:
            _global_selection = None
        return
    bname, provs = parse_selection(name, providers)
    _configure(_lookup(bname), provs)  # fail early on a misspelt name or bad providers
    with _lock:
        _global_selection = _Selection(bname, provs)


@contextlib.contextmanager
def use_backend(name: str, providers: Sequence[str] | str | None = None) -> Iterator[Backend]:
    """Use backend ``name`` inside a ``with`` block (this thread / asyncio task only).

    >>> with use_backend("onnxruntime", providers=["CPUExecutionProvider"]) as b:
    ...     y, (h, c) = model(x)
    """
    bname, provs = parse_selection(name, providers)
    backend = _configure(_lookup(bname), provs)
    token = _context.set(_Selection(bname, provs))
    try:
        yield backend
    finally:
        _context.reset(token)


def current_selection() -> tuple[str, tuple[str, ...] | None, str]:
    """``(name, providers, source)`` that :func:`get_backend` would use with no name.

    ``source`` is one of ``"context"``, ``"set_backend"``, ``"env"``, ``"default"``.
    """
    sel = _context.get()
    if sel is not None:
        return sel.name, sel.providers, "context"
    sel = _global_selection
    if sel is not None:
        return sel.name, sel.providers, "set_backend"
    env = os.environ.get(ENV_VAR, "").strip()
    if env:
        name, provs = parse_selection(env)
        return name, provs, "env"
    return DEFAULT_BACKEND, None, "default"


def get_backend(
    name: str | Backend | None = None, providers: Sequence[str] | str | None = None
) -> Backend:
    """Resolve the backend to use: the one place where a backend is chosen.

    Order: explicit ``name`` (``"onnxruntime"``, ``"onnxruntime:cpu"`` or a backend object),
    then the :func:`use_backend` context, then :func:`set_backend`, then ``PYLSTM_BACKEND``,
    then ``"rust"``. Raises ``pylstm.BackendError`` for an unknown name (naming any plugin
    that failed to load).
    """
    if name is not None and not isinstance(name, str):
        backend = _check_object(name)
        return _configure(backend, _normalise_providers(providers)) if providers else backend
    if name is not None:
        bname, provs = parse_selection(name, providers)
    else:
        bname, provs, _ = current_selection()
        if providers is not None:
            provs = _normalise_providers(providers)
    return _configure(_lookup(bname), provs)


def list_backends() -> list[BackendInfo]:
    """Every backend (built in and from plugins) with its availability and devices.

    Loads the plugins; one that fails to load is listed as an unavailable row with the reason,
    never raised.
    """
    rows: list[BackendInfo] = []
    plugin_backends, failures = _plugin_backends()
    for name, (backend, plugin) in sorted({**plugin_backends, **_builtins()}.items()):
        try:
            ok = bool(backend.available())
            err = "" if ok else _unavailable_reason(backend)
            devs = list(backend.devices()) if ok else []
        except Exception as exc:  # a broken plugin must not break the listing
            ok, devs, err = False, [], f"{type(exc).__name__}: {exc}"
        rows.append(BackendInfo(name=name, available=ok, devices=devs, plugin=plugin, error=err))
    for plugin, message in sorted(failures.items()):
        rows.append(BackendInfo(name=plugin, available=False, plugin=plugin,
                                error=f"plugin failed to load: {message}"))
    return rows


def _unavailable_reason(backend: Any) -> str:
    reason = getattr(backend, "unavailable_reason", None)
    if callable(reason):
        try:
            return str(reason())
        except Exception as exc:  # pragma: no cover - a plugin's own bug
            return f"{type(exc).__name__}: {exc}"
    return ""


def _check_object(backend: Any) -> Backend:
    missing = [a for a in _REQUIRED if not hasattr(backend, a)]
    if missing:
        raise BackendError(f"backend: expected a backend name or an object with "
                           f"{', '.join(_REQUIRED)}; got {type(backend).__name__} {backend!r} "
                           f"(lacks {', '.join(missing)})")
    return backend


def _configure(backend: Backend, providers: tuple[str, ...] | None) -> Backend:
    if not providers:
        return backend
    with_providers = getattr(backend, "with_providers", None)
    if with_providers is None:
        raise BackendError(
            f"backend {backend.name!r} takes no execution providers, got {list(providers)}"
        )
    return with_providers(list(providers))


# --------------------------------------------------------------------------- registry

def _collector(found: dict[str, tuple[Backend, str]], plugin: str,
               taken: dict[str, tuple[Backend, str]]) -> Callable[[Any], None]:
    """The ``register`` callback handed to one plugin's ``register_backends``."""

    def register(backend: Any) -> None:
        missing = [a for a in _REQUIRED if not hasattr(backend, a)]
        if missing:
            raise BackendError(f"register_backends: {backend!r} lacks {', '.join(missing)} "
                               "(see pylstm.backends.Backend)")
        name = str(backend.name).lower()
        first = taken.get(name) or found.get(name)
        if first is not None:
            warnings.warn(f"backend {name!r} registered twice (plugins {first[1]!r} and "
                          f"{plugin!r}); keeping the first", RuntimeWarning, stacklevel=2)
            return
        found[name] = (backend, plugin)

    return register


_builtin_cache: dict[str, tuple[Backend, str]] | None = None


def _builtins() -> dict[str, tuple[Backend, str]]:
    """The built-in backends, from their modules' ``register_backends`` (no plugin manager)."""
    global _builtin_cache
    cache = _builtin_cache
    if cache is not None:
        return cache
    with _lock:
        if _builtin_cache is None:
            found: dict[str, tuple[Backend, str]] = {}
            for module_name in BUILTIN_BACKEND_MODULES:
                module = importlib.import_module(module_name)
                module.register_backends(register=_collector(found, module_name, {}))
            _builtin_cache = found
        return _builtin_cache


_plugin_cache: tuple[Any, dict[str, tuple[Backend, str]], dict[str, str]] | None = None


def _plugin_backends() -> tuple[dict[str, tuple[Backend, str]], dict[str, str]]:
    """Backends registered by plugins that are not built in, and ``{plugin: error}`` of those
    that failed to load or to register; cached per set of loaded plugins."""
    global _plugin_cache
    # The plugin manager sits above the engine; it is imported here, on demand only, so that
    # resolving a built-in name never loads a plugin.
    from pylstm import plugins

    pm = plugins.get_plugin_manager()
    key = (id(pm), frozenset(id(p) for p in pm.get_plugins()), len(plugins.failed_plugins()))
    with _lock:
        if _plugin_cache is not None and _plugin_cache[0] == key:
            return _plugin_cache[1], _plugin_cache[2]
        builtins = _builtins()
        found: dict[str, tuple[Backend, str]] = {}
        failures = plugins.failed_plugins()
        # one implementation at a time (registration order: the first of a clash wins) so that
        # each backend is known by the plugin that registered it
        for impl in pm.hook.register_backends.get_hookimpls():
            if impl.plugin_name in BUILTIN_BACKEND_MODULES:
                continue
            label = plugins.plugin_label(impl.plugin_name)
            try:
                impl.function(register=_collector(found, label, builtins))
            except Exception as exc:
                failures[label] = f"register_backends raised {type(exc).__name__}: {exc}"
        _plugin_cache = (key, found, failures)
        return found, failures


def _lookup(name: str) -> Backend:
    builtin = _builtins().get(name)
    if builtin is not None:
        return builtin[0]
    found, failures = _plugin_backends()
    if name in found:
        return found[name][0]
    known = ", ".join(sorted({*_builtins(), *found}))
    message = f"backend: unknown backend {name!r} (registered: {known})"
    if failures:
        message += "; " + "; ".join(f"plugin {p!r} failed to load ({e})"
                                    for p, e in sorted(failures.items()))
    raise BackendError(message)
