"""How the CLI shows results: metric tables (rich when installed), predictions, the loss plot,
atomically written JSON."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

__all__ = ["jsonable", "plot_history", "print_metrics", "print_prediction", "write_json"]


def _console() -> Any:
    try:
        from rich.console import Console
    except ImportError:
        return None
    return Console(highlight=False)


def _fmt(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def _print_table(title: str, header: list[str], rows: list[list[str]]) -> None:
    console = _console()
    if console is None:
        print(title)
        for r in [header] + rows:
            print("  ".join(f"{c:>12}" for c in r))
        return
    from rich.table import Table

    table = Table(title=title)
    for i, h in enumerate(header):
        table.add_column(h, justify="left" if i == 0 else "right")
    for r in rows:
        table.add_row(*r)
    console.print(table)


def print_metrics(title: str, metrics: dict[str, Any]) -> None:
    """A table with a row per model when the values are dicts, else two columns."""
    if metrics and all(isinstance(v, dict) for v in metrics.values()):
        cols: list[str] = []
        for row in metrics.values():
            cols += [c for c in row if c not in cols]
        rows = [[name] + [_fmt(row.get(c, "")) for c in cols] for name, row in metrics.items()]
        _print_table(title, ["model", *cols], rows)
    else:
        _print_table(title, ["metric", "value"], [[k, _fmt(v)] for k, v in metrics.items()])


def jsonable(obj: Any) -> Any:
    if hasattr(obj, "tolist"):
        return obj.tolist()
    return str(obj)


def print_prediction(pred: Any, as_json: bool) -> None:
    columns = (isinstance(pred, dict) and pred
               and all(isinstance(v, list) for v in pred.values())
               and len({len(v) for v in pred.values()}) == 1)
    if isinstance(pred, str) and not as_json:  # a text answer (a translation) prints as is
        print(pred)
        return
    if as_json or not columns:
        print(json.dumps(pred, indent=2, default=jsonable))
        return
    keys = list(pred)
    _print_table("prediction", keys,
                 [[_fmt(pred[k][i]) for k in keys] for i in range(len(pred[keys[0]]))])


def plot_history(history: list[dict[str, float]], path: Path) -> None:
    """Per-epoch curves (every recorded number against the epoch) into ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [k for k in history[0] if k not in ("epoch", "time_s", "seconds", "lr")]
    fig, ax = plt.subplots(figsize=(7, 4))
    epochs = [h.get("epoch", i + 1) for i, h in enumerate(history)]
    for k in keys:
        ax.plot(epochs, [h.get(k, float("nan")) for h in history], label=k)
    ax.set_xlabel("epoch")
    positive = all(isinstance(h.get(k, 1), (int, float)) and h.get(k, 1) > 0
                   for h in history for k in keys)
    ax.set_yscale("log" if positive else "linear")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100, format="png")  # the run writes to a temporary name
    plt.close(fig)


def write_json(path: Path, data: Any) -> None:
    """Atomically: a temporary file in the same folder, then renamed over ``path``."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=2, default=jsonable) + "\n")
    os.replace(tmp, path)
