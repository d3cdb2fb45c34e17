"""Plugins (modelled on simonw/llm): the plugin manager, the task protocol and :func:`load`.

* :mod:`pylstm.plugins.manager` loads the built-in and entry-point plugins (``PYLSTM_PLUGINS``
  restricts them), sets a broken one aside with the reason (:func:`plugin_errors`) and
  collects the registered tasks.
* :mod:`pylstm.plugins.task` is the protocol a task implements (:class:`Task`) and what the
  CLI hands it (:class:`RunContext`).
* :mod:`pylstm.plugins.options` turns a task's options dataclass into command-line flags and
  checks the JSON saved in ``run.json``.
* :func:`load` gives an application the predictor of a trained run, with no CLI involved.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pylstm.plugins.manager import (
    DEFAULT_PLUGINS,
    ENTRY_POINT_GROUP,
    ENV_VAR,
    PluginError,
    check_plugins,
    failed_plugins,
    get_plugin_manager,
    get_task,
    get_tasks,
    list_plugins,
    load_plugins,
    plugin_errors,
    plugin_label,
    pm,
    reset_plugins,
)
from pylstm.plugins.options import (
    OptionSpec,
    option_specs,
    options_from_dict,
    options_to_dict,
    run_options,
)
from pylstm.plugins.task import EpochProgress, RunContext, Task, TaskError

__all__ = [
    "DEFAULT_PLUGINS",
    "ENTRY_POINT_GROUP",
    "ENV_VAR",
    "EpochProgress",
    "OptionSpec",
    "PluginError",
    "RunContext",
    "Task",
    "TaskError",
    "check_plugins",
    "failed_plugins",
    "get_plugin_manager",
    "get_task",
    "get_tasks",
    "list_plugins",
    "load",
    "load_plugins",
    "option_specs",
    "options_from_dict",
    "options_to_dict",
    "plugin_errors",
    "plugin_label",
    "pm",
    "reset_plugins",
    "run_options",
]


def load(run_dir: str | os.PathLike[str]) -> Any:
    """The predictor of a complete training run: ``Run.open(run_dir)`` then the task's ``load``.

    >>> forecaster = pylstm.load("runs/co2")
    >>> forecaster.forecast(series)

    Raises ``pylstm.CheckpointError`` for a folder that is not a complete run (saying how to
    resume an interrupted one) and :class:`TaskError` when no installed plugin has its task.
    """
    from pylstm.runs import Run  # the toolkit's run folder (imported when a run is opened)

    run = Run.open(Path(run_dir))
    return get_task(run.task).load(run)
