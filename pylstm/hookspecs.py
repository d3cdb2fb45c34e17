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
so one implementation may register any number of things.
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
    ``add_arguments``, ``train``, ``evaluate``, ``predict``, ``export_onnx``). Task names must be
    unique across all loaded plugins; a duplicate raises :class:`pylstm.plugins.PluginError`.
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
    on stderr and exits with status 1.
    """


@hookspec
def register_backends(register: Callable[[Any], None]) -> None:
    """Register compute backends, e.g. ``register(RustBackend())``.

    A backend has ``name: str``, ``available() -> bool``, ``devices() -> list[str]``,
    ``lstm(**onnx_args)`` and ``run_module(module, x, hx, lengths)``; see
    ``docs/ARCHITECTURE.md`` ("Backends") for the contract.
    """
