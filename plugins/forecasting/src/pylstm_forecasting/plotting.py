"""Forecast plots (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["plot_forecasts"]


def plot_forecasts(
    path: Path,
    time: np.ndarray,
    values: np.ndarray,
    start: int,
    origins: list[int],
    forecasts: dict[str, np.ndarray],
    interval: tuple[np.ndarray, np.ndarray] | None,
    title: str,
    future_time: np.ndarray | None = None,
) -> Path:
    """Plot ``values[start:]`` against ``time`` and, for each origin, every model's forecast.

    ``forecasts[name]`` is ``[len(origins), horizon]``; ``interval`` is the LSTM's
    ``(lower, upper)`` of the same shape, drawn as a band. With ``future_time`` (``horizon``
    timestamps after the end of the series) a single origin at ``len(values)`` is drawn there.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 4.5))
    ax.plot(time[start:], values[start:], color="black", lw=1.0, label="actual")
    styles = {"lstm": ("tab:blue", "-", 1.8), "seasonal_naive": ("tab:orange", ":", 1.2),
              "ets": ("tab:green", "--", 1.2)}
    for k, origin in enumerate(origins):
        if future_time is not None:
            t = future_time
        else:
            h = next(iter(forecasts.values())).shape[1]
            t = time[origin : origin + h]
        if interval is not None:
            ax.fill_between(t, interval[0][k], interval[1][k], color="tab:blue", alpha=0.2,
                            lw=0, label="lstm interval" if k == 0 else None)
        for name, fc in forecasts.items():
            color, ls, lw = styles.get(name, ("tab:red", "-.", 1.2))
            ax.plot(t, fc[k], color=color, ls=ls, lw=lw, label=name if k == 0 else None)
        ax.axvline(t[0], color="grey", lw=0.5, alpha=0.5)
    ax.set_title(title)
    ax.legend(loc="upper left", fontsize=8)
    ax.grid(alpha=0.3)
    fig.autofmt_xdate()
    fig.tight_layout()
    fig.savefig(path, dpi=110, format="png")  # the run writes to a temporary name
    plt.close(fig)
    return path
