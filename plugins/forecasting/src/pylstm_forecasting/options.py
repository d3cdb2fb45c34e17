"""The forecasting task's options: ``pylstm train forecasting --...`` and ``pylstm predict``.

Each dataclass field is one flag (``test_windows`` -> ``--test-windows``); the values are saved
in the run's ``run.json`` and checked again when the run is opened.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pylstm.plugins import TaskError

__all__ = ["DatasetName", "ForecastRequest", "ForecastingOptions"]

DatasetName = Literal["co2", "sunspots", "stocks", "seattle-temps"]


def _help(text: str, group: str) -> dict[str, str]:
    return {"help": text, "group": group}


@dataclass
class ForecastingOptions:
    """What to forecast, how to split it, the network and its training."""

    # data
    dataset: DatasetName = field(default="co2", metadata=_help("embedded dataset", "data"))
    data: Path | None = field(default=None, metadata=_help("your own CSV file", "data"))
    time: str | None = field(default=None, metadata=_help("CSV time column", "data"))
    target: str | None = field(default=None, metadata=_help("CSV column to forecast", "data"))
    covariates: list[str] = field(default_factory=list, metadata=_help(
        "past covariate columns (CSV) or symbols (stocks)", "data"))
    symbol: str | None = field(default=None, metadata=_help(
        "stocks: the symbol to forecast (AAPL)", "data"))
    season: int | None = field(default=None, metadata=_help(
        "season length (none: the dataset's, or from the time spacing)", "data"))
    # split
    horizon: int | None = field(default=None, metadata=_help("steps to forecast", "split"))
    window: int | None = field(default=None, metadata=_help("input window length", "split"))
    test_windows: int = field(default=3, metadata=_help(
        "back-to-back horizons held out at the end", "split"))
    # model
    hidden: int = field(default=64, metadata=_help("LSTM hidden size", "model"))
    layers: int = field(default=2, metadata=_help("LSTM layers", "model"))
    dropout: float = field(default=0.0, metadata=_help("dropout between layers", "model"))
    quantiles: list[float] = field(default_factory=lambda: [0.1, 0.5, 0.9], metadata=_help(
        "quantiles to learn (0.5 is always added); the outer two give the interval", "model"))
    # training
    epochs: int = field(default=60, metadata=_help("epochs", "training"))
    batch_size: int = field(default=32, metadata=_help("batch size", "training"))
    lr: float = field(default=1e-2, metadata=_help("Adam learning rate", "training"))
    clip: float = field(default=1.0, metadata=_help("gradient-norm clip (0: off)", "training"))
    train_stride: int = field(default=1, metadata=_help(
        "use every k-th training window (faster)", "training"))
    time_budget: float = field(default=0.0, metadata=_help(
        "stop training after this many seconds (0: no limit)", "training"))

    def __post_init__(self) -> None:
        def need(ok: bool, name: str, what: str, value: object) -> None:
            if not ok:
                raise TaskError(f"--{name.replace('_', '-')}: expected {what}, got {value}")

        for name in ("horizon", "season"):
            v = getattr(self, name)
            need(v is None or v >= 1, name, "an integer >= 1", v)
        need(self.window is None or self.window >= 2, "window", "an integer >= 2", self.window)
        for name in ("test_windows", "hidden", "layers", "epochs", "batch_size", "train_stride"):
            need(getattr(self, name) >= 1, name, "an integer >= 1", getattr(self, name))
        need(math.isfinite(self.dropout) and 0 <= self.dropout < 1, "dropout",
             "a number in [0, 1)", self.dropout)
        need(math.isfinite(self.lr) and self.lr > 0, "lr", "a positive number", self.lr)
        need(math.isfinite(self.clip) and self.clip >= 0, "clip", "a number >= 0", self.clip)
        need(math.isfinite(self.time_budget) and self.time_budget >= 0, "time_budget",
             "a number >= 0", self.time_budget)
        need(bool(self.quantiles) and all(0 < q < 1 for q in self.quantiles), "quantiles",
             "numbers in (0, 1) such as 0.1,0.5,0.9",
             ",".join(f"{q:g}" for q in self.quantiles) or "nothing")
        if self.data is None and (self.time or self.target):
            raise TaskError("--time/--target need --data FILE.csv")

    def learned_quantiles(self) -> list[float]:
        """The quantiles the network learns: sorted, unique, 0.5 (the point forecast) added."""
        return sorted({float(q) for q in self.quantiles} | {0.5})


@dataclass
class ForecastRequest:
    """``pylstm predict RUN``: forecast one horizon past the end of a history."""

    input: Path | None = field(default=None, metadata={
        "help": "CSV with the recent history, in the columns the run was trained on (none: "
                "the training data)"})
    output: Path | None = field(default=None, metadata={
        "help": "also write the forecast to this JSON file"})
