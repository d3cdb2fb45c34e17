"""pluggy entry point of the forecasting plugin (``[project.entry-points.pylstm]``)."""

from __future__ import annotations

from typing import Any

from pylstm.hookspecs import hookimpl

from .task import ForecastingTask


@hookimpl
def register_tasks(register: Any) -> None:
    """Register the ``forecasting`` task."""
    register(ForecastingTask())
