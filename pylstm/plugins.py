"""Plugin manager, task protocol and run context (modelled on simonw/llm's plugin system).

Loading
-------
One :class:`pluggy.PluginManager` (project name ``"pylstm"``, hooks in :mod:`pylstm.hookspecs`)
is built lazily by :func:`get_plugin_manager` on first use:

1. the built-in modules of :data:`DEFAULT_PLUGINS`, imported and registered under their module
   name exactly as a third-party plugin is (first, so they win a backend-name clash);
2. third-party plugins from the ``pylstm`` entry-point group
   (``pm.load_setuptools_entrypoints("pylstm")``), restricted by ``PYLSTM_PLUGINS``;
3. ``pm.check_pending()``, so a misspelled hook name (``register_task``) fails loudly.

``PYLSTM_PLUGINS`` (environment variable):

* unset: every installed entry-point plugin is loaded;
* ``""`` (set but empty): no third-party plugin is loaded, only the built-ins;
* ``"forecasting,pylstm-plugin-example"``: only entry points whose entry-point name or
  distribution name is in the comma-separated list (names compared case-insensitively, with
  ``_`` and ``-`` equivalent). A listed name that matches nothing prints a warning on stderr.

Built-in plugins (:data:`DEFAULT_PLUGINS`) always load.

Tasks
-----
A task is the unit the ``pylstm`` CLI trains: see :class:`Task`. Plugins register task objects
through the ``register_tasks(register)`` hook; :func:`get_tasks` collects them.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import re
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import pluggy

from . import hookspecs

__all__ = [
    "DEFAULT_PLUGINS",
    "ENV_VAR",
    "PluginError",
    "TaskError",
    "Task",
    "RunContext",
    "EpochProgress",
    "pm",
    "get_plugin_manager",
    "load_plugins",
    "reset_plugins",
    "get_tasks",
    "get_backends",
    "list_plugins",
]

DEFAULT_PLUGINS: tuple[str, ...] = (
    "pylstm.backends.rust_backend",
    "pylstm.backends.onnxruntime_backend",
)
"""Built-in plugin modules, registered under their module name like third-party plugins."""

ENV_VAR = "PYLSTM_PLUGINS"
"""Environment variable restricting which entry-point plugins load (see module docstring)."""

ENTRY_POINT_GROUP = "pylstm"


class PluginError(RuntimeError):
    """A plugin misbehaved: duplicate task or backend name, invalid registered object."""


class TaskError(Exception):
    """A user-facing error raised by a task or a plugin command (bad data, bad option value).

    The CLI prints ``pylstm: error: <message>`` on one line and exits with status 1.
    """


pm = pluggy.PluginManager("pylstm")
"""The process-wide plugin manager. Use :func:`get_plugin_manager` to get it loaded."""
pm.add_hookspecs(hookspecs)

_lock = threading.RLock()
_loaded = False
_loading = False


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name.strip()).lower()


def _load_entrypoints(manager: pluggy.PluginManager, restrict: str | None) -> None:
    if restrict is None:
        manager.load_setuptools_entrypoints(ENTRY_POINT_GROUP)
        return
    wanted = {_norm(n) for n in restrict.split(",") if n.strip()}
    if not wanted:
        return
    found: set[str] = set()
    names: list[str] = []
    for dist in metadata.distributions():
        dist_name = _norm(dist.metadata["name"] or "")
        for ep in dist.entry_points:
            if ep.group != ENTRY_POINT_GROUP:
                continue
            for key in (_norm(ep.name), dist_name):
                if key in wanted:
                    found.add(key)
                    names.append(ep.name)
    for name in dict.fromkeys(names):
        manager.load_setuptools_entrypoints(ENTRY_POINT_GROUP, name=name)
    for missing in sorted(wanted - found):
        sys.stderr.write(f"pylstm: warning: plugin {missing!r} named in {ENV_VAR} was not found\n")


def load_plugins() -> pluggy.PluginManager:
    """Load entry-point plugins and :data:`DEFAULT_PLUGINS` into :data:`pm` once; return it.

    Raises :class:`pluggy.PluginValidationError` when a plugin implements a hook that does not
    exist (``check_pending``) or implements one with the wrong arguments.
    """
    global _loaded, _loading
    with _lock:
        if _loaded or _loading:
            return pm
        _loading = True
        try:
            # built-ins first: where names clash (a backend called "rust") they come first
            for module_name in DEFAULT_PLUGINS:
                if pm.get_plugin(module_name) is None:
                    pm.register(importlib.import_module(module_name), name=module_name)
            _load_entrypoints(pm, os.environ.get(ENV_VAR))
            pm.check_pending()
            _loaded = True
        finally:
            _loading = False
    return pm


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
        _loaded = False


def _plugin_version(plugin: object, distinfo: dict[object, Any]) -> str | None:
    dist = distinfo.get(plugin)
    if dist is not None:
        return str(dist.version)
    try:
        return metadata.version("pylstm")
    except metadata.PackageNotFoundError:
        return getattr(sys.modules.get("pylstm"), "__version__", None)


def list_plugins(all: bool = True) -> list[dict[str, Any]]:
    """Describe loaded plugins: ``[{"name", "version", "hooks", "builtin"}, ...]``.

    ``name`` is the distribution name for entry-point plugins and the module name for
    built-ins; ``hooks`` lists the hook names the plugin implements. With ``all=False`` the
    built-ins (:data:`DEFAULT_PLUGINS`) are left out, as ``llm plugins`` does.
    """
    manager = get_plugin_manager()
    distinfo = dict(manager.list_plugin_distinfo())
    out: list[dict[str, Any]] = []
    for plugin in manager.get_plugins():
        reg_name = manager.get_name(plugin) or getattr(plugin, "__name__", repr(plugin))
        builtin = reg_name in DEFAULT_PLUGINS
        if builtin and not all:
            continue
        dist = distinfo.get(plugin)
        name = dist.metadata["name"] if dist is not None else reg_name
        hooks = sorted(h.name for h in (manager.get_hookcallers(plugin) or []))
        out.append(
            {
                "name": name,
                "version": _plugin_version(plugin, distinfo),
                "hooks": hooks,
                "builtin": builtin,
            }
        )
    return sorted(out, key=lambda d: (d["builtin"], d["name"]))


def get_tasks() -> dict[str, Task]:
    """Collect tasks from every plugin's ``register_tasks`` hook, keyed by ``task.name``."""
    tasks: dict[str, Task] = {}

    def register(task: Task) -> None:
        name = getattr(task, "name", None)
        if not isinstance(name, str) or not name:
            raise PluginError(f"register_tasks: task {task!r} has no string 'name'")
        missing = [m for m in _TASK_METHODS if not callable(getattr(task, m, None))]
        if missing:
            raise PluginError(f"register_tasks: task {name!r} lacks {', '.join(missing)}")
        if name in tasks:
            raise PluginError(f"register_tasks: two plugins register a task named {name!r}")
        tasks[name] = task

    get_plugin_manager().hook.register_tasks(register=register)
    return dict(sorted(tasks.items()))


