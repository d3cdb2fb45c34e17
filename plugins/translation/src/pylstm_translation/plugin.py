"""pluggy entry point of the translation plugin (``[project.entry-points.pylstm]``)."""

from __future__ import annotations

from typing import Any

from pylstm.hookspecs import hookimpl

from .task import TranslationTask


@hookimpl
def register_tasks(register: Any) -> None:
    """Register the ``translation`` task."""
    register(TranslationTask())
