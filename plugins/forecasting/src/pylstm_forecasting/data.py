"""Series loading (embedded offline datasets or a CSV), splitting and windowing.

Embedded datasets (no network):

``co2``            statsmodels, weekly Mauna Loa CO2 1958-2001 (2284 weeks, season 52)
``sunspots``       statsmodels, yearly sunspot numbers 1700-2008 (309 years, cycle ~11)
``stocks``         vega_datasets, monthly closing prices 2000-2010 (``--symbol``; the other
                   symbols can be covariates)
``seattle-temps``  vega_datasets, hourly Seattle temperatures 2010 (8759 hours, season 24)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pylstm.plugins import TaskError

__all__ = ["Series", "DATASETS", "load_series", "Split", "make_split", "windows", "future_times"]


@dataclass
class Series:
    """One univariate target with optional past covariates on a regular time axis."""

    name: str
    time: np.ndarray  # datetime64[ns] or float positions
    target: np.ndarray  # float64 [n]
    covariates: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))  # float64 [n, C]
    covariate_names: list[str] = field(default_factory=list)
    season: int = 1
    target_name: str = "y"

    def __post_init__(self) -> None:
        if self.covariates.size == 0:
            self.covariates = np.zeros((len(self.target), 0))

    def __len__(self) -> int:
        return len(self.target)

    def values(self) -> np.ndarray:
        """Target then covariates, ``[n, 1 + C]`` float64."""
        return np.column_stack([self.target, self.covariates])


@dataclass(frozen=True)
class DatasetInfo:
    """An embedded dataset with its natural season, horizon and input window."""

    loader: Callable[[str | None, list[str]], Series]
    season: int
    horizon: int
    window: int
    description: str


def _fill(y: np.ndarray, what: str) -> np.ndarray:
    """Linear interpolation of interior NaNs; edges take the nearest value."""
    y = np.asarray(y, dtype=np.float64)
    ok = np.isfinite(y)
    if ok.sum() < 2:
        raise TaskError(f"{what}: fewer than 2 numeric values")
    if not ok.all():
        idx = np.arange(len(y))
        y = np.interp(idx, idx[ok], y[ok])
    return y


def _co2(symbol: str | None, covariates: list[str]) -> Series:
    import statsmodels.api as sm

    df = sm.datasets.co2.load_pandas().data
    return Series("co2", df.index.values.astype("datetime64[ns]"),
                  _fill(df["co2"].to_numpy(), "co2"), season=52, target_name="co2")


def _sunspots(symbol: str | None, covariates: list[str]) -> Series:
    import statsmodels.api as sm

    df = sm.datasets.sunspots.load_pandas().data
    return Series("sunspots", df["YEAR"].to_numpy(np.float64),
                  _fill(df["SUNACTIVITY"].to_numpy(), "sunspots"), season=11,
                  target_name="sunactivity")


def _stocks(symbol: str | None, covariates: list[str]) -> Series:
    from vega_datasets import local_data

    df = local_data.stocks()
    wide = df.pivot(index="date", columns="symbol", values="price").sort_index()
    symbol = symbol or "AAPL"
    names = [str(c) for c in wide.columns]
    for s in [symbol, *covariates]:
        if s not in names:
            raise TaskError(f"stocks: unknown symbol {s!r} (symbols: {', '.join(names)})")
    wide = wide.dropna(subset=[symbol, *covariates])
    cov = wide[covariates].to_numpy(np.float64) if covariates else np.zeros((len(wide), 0))
    return Series(f"stocks-{symbol}", wide.index.values.astype("datetime64[ns]"),
                  wide[symbol].to_numpy(np.float64), cov, list(covariates), season=12,
                  target_name=symbol)


def _seattle(symbol: str | None, covariates: list[str]) -> Series:
    from vega_datasets import local_data

    df = local_data.seattle_temps().sort_values("date")
    return Series("seattle-temps", df["date"].to_numpy().astype("datetime64[ns]"),
                  _fill(df["temp"].to_numpy(), "temp"), season=24, target_name="temp")


DATASETS: dict[str, DatasetInfo] = {
    "co2": DatasetInfo(_co2, 52, 52, 104, "weekly Mauna Loa CO2, 1958-2001 (statsmodels)"),
    "sunspots": DatasetInfo(_sunspots, 11, 11, 44, "yearly sunspots, 1700-2008 (statsmodels)"),
    "stocks": DatasetInfo(_stocks, 12, 6, 24, "monthly stock prices 2000-2010 (vega_datasets)"),
    "seattle-temps": DatasetInfo(_seattle, 24, 24, 72,
                                 "hourly Seattle temperatures, 2010 (vega_datasets)"),
}


def _season_from_spacing(time: np.ndarray) -> int:
    if not np.issubdtype(time.dtype, np.datetime64) or len(time) < 3:
        return 1
    step = float(np.median(np.diff(time).astype("timedelta64[s]").astype(np.float64)))
    hour, day = 3600.0, 86400.0
    for seconds, season in ((hour, 24), (day, 7), (7 * day, 52), (30.4 * day, 12),
                            (91.3 * day, 4)):
        if abs(step - seconds) <= 0.1 * seconds:
            return season
    return 1


def load_csv(path: str | Path, time_col: str | None, target_col: str | None,
             covariates: list[str]) -> Series:
    """Read a CSV with a time column, a numeric target column and optional covariates."""
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise TaskError(f"--data: no such file: {path}")
    try:
        df = pd.read_csv(path)
    except (ValueError, UnicodeDecodeError, pd.errors.ParserError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise TaskError(f"--data: cannot parse {path} as CSV ({first})") from None
    if df.empty:
        raise TaskError(f"--data: {path} has no rows")
    cols = [str(c) for c in df.columns]
    if target_col is None:
        raise TaskError("--target: name the column to forecast (with --data)")
    for opt, col in (("--time", time_col), ("--target", target_col),
                     *(("--covariates", c) for c in covariates)):
        if col is not None and col not in cols:
            raise TaskError(f"{opt}: no column {col!r} in {path} (columns: {', '.join(cols)})")
    if target_col in covariates or (time_col is not None and time_col in covariates):
        raise TaskError("--covariates: must not include the --target or --time column")
    if time_col is not None:
        col = df[time_col]
        if pd.api.types.is_numeric_dtype(col):  # plain numbers (years, steps), not epoch ns
            t = pd.to_numeric(col)
            if t.isna().any():
                raise TaskError(f"--time: column {time_col!r} has missing values")
        else:
            t = pd.to_datetime(col, errors="coerce", format="mixed")
        if pd.api.types.is_numeric_dtype(col):
            pass
        elif t.isna().mean() > 0.5:  # not dates: accept numbers written as text
            num = pd.to_numeric(df[time_col], errors="coerce")
            if num.isna().any():
                raise TaskError(f"--time: column {time_col!r} holds neither dates nor numbers")
            t = num
        elif t.isna().any():
            raise TaskError(f"--time: column {time_col!r} has {int(t.isna().sum())} "
                            "unparseable values")
        df = df.assign(__t=t.to_numpy()).sort_values("__t").drop_duplicates("__t", keep="last")
        time = df["__t"].to_numpy()
        time = time.astype("datetime64[ns]") if np.issubdtype(time.dtype, np.datetime64) \
            else time.astype(np.float64)
    else:
        time = np.arange(len(df), dtype=np.float64)

    def numeric(col: str) -> np.ndarray:
        v = pd.to_numeric(df[col], errors="coerce").to_numpy(np.float64)
        bad = ~np.isfinite(v)
        if bad.mean() > 0.2:
            raise TaskError(f"column {col!r} in {path} is not numeric "
                            f"({int(bad.sum())} of {len(v)} values are not numbers)")
        return _fill(v, f"column {col!r}")

    y = numeric(target_col)
    cov = np.column_stack([numeric(c) for c in covariates]) if covariates else None
    return Series(path.stem, time, y, cov if cov is not None else np.zeros((len(y), 0)),
                  list(covariates), season=_season_from_spacing(time), target_name=target_col)


def load_series(dataset: str | None, data: str | Path | None, time_col: str | None,
                target_col: str | None, covariates: list[str], symbol: str | None) -> Series:
    """Load the CSV given by ``data`` or else the embedded ``dataset``."""
    if data:
        return load_csv(data, time_col, target_col, covariates)
    name = dataset or "co2"
    if name not in DATASETS:
        raise TaskError(f"--dataset: unknown dataset {name!r} (choose from {', '.join(DATASETS)})")
    if covariates and name != "stocks":
        raise TaskError(f"--covariates: dataset {name!r} has no covariates "
                        "(use --dataset stocks or a CSV)")
    return DATASETS[name].loader(symbol, covariates)


@dataclass(frozen=True)
class Split:
    """Where validation and the held-out tail start, and the held-out forecast origins.

    Training windows have their whole horizon before ``val_start``; validation origins run in
    ``[val_start, test_start - horizon]`` with stride 1; test origins cut the last
    ``n_test * horizon`` points into back-to-back horizons.
    """

    window: int
    horizon: int
    val_start: int
    test_start: int
    test_origins: tuple[int, ...]


def make_split(n: int, window: int, horizon: int, n_test: int) -> Split:
    """Split a series of length ``n``; raise :class:`TaskError` if it is too short."""
    test_start = n - n_test * horizon
    val_start = test_start - 2 * horizon
    # at least a few dozen training windows
    need = window + horizon + 16
    if val_start < need:
        raise TaskError(
            f"series too short: {n} points for --window {window}, --horizon {horizon} and "
            f"--test-windows {n_test} (need at least {need + (n_test + 2) * horizon})"
        )
    origins = tuple(test_start + k * horizon for k in range(n_test))
    return Split(window, horizon, val_start, test_start, origins)


def windows(values: np.ndarray, origins: np.ndarray, window: int,
            horizon: int | None) -> tuple[np.ndarray, np.ndarray | None]:
    """Input windows ``values[o-window:o]`` ``[N, window, F]`` and target
    ``values[o:o+horizon, 0]`` ``[N, horizon]`` (``None`` when ``horizon`` is ``None``)."""
    origins = np.asarray(origins, dtype=np.int64)
    idx = origins[:, None] + np.arange(-window, 0)[None, :]
    x = values[idx]
    if horizon is None:
        return x, None
    tidx = origins[:, None] + np.arange(horizon)[None, :]
    return x, values[tidx, 0]


def future_times(time: np.ndarray, steps: int) -> list[str]:
    """Timestamps of the ``steps`` points after the end of ``time`` (as strings)."""
    if np.issubdtype(time.dtype, np.datetime64) and len(time) >= 2:
        import pandas as pd

        idx = pd.DatetimeIndex(time)
        step = np.median(np.diff(time))
        days = step / np.timedelta64(1, "D")
        if 27 <= days <= 32:
            out = [idx[-1] + pd.DateOffset(months=k) for k in range(1, steps + 1)]
        elif 360 <= days <= 370:
            out = [idx[-1] + pd.DateOffset(years=k) for k in range(1, steps + 1)]
        else:
            out = [idx[-1] + k * pd.Timedelta(step) for k in range(1, steps + 1)]
        return [str(t) for t in out]
    step = float(np.median(np.diff(time))) if len(time) >= 2 else 1.0
    return [f"{float(time[-1]) + k * step:g}" for k in range(1, steps + 1)]