def get_backends() -> dict[str, Any]:
    """Collect backends from every plugin's ``register_backends`` hook, keyed by name."""
    backends: dict[str, Any] = {}

    def register(backend: Any) -> None:
        name = getattr(backend, "name", None)
        if not isinstance(name, str) or not name:
            raise PluginError(f"register_backends: backend {backend!r} has no string 'name'")
        if name in backends:
            raise PluginError(f"register_backends: two plugins register a backend named {name!r}")
        backends[name] = backend

    get_plugin_manager().hook.register_backends(register=register)
    return backends


# --------------------------------------------------------------------------------------------
# Task protocol and run context


_TASK_METHODS = ("add_arguments", "train", "evaluate", "predict", "export_onnx")


@runtime_checkable
class Task(Protocol):
    """What a task plugin implements. One object per task; register it with ``register_tasks``.

    The CLI maps sub-commands to methods:

    ``pylstm train NAME [options]``
        ``add_arguments(parser)`` adds the task's options (defaults must be JSON-serialisable:
        they are saved in ``config.json``); ``train(args, ctx)`` loads the data, trains, saves
        everything it needs later (weights, scalers) into ``ctx.out_dir`` and returns metrics.
    ``pylstm evaluate RUN_DIR [options]``
        ``evaluate(args, ctx)`` reloads the model from ``ctx.run_dir`` and returns metrics.
    ``pylstm predict RUN_DIR [options]``
        ``predict(args, ctx)`` returns the prediction as JSON-serialisable data; a ``dict`` of
        equal-length lists prints as a table.
    ``pylstm export RUN_DIR [-o FILE]``
        ``export_onnx(args, ctx, path)`` writes an ONNX model that onnxruntime runs to the same
        numbers as ``predict``, and returns the path.

    For evaluate/predict/export, ``args`` holds the options saved at training time in
    ``RUN_DIR/config.json``, overridden by any given on the command line.

    Metrics are JSON-serialisable: either flat ``{"mae": 0.3}`` or one row per model
    ``{"lstm": {"mae": 0.3}, "naive": {"mae": 0.5}}``; the CLI prints them as a table and writes
    ``metrics.json``. Raise :class:`TaskError` for user errors (missing file, bad column).
    """

    name: str
    description: str

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        """Add task options to ``parser`` (shared by train, evaluate, predict and export)."""
        ...

    def train(self, args: argparse.Namespace, ctx: RunContext) -> dict[str, Any]:
        """Train, save the model into ``ctx.out_dir``, return metrics."""
        ...

    def evaluate(self, args: argparse.Namespace, ctx: RunContext) -> dict[str, Any]:
        """Evaluate the model saved in ``ctx.run_dir``; return metrics."""
        ...

    def predict(self, args: argparse.Namespace, ctx: RunContext) -> Any:
        """Predict with the model saved in ``ctx.run_dir``; return JSON-serialisable data."""
        ...

    def export_onnx(self, args: argparse.Namespace, ctx: RunContext, path: Path) -> Path:
        """Write the model in ``ctx.run_dir`` as ONNX to ``path``; return the path."""
        ...


