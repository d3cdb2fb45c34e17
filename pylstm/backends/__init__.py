"""Compute backends chosen at run time.

A *backend* runs :func:`pylstm.functional.lstm` and the inference of :class:`pylstm.LSTM` /
:class:`pylstm.LSTMCell`. Two are built in:

``rust``
    the default: the Rust core (``pylstm._core``), forward and backward, CPU.
``onnxruntime``
    ONNX Runtime ``InferenceSession`` objects, inference only; prefers the
    ``CUDAExecutionProvider`` when ``onnxruntime-gpu`` is installed and a CUDA device works,
    otherwise the CPU provider.

Backends are registered through pluggy: a plugin implements the ``register_backends(register)``
hook (:mod:`pylstm.hookspecs`) and calls ``register(backend)`` with an object following
:class:`Backend`. The built-in backends are plugins too (``pylstm.backends.rust_backend`` and
``pylstm.backends.onnxruntime_backend``).

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
import os
import threading
import types
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

__all__ = [
    "Backend",
    "BackendInfo",
    "BackendError",
    "backend_error",
    "ENV_VAR",
    "DEFAULT_BACKEND",
    "backends",
    "get_backend",
    "set_backend",
    "use_backend",
    "current_selection",
    "parse_selection",
]

ENV_VAR = "PYLSTM_BACKEND"
"""Environment variable naming the default backend (``name`` or ``name:provider,...``)."""

DEFAULT_BACKEND = "rust"
"""The backend used when nothing else selects one."""

_PROVIDER_ALIASES = {
    "cuda": "CUDAExecutionProvider",
    "gpu": "CUDAExecutionProvider",
    "cpu": "CPUExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
    "rocm": "ROCMExecutionProvider",
    "dml": "DmlExecutionProvider",
    "coreml": "CoreMLExecutionProvider",
}


class _FallbackBackendError(RuntimeError):
    """Stand-in for :class:`pylstm.BackendError` while the engine package is not importable."""


def _backend_error_class() -> type[RuntimeError]:
    """Return :class:`pylstm.BackendError` (looked up lazily: ``pylstm`` imports this module)."""
    try:
        import pylstm

        cls = getattr(pylstm, "BackendError", None)
    except Exception:  # pragma: no cover - only while the engine is being built
        cls = None
    if isinstance(cls, type) and issubclass(cls, RuntimeError):
        return cls
    return _FallbackBackendError


def backend_error(message: str) -> RuntimeError:
    """Build a :class:`pylstm.BackendError` with ``message`` (``raise backend_error("...")``)."""
    return _backend_error_class()(message)


def __getattr__(name: str) -> Any:
    # ``from pylstm.backends import BackendError`` gives the engine's exception class
    if name == "BackendError":
        return _backend_error_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@runtime_checkable
class Backend(Protocol):
    """What a backend object provides (see ``docs/ARCHITECTURE.md``, "Backends").

    Optional: ``with_providers(providers) -> Backend`` returns the same backend bound to a list
    of execution providers / devices (used by :func:`set_backend` and :func:`use_backend` when
    ``providers`` is given).
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
    """One row of :func:`backends`."""

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
    out = []
    for p in providers:
        p = str(p).strip()
        out.append(_PROVIDER_ALIASES.get(p.lower(), p))
    return tuple(out)


def parse_selection(
    spec: str | Backend, providers: Sequence[str] | str | None = None
) -> tuple[str, tuple[str, ...] | None]:
    """Split ``"name:prov1,prov2"`` into ``(name, providers)``; ``providers`` overrides."""
    if not isinstance(spec, str):
        return spec.name, _normalise_providers(providers)
    name, _, provs = spec.strip().partition(":")
    name = name.strip().lower()
    if not name:
        raise ValueError(f"backend: expected a backend name, got {spec!r}")
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
    _lookup(bname)  # fail early on a misspelt name
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
    """Resolve the backend to use.

    Order: explicit ``name`` (``"onnxruntime"``, ``"onnxruntime:cpu"`` or a backend object),
    then the :func:`use_backend` context, then :func:`set_backend`, then ``PYLSTM_BACKEND``,
    then ``"rust"``. Raises ``pylstm.BackendError`` for an unknown name.
    """
    if name is not None and not isinstance(name, str):
        return _configure(name, _normalise_providers(providers)) if providers else name
    if name is not None:
        bname, provs = parse_selection(name, providers)
    else:
        bname, provs, _ = current_selection()
        if providers is not None:
            provs = _normalise_providers(providers)
    if bname == DEFAULT_BACKEND and not provs:
        # The built-in engine always wins its name (built-ins register first), so the common
        # case skips the plugin registry: this runs on every forward call.
        return _RUST
    return _configure(_lookup(bname), provs)


