"""The plugin manager: loading built-in and entry-point plugins, listing them, the task registry.

One :class:`pluggy.PluginManager` (project name ``"pylstm"``, hooks in :mod:`pylstm.hookspecs`)
is built lazily by :func:`get_plugin_manager` on first use:

1. the built-in modules of :data:`DEFAULT_PLUGINS`, imported and registered under their module
   name exactly as a third-party plugin is;
2. third-party plugins from the ``pylstm`` entry-point group, one at a time, restricted by
   ``PYLSTM_PLUGINS``;
3. every plugin is checked for hooks that do not exist (what ``pm.check_pending()`` catches,
   e.g. a misspelled ``register_task``).

A plugin that raises on import, fails pluggy's validation, implements an unknown hook or
registers an invalid task is set aside: :func:`plugin_errors` says why and the CLI prints one
warning line. It never breaks the other plugins, and computing never loads plugins at all (the
built-in backends resolve without them, see :mod:`pylstm.backends`).

``PYLSTM_PLUGINS`` (environment variable):

* unset: every installed entry-point plugin is loaded;
* ``""`` (set but empty): no third-party plugin is loaded, only the built-ins;
* ``"forecasting,pylstm-plugin-example"``: only entry points whose entry-point name or
  distribution name is in the comma-separated list (names compared case-insensitively, with
  ``_`` and ``-`` equivalent). A listed name that matches nothing prints a warning on stderr.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import re
import sys
import threading
from importlib import metadata
from typing import Any

import pluggy

from pylstm import hookspecs
from pylstm.backends import BUILTIN_BACKEND_MODULES
from pylstm.errors import PylstmError
from pylstm.plugins.options import option_specs
from pylstm.plugins.task import Task, TaskError

__all__ = [
    "DEFAULT_PLUGINS",
    "ENTRY_POINT_GROUP",
    "ENV_VAR",
    "PluginError",
    "check_plugins",
    "failed_plugins",
    "get_plugin_manager",
    "get_task",
    "get_tasks",
    "list_plugins",
    "load_plugins",
    "plugin_errors",
    "plugin_label",
    "pm",
    "reset_plugins",
]


class PluginError(PylstmError, RuntimeError):
    """A plugin misbehaved: it failed to import or registered an invalid or duplicate object."""


DEFAULT_PLUGINS: tuple[str, ...] = BUILTIN_BACKEND_MODULES
"""Built-in plugin modules, registered under their module name like third-party plugins."""

ENV_VAR = "PYLSTM_PLUGINS"
"""Environment variable restricting which entry-point plugins load (see module docstring)."""

ENTRY_POINT_GROUP = "pylstm"
"""The entry-point group third-party plugins register in."""


pm = pluggy.PluginManager("pylstm")
"""The process-wide plugin manager. Use :func:`get_plugin_manager` to get it loaded."""
pm.add_hookspecs(hookspecs)

_lock = threading.RLock()
_loaded = False
_loading = False
_load_errors: dict[str, str] = {}
_task_errors: dict[str, str] = {}
_distributions: dict[str, metadata.Distribution] = {}  # registered name -> its distribution


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name.strip()).lower()


def _entry_points(restrict: str | None) -> list[tuple[metadata.EntryPoint, metadata.Distribution]]:
    """Entry points of the ``pylstm`` group, filtered by ``PYLSTM_PLUGINS``; one per name."""
    wanted = None if restrict is None else {_norm(n) for n in restrict.split(",") if n.strip()}
    found: set[str] = set()
    out: dict[str, tuple[metadata.EntryPoint, metadata.Distribution]] = {}
    for dist in metadata.distributions():
        dist_name = _norm(dist.metadata["name"] or "")
        for ep in dist.entry_points:
            if ep.group != ENTRY_POINT_GROUP or ep.name in out:
                continue
            if wanted is not None:
                hits = {_norm(ep.name), dist_name} & wanted
                if not hits:
                    continue
                found |= hits
            out[ep.name] = (ep, dist)
    for missing in sorted((wanted or set()) - found):
        sys.stderr.write(f"pylstm: warning: plugin {missing!r} named in {ENV_VAR} was not found\n")
    return list(out.values())


def _unknown_hooks(manager: pluggy.PluginManager, plugin: object) -> list[str]:
    """Hooks ``plugin`` implements that no spec declares (``check_pending`` for one plugin)."""
    names = []
    for caller in manager.get_hookcallers(plugin) or []:
        if caller.has_spec():
            continue
        if any(i.plugin is plugin and not i.optionalhook for i in caller.get_hookimpls()):
            names.append(caller.name)
    return sorted(names)


def _set_aside(manager: pluggy.PluginManager, name: str, message: str) -> None:
    plugin = manager.get_plugin(name)
    if plugin is not None:
        manager.unregister(plugin)
    _distributions.pop(name, None)
    _load_errors[name] = message


def _load_entry_point(ep: metadata.EntryPoint, dist: metadata.Distribution) -> None:
    label = dist.metadata["name"] or ep.name
    if pm.get_plugin(ep.name) is not None or pm.is_blocked(ep.name):
        return
    try:
        plugin = ep.load()
    except Exception as exc:  # a broken third-party plugin must not break the others
        _load_errors[label] = f"importing {ep.value!r} raised {type(exc).__name__}: {exc}"
        return
    try:
        pm.register(plugin, name=ep.name)
    except (pluggy.PluginValidationError, ValueError) as exc:
        _load_errors[label] = f"{type(exc).__name__}: {exc}"
        return
    _distributions[ep.name] = dist


def load_plugins() -> pluggy.PluginManager:
    """Load :data:`DEFAULT_PLUGINS` and the entry-point plugins into :data:`pm` once; return it.

    Never raises for a broken third-party plugin: see :func:`plugin_errors`.
    """
    global _loaded, _loading
    with _lock:
        if _loaded or _loading:
            return pm
        _loading = True
        try:
            for module_name in DEFAULT_PLUGINS:  # first: they win a name clash
                if pm.get_plugin(module_name) is None:
                    pm.register(importlib.import_module(module_name), name=module_name)
            for ep, dist in _entry_points(os.environ.get(ENV_VAR)):
                _load_entry_point(ep, dist)
            for plugin in list(pm.get_plugins()):
                unknown = _unknown_hooks(pm, plugin)
                if unknown:
                    name = pm.get_name(plugin) or repr(plugin)
                    label = _distributions[name].metadata["name"] if name in _distributions \
                        else name
                    _set_aside(pm, name, f"implements {', '.join(unknown)}, which is not a "
                               f"pylstm hook (hooks: {', '.join(_hook_names())})")
                    _load_errors[label] = _load_errors.pop(name)
            _loaded = True
        finally:
            _loading = False
    return pm


def _hook_names() -> list[str]:
    return sorted(n for n in dir(hookspecs) if hasattr(getattr(hookspecs, n), "pylstm_spec"))


def get_plugin_manager() -> pluggy.PluginManager:
    """Return the plugin manager, loading plugins on first call."""
    return load_plugins()


def reset_plugins() -> None:
    """Unregister every plugin so the next :func:`get_plugin_manager` loads afresh.

    Meant for tests (e.g. after changing ``PYLSTM_PLUGINS``).
    """
    global _loaded
    with _lock:
        for plugin in list(pm.get_plugins()):
            pm.unregister(plugin)
        _load_errors.clear()
        _task_errors.clear()
        _distributions.clear()
        _loaded = False


def failed_plugins() -> dict[str, str]:
    """``{plugin: why}`` for the plugins that did not load (import error, pluggy's validation,
    an unknown hook). Loads the plugins first."""
    get_plugin_manager()
    return dict(_load_errors)


def plugin_errors() -> dict[str, str]:
    """``{plugin: why}`` for every plugin set aside (import error, unknown hook, a task that
    could not be registered). Loads the plugins first."""
    get_tasks()  # task registrations are checked when collected
    return {**_load_errors, **_task_errors}


def plugin_label(registered_name: str) -> str:
    """How a registered plugin is named to users: its distribution's name for an entry-point
    plugin (as ``pylstm plugins`` lists it), else the name it was registered under."""
    dist = _distributions.get(registered_name)
    return dist.metadata["name"] if dist is not None else registered_name


def check_plugins() -> None:
    """Raise :class:`PluginError` naming every plugin that was set aside (``pylstm plugins
    --check``: for plugin authors and CI)."""
    errors = plugin_errors()
    if errors:
        raise PluginError("; ".join(f"plugin {p!r} not loaded: {e}"
                                    for p, e in sorted(errors.items())))


def _version_of(name: str) -> str | None:
    dist = _distributions.get(name)
    if dist is not None:
        return str(dist.version)
    try:
        return metadata.version("pylstm")
    except metadata.PackageNotFoundError:
        return getattr(sys.modules.get("pylstm"), "__version__", None)


def list_plugins(all: bool = True) -> list[dict[str, Any]]:
    """Describe plugins: ``[{"name", "version", "hooks", "builtin"}, ...]``, then one row
    ``{"name", "error"}`` per plugin that was set aside.

    ``name`` is the distribution name for entry-point plugins and the module name for
    built-ins; ``hooks`` lists the hook names the plugin implements. With ``all=False`` the
    built-ins (:data:`DEFAULT_PLUGINS`) are left out, as ``llm plugins`` does.
    """
    manager = get_plugin_manager()
    out: list[dict[str, Any]] = []
    for plugin in manager.get_plugins():
        reg_name = str(manager.get_name(plugin) or getattr(plugin, "__name__", repr(plugin)))
        builtin = reg_name in DEFAULT_PLUGINS
        if builtin and not all:
            continue
        out.append({
            "name": plugin_label(reg_name),
            "version": _version_of(reg_name),
            "hooks": sorted(h.name for h in (manager.get_hookcallers(plugin) or [])),
            "builtin": builtin,
        })
    out.sort(key=lambda d: (d["builtin"], d["name"]))
    out += [{"name": n, "error": e} for n, e in sorted(plugin_errors().items())]
    return out


# --------------------------------------------------------------------------------------------
# Tasks


_TASK_METHODS = ("train", "load", "evaluate", "predict", "export_onnx")

RESERVED_OPTION_NAMES = frozenset({"help", "resume", "json", "backend", "threads",
                                   "seed", "out", "quiet"})
"""Field names a task's options may not use: the CLI's own flags."""


def _task_problem(task: Any) -> str | None:
    """Why ``task`` does not follow :class:`Task`, or ``None``."""
    name = getattr(task, "name", None)
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name):
        return f"task {task!r}: expected a 'name' such as 'forecasting', got {name!r}"
    missing = [m for m in _TASK_METHODS if not callable(getattr(task, m, None))]
    if not isinstance(getattr(task, "description", None), str):
        missing.insert(0, "description")
    for attr in ("Options", "PredictOptions"):
        cls = getattr(task, attr, None)
        if not (isinstance(cls, type) and dataclasses.is_dataclass(cls)):
            missing.append(f"{attr} (a dataclass)")
    if missing:
        return f"task {name!r} lacks {', '.join(missing)} (see pylstm.plugins.Task)"
    for attr in ("Options", "PredictOptions"):
        try:
            specs = option_specs(getattr(task, attr))
        except TypeError as exc:
            return f"task {name!r}: {attr}: {exc}"
        clash = sorted({s.name for s in specs} & RESERVED_OPTION_NAMES)
        if clash:
            return (f"task {name!r}: {attr} field(s) {', '.join(clash)} clash with the CLI's "
                    f"own flags ({', '.join(sorted(RESERVED_OPTION_NAMES))})")
    return None


def get_tasks() -> dict[str, Task]:
    """Every registered task keyed by name. A registration that is invalid or repeats a name
    is left out and reported by :func:`plugin_errors` (naming the plugin)."""
    manager = get_plugin_manager()
    tasks: dict[str, Task] = {}
    owners: dict[str, str] = {}
    errors: dict[str, str] = {}
    for impl in manager.hook.register_tasks.get_hookimpls():
        plugin = impl.plugin_name
        label = plugin_label(plugin)

        def register(task: Any, plugin: str = plugin, label: str = label) -> None:
            problem = _task_problem(task)
            if problem is None and task.name in tasks:
                problem = f"task {task.name!r} is already registered by {owners[task.name]!r}"
            if problem is not None:
                errors[label] = f"register_tasks: {problem}"
                return
            tasks[task.name] = task
            owners[task.name] = label

        try:
            impl.function(register=register)
        except Exception as exc:
            errors[label] = f"register_tasks raised {type(exc).__name__}: {exc}"
    with _lock:
        _task_errors.clear()
        _task_errors.update(errors)
    return dict(sorted(tasks.items()))


def get_task(name: str) -> Task:
    """The task called ``name``; :class:`TaskError` naming the installed ones otherwise."""
    tasks = get_tasks()
    if name not in tasks:
        known = ", ".join(tasks) or "none"
        broken = plugin_errors()
        extra = "".join(f"; plugin {p!r} was not loaded ({e})" for p, e in sorted(broken.items()))
        raise TaskError(f"task: no plugin provides task {name!r} (installed: {known}){extra}")
    return tasks[name]