@dataclass
class EpochProgress:
    """Progress reporter handed out by :meth:`RunContext.progress`.

    Call :meth:`update` once per epoch with the metrics to show (``loss=..., val_mae=...``);
    every call is also appended to :attr:`RunContext.history`.
    """

    total: int
    history: list[dict[str, float]]
    _bar: Any = None
    _task_id: Any = None
    _start: float = field(default_factory=time.perf_counter)
    _plain: bool = False
    _stream: Any = None

    def update(self, epoch: int | None = None, **metrics: float) -> None:
        """Record one finished epoch (``epoch`` defaults to the next number) and show it."""
        epoch = len(self.history) + 1 if epoch is None else int(epoch)
        row = {"epoch": float(epoch), **{k: float(v) for k, v in metrics.items()}}
        row["time_s"] = time.perf_counter() - self._start
        self.history.append(row)
        text = "  ".join(f"{k} {v:.4g}" for k, v in metrics.items())
        if self._bar is not None:
            self._bar.update(self._task_id, completed=epoch, metrics=text)
        elif self._plain and self._stream is not None:
            eta = row["time_s"] / epoch * (self.total - epoch) if epoch else 0.0
            self._stream.write(f"epoch {epoch}/{self.total}  {text}  eta {eta:.0f}s\n")
            self._stream.flush()


@dataclass
class RunContext:
    """What the CLI hands a task: where to write, global options, console helpers.

    Attributes:
        out_dir: folder the command writes into (created by the CLI).
        run_dir: the trained run being used (evaluate/predict/export), ``None`` for train.
        seed: random seed (``--seed``, default 0).
        backend: ``--backend`` value or ``None`` for the default.
        threads: ``--threads`` value or ``None`` for the default.
        quiet: no progress bars or tables (``-q``).
        history: per-epoch rows recorded by :meth:`progress`; the CLI saves them as
            ``history.json`` and plots them as ``loss.png``.
    """

    out_dir: Path
    run_dir: Path | None = None
    seed: int = 0
    backend: str | None = None
    threads: int | None = None
    quiet: bool = False
    history: list[dict[str, float]] = field(default_factory=list)

    def log(self, message: str) -> None:
        """Print a status line on stderr (suppressed by ``-q``)."""
        if not self.quiet:
            sys.stderr.write(message + "\n")
            sys.stderr.flush()

    @contextmanager
    def progress(self, total: int, description: str = "training") -> Iterator[EpochProgress]:
        """Show a progress bar over ``total`` epochs (epoch, metrics, ETA) on stderr."""
        reporter = EpochProgress(total=total, history=self.history)
        if self.quiet:
            yield reporter
            return
        try:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )
        except ImportError:  # rich is optional: plain lines instead
            reporter._plain, reporter._stream = True, sys.stderr
            yield reporter
            return
        console = Console(stderr=True)
        columns = (
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TextColumn("epoch"),
            MofNCompleteColumn(),
            TextColumn("{task.fields[metrics]}"),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
        )
        with Progress(*columns, console=console, transient=False) as bar:
            reporter._bar = bar
            reporter._task_id = bar.add_task(description, total=total, metrics="")
            yield reporter

    def write_json(self, name: str, data: Any) -> Path:
        """Write ``data`` as indented JSON to ``out_dir / name``; return the path."""
        path = self.out_dir / name
        path.write_text(json.dumps(data, indent=2, default=_json_default) + "\n")
        return path


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
