"""The trained forecaster as an application uses it: ``pylstm.load(run).forecast(series)``.

:class:`Forecaster` holds the network in evaluation mode and never changes state when it
predicts, so any number of threads may call it at once.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from pylstm.errors import ShapeError
from pylstm.runs import Run

from .model import ForecasterConfig, ForecastNet
from .options import ForecastingOptions

__all__ = ["Forecaster", "MODEL"]

MODEL = "model"
"""The run's weights and config: ``model.safetensors`` and ``model.json``."""


class Forecaster:
    """A trained LSTM forecaster (what ``pylstm.load`` returns for a forecasting run).

    Attributes:
        config: the network's :class:`ForecasterConfig` (window, horizon, quantiles, scaling).
        options: the options the run was trained with (``None`` for a bare model).
    """

    def __init__(self, net: ForecastNet, options: ForecastingOptions | None = None) -> None:
        self.net = net.eval()
        self.config: ForecasterConfig = net.cfg
        self.options = options

    @property
    def quantiles(self) -> list[float]:
        """The quantile of each output column; 0.5 is the point forecast."""
        return list(self.config.quantiles)

    @property
    def window(self) -> int:
        """Values of history each forecast reads."""
        return self.config.window

    @property
    def horizon(self) -> int:
        """Steps each forecast covers."""
        return self.config.horizon

    def predict(self, raw_windows: Any, batch_size: int = 512) -> np.ndarray:
        """Forecasts ``[N, horizon, Q]`` in data units for raw windows ``[N, window, 1 + C]``
        (target first, then the covariates the model was trained with)."""
        cfg = self.config
        raw = np.asarray(raw_windows, np.float64)
        if raw.ndim != 3 or raw.shape[1:] != (cfg.window, 1 + cfg.n_covariates):
            raise ShapeError(f"raw_windows: expected shape [N, {cfg.window}, "
                             f"{1 + cfg.n_covariates}] (window, target + covariates), got "
                             f"{list(raw.shape)}")
        if not np.isfinite(raw).all():
            raise ShapeError("raw_windows: expected finite values, got NaN or infinity")
        outs = [self.net(self.net.features(raw[i:i + batch_size]))
                for i in range(0, len(raw), batch_size)]
        out = np.concatenate(outs, axis=0) if outs else np.zeros(
            (0, cfg.horizon, len(cfg.quantiles)), np.float32)
        return self.net.to_raw(raw, out)

    def forecast(self, series: Any) -> np.ndarray:
        """``[horizon, Q]``: the next ``horizon`` values after ``series`` (``[n, 1 + C]``, or
        ``[n]`` for a model without covariates), from its last ``window`` rows."""
        values = np.asarray(series, np.float64)
        if values.ndim == 1:
            values = values[:, None]
        if values.ndim != 2 or len(values) < self.window:
            raise ShapeError(f"series: expected at least {self.window} rows of "
                             f"{1 + self.config.n_covariates} values, got shape "
                             f"{list(values.shape)}")
        return self.predict(values[None, -self.window:])[0]

    # ------------------------------------------------------------------ run folder
    def save(self, run: Run) -> None:
        """Weights and config into ``run`` (``model.safetensors`` + ``model.json``)."""
        run.save_tensors(MODEL, self.net.state_dict(), config=self.config.to_json())

    @classmethod
    def load(cls, run: Run, options: ForecastingOptions | None = None) -> Forecaster:
        """Rebuild from ``run``: digests checked, the config validated, then the weights."""
        tensors, config = run.load_tensors(MODEL)
        cfg = ForecasterConfig.from_json(config, str(run.file(MODEL + ".json")))
        net = ForecastNet(cfg)
        net.load_state_dict(tensors)
        return cls(net, options)
