"""pluggy entry point of the captioning plugin (``[project.entry-points.pylstm]``)."""

from __future__ import annotations

from typing import Any

from pylstm.hookspecs import hookimpl

from .task import CaptioningTask


@hookimpl
def register_tasks(register: Any) -> None:
    """Register the ``captioning`` task."""
    register(CaptioningTask())