def backends() -> list[BackendInfo]:
    """Every registered backend with its availability and devices / execution providers."""
    out = []
    for name, (backend, plugin) in sorted(_registry().items()):
        try:
            ok = bool(backend.available())
            err = "" if ok else _unavailable_reason(backend)
            devs = list(backend.devices()) if ok else []
        except Exception as exc:  # a broken plugin must not break the listing
            ok, devs, err = False, [], f"{type(exc).__name__}: {exc}"
        out.append(BackendInfo(name=name, available=ok, devices=devs, plugin=plugin, error=err))
    return out


def _unavailable_reason(backend: Any) -> str:
    reason = getattr(backend, "unavailable_reason", None)
    if callable(reason):
        try:
            return str(reason())
        except Exception as exc:  # pragma: no cover
            return f"{type(exc).__name__}: {exc}"
    return ""


def _configure(backend: Backend, providers: tuple[str, ...] | None) -> Backend:
    if not providers:
        return backend
    with_providers = getattr(backend, "with_providers", None)
    if with_providers is None:
        raise backend_error(
            f"backend {backend.name!r} takes no execution providers, got {list(providers)}"
        )
    return with_providers(list(providers))


# --------------------------------------------------------------------------- registry

_cache: dict[str, tuple[Backend, str]] | None = None
_cache_key: Any = None


def _plugin_manager() -> Any:
    """The pylstm plugin manager (``pylstm.plugins``), or a private one with the built-ins."""
    plugins: types.ModuleType | None
    try:
        from pylstm import plugins
    except ImportError:
        plugins = None
    if plugins is not None:
        for attr in ("get_plugin_manager", "plugin_manager"):
            fn = getattr(plugins, attr, None)
            if callable(fn):
                return fn()
        pm = getattr(plugins, "pm", None)
        if pm is not None:
            return pm
    return _private_plugin_manager()


_private_pm: Any = None


def _private_plugin_manager() -> Any:
    global _private_pm
    if _private_pm is None:
        import pluggy

        from pylstm import hookspecs
        from pylstm.backends import onnxruntime_backend, rust_backend

        pm = pluggy.PluginManager("pylstm")
        pm.add_hookspecs(hookspecs)
        pm.register(rust_backend, name="pylstm.backends.rust_backend")
        pm.register(onnxruntime_backend, name="pylstm.backends.onnxruntime_backend")
        _private_pm = pm
    return _private_pm


def _registry() -> dict[str, tuple[Backend, str]]:
    """Collect backends from the ``register_backends`` hook; cached per set of plugins."""
    global _cache, _cache_key
    pm = _plugin_manager()
    key = (id(pm), frozenset(id(p) for p in pm.get_plugins()))
    with _lock:
        if _cache is not None and key == _cache_key:
            return _cache
        found: dict[str, tuple[Backend, str]] = {}
        current_plugin = [""]

        def register(backend: Backend) -> None:
            missing = [
                a for a in ("name", "available", "devices", "lstm", "run_module")
                if not hasattr(backend, a)
            ]
            if missing:
                raise TypeError(
                    f"register_backends: {backend!r} lacks {', '.join(missing)} "
                    "(see pylstm.backends.Backend)"
                )
            name = str(backend.name).lower()
            if name in found:
                warnings.warn(
                    f"backend {name!r} registered twice (plugins {found[name][1]!r} and "
                    f"{current_plugin[0]!r}); keeping the first",
                    RuntimeWarning,
                    stacklevel=2,
                )
                return
            found[name] = (backend, current_plugin[0])

        # call each implementation separately (in registration order, so the built-ins listed
        # first in DEFAULT_PLUGINS win a name clash) to know which plugin registered what
        for impl in pm.hook.register_backends.get_hookimpls():
            current_plugin[0] = impl.plugin_name
            impl.function(register=register)
        _cache, _cache_key = found, key
        return found


def _lookup(name: str) -> Backend:
    reg = _registry()
    if name not in reg:
        known = ", ".join(sorted(reg)) or "none"
        raise backend_error(f"backend: unknown backend {name!r} (registered: {known})")
    return reg[name][0]


def _builtin_rust() -> Backend:
    from pylstm.backends.rust_backend import RustBackend

    return RustBackend()


_RUST: Backend = _builtin_rust()
