"""pluggy entry point of the dmn plugin (``[project.entry-points.pylstm]``)."""

from __future__ import annotations

from typing import Any

from pylstm.hookspecs import hookimpl

from .task import DMNTask


@hookimpl
def register_tasks(register: Any) -> None:
    """Register the ``dmn`` task."""
    register(DMNTask())
