"""Hook specifications for pylstm plugins (pluggy project name ``"pylstm"``).

A plugin is a Python module (or any object) with functions decorated by :data:`hookimpl`.
Built-in plugins are listed in :data:`pylstm.plugins.DEFAULT_PLUGINS`; third-party plugins
are found through the ``pylstm`` entry-point group::

    # pyproject.toml of a plugin distribution
    [project.entry-points.pylstm]
    myplugin = "my_package.plugin"

    # my_package/plugin.py
    from pylstm.hookspecs import hookimpl

    @hookimpl
    def register_tasks(register):
        register(MyTask())

Every hook receives a callback or a registry rather than returning values, as in simonw/llm,
so one implementation may register any number of things. A plugin whose import or hooks fail
is set aside with the reason (:func:`pylstm.plugins.plugin_errors`); it never breaks the
others, and the built-in backends never wait on plugins.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pluggy

hookspec = pluggy.HookspecMarker("pylstm")
"""Marker for hook specifications (used only in this module)."""

hookimpl = pluggy.HookimplMarker("pylstm")
"""Marker plugins use on their hook implementations: ``@hookimpl def register_tasks(...)``."""


@hookspec
def register_tasks(register: Callable[[Any], None]) -> None:
    """Register tasks, e.g. ``register(ForecastingTask())``.

    A task is an object following :class:`pylstm.plugins.Task` (``name``, ``description``,
    the ``Options`` and ``PredictOptions`` dataclasses, ``train``, ``load``, ``evaluate``,
    ``predict``, ``export_onnx``). Task names are unique across the loaded plugins: an invalid
    task or a second one with a taken name is left out and reported by
    :func:`pylstm.plugins.plugin_errors`, naming the plugin.
    """


@hookspec
def register_commands(cli: Any) -> None:
    """Add sub-commands to the ``pylstm`` command line.

    ``cli`` is the :class:`argparse` sub-parsers object of the ``pylstm`` parser (the value
    returned by ``parser.add_subparsers()``). Add a command and set its handler with
    ``func``; the handler receives the parsed :class:`argparse.Namespace` and returns an exit
    code (``None`` means 0)::

        @hookimpl
        def register_commands(cli):
            p = cli.add_parser("hello", help="say hello")
            p.add_argument("--name", default="world")
            p.set_defaults(func=lambda args: print(f"hello {args.name}"))

    Raise :class:`pylstm.plugins.TaskError` for a user error: the CLI prints it as one line
    on stderr and exits with status 1. The command should be a thin layer over objects an
    application can use too (as ``pylstm predict`` is over :func:`pylstm.load`).
    """


@hookspec
def register_backends(register: Callable[[Any], None]) -> None:
    """Register compute backends, e.g. ``register(RustBackend())``.

    A backend has ``name: str``, ``available() -> bool``, ``devices() -> list[str]``,
    ``lstm(**onnx_args)`` and ``run_module(module, x, hx, lengths)``; see
    ``docs/ARCHITECTURE.md`` ("Backends") for the contract. A plugin's backends are looked up
    only for names that are not built in (``rust``, ``onnxruntime``), which a plugin cannot
    replace.
    """
