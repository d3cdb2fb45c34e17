"""Point and interval forecast metrics (numpy).

All take ``actual`` and ``forecast`` of the same shape (any shape; the mean runs over all).
"""

from __future__ import annotations

import numpy as np

__all__ = ["mae", "rmse", "smape", "mase", "mase_scale", "coverage", "point_metrics"]


def mae(actual: np.ndarray, forecast: np.ndarray) -> float:
    """Mean absolute error."""
    return float(np.mean(np.abs(np.asarray(actual) - np.asarray(forecast))))


def rmse(actual: np.ndarray, forecast: np.ndarray) -> float:
    """Root mean squared error."""
    return float(np.sqrt(np.mean((np.asarray(actual) - np.asarray(forecast)) ** 2)))


def smape(actual: np.ndarray, forecast: np.ndarray) -> float:
    """Symmetric MAPE in percent, ``200 * mean(|a - f| / (|a| + |f|))``; 0/0 terms count 0."""
    a, f = np.asarray(actual, np.float64), np.asarray(forecast, np.float64)
    den = np.abs(a) + np.abs(f)
    num = np.abs(a - f)
    ratio = np.divide(num, den, out=np.zeros_like(num), where=den > 0)
    return float(200.0 * np.mean(ratio))


def mase_scale(train: np.ndarray, season: int) -> float:
    """In-sample MAE of the seasonal-naive forecast (lag ``season``; lag 1 if too short)."""
    y = np.asarray(train, np.float64)
    m = season if 1 <= season < len(y) else 1
    scale = float(np.mean(np.abs(y[m:] - y[:-m])))
    return scale if scale > 0 else 1.0


def mase(actual: np.ndarray, forecast: np.ndarray, scale: float) -> float:
    """Mean absolute scaled error: ``mae / scale`` (scale from :func:`mase_scale`)."""
    return mae(actual, forecast) / scale


def coverage(actual: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> float:
    """Fraction of ``actual`` inside ``[lower, upper]``."""
    a = np.asarray(actual)
    return float(np.mean((a >= lower) & (a <= upper)))


def point_metrics(actual: np.ndarray, forecast: np.ndarray, scale: float) -> dict[str, float]:
    """``{"mae", "rmse", "smape", "mase"}``."""
    return {
        "mae": mae(actual, forecast),
        "rmse": rmse(actual, forecast),
        "smape": smape(actual, forecast),
        "mase": mase(actual, forecast, scale),
    }
