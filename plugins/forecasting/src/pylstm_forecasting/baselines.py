"""Baseline forecasters evaluated on the same held-out origins as the LSTM."""

from __future__ import annotations

import warnings

import numpy as np

__all__ = ["seasonal_naive", "exponential_smoothing"]


def seasonal_naive(history: np.ndarray, horizon: int, season: int) -> np.ndarray:
    """Repeat the last observed season: ``f[k] = y[n - m + (k mod m)]`` (naive when m = 1)."""
    y = np.asarray(history, np.float64)
    m = season if 1 <= season <= len(y) else 1
    last = y[len(y) - m :]
    return np.array([last[k % m] for k in range(horizon)])


def exponential_smoothing(history: np.ndarray, horizon: int, season: int,
                          max_seasons: int = 30) -> np.ndarray:
    """Holt-Winters (statsmodels ``ExponentialSmoothing``): additive damped trend, additive
    season when at least two full seasons are available; fitted on the last ``max_seasons``
    seasons (at least 100 points) of ``history``."""
    from statsmodels.tsa.holtwinters import ExponentialSmoothing

    y = np.asarray(history, np.float64)
    keep = max(100, max_seasons * max(season, 1))
    y = y[-keep:]
    seasonal = "add" if season >= 2 and len(y) >= 2 * season + 2 else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            model = ExponentialSmoothing(
                y, trend="add", damped_trend=True, seasonal=seasonal,
                seasonal_periods=season if seasonal else None, initialization_method="estimated",
            )
            fc = np.asarray(model.fit().forecast(horizon), np.float64)
        except (ValueError, np.linalg.LinAlgError):
            fc = np.full(horizon, np.nan)
    if not np.all(np.isfinite(fc)):  # fall back to simple exponential smoothing
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = ExponentialSmoothing(y, initialization_method="estimated")
            fc = np.asarray(model.fit().forecast(horizon), np.float64)
    return fc
