"""The ``forecasting`` task: options, train, evaluate, predict, export (see the README)."""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pylstm.plugins import RunContext, TaskError

from . import baselines, data, metrics
from . import model as M

__all__ = ["ForecastingTask"]


def _csv_list(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


@dataclass
class _Prepared:
    series: data.Series
    split: data.Split
    values: np.ndarray


class ForecastingTask:
    """Multi-step LSTM forecasting with quantile intervals, baselines and ONNX export."""

    name = "forecasting"
    description = ("multi-layer LSTM forecaster (multi-step, quantile intervals) on co2, "
                   "sunspots, stocks, seattle-temps or a CSV")

    # ------------------------------------------------------------------ options
    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        """Data, split, model and training options (all saved in config.json)."""
        d = parser.add_argument_group("data")
        d.add_argument("--dataset", default="co2", metavar="NAME",
                       help=f"embedded dataset: {', '.join(data.DATASETS)} (default co2)")
        d.add_argument("--data", default=None, metavar="CSV", help="your own CSV file")
        d.add_argument("--time", default=None, metavar="COL", help="CSV time column")
        d.add_argument("--target", default=None, metavar="COL", help="CSV column to forecast")
        d.add_argument("--covariates", default="", metavar="A,B",
                       help="past covariate columns (CSV) or symbols (stocks)")
        d.add_argument("--symbol", default=None, help="stocks: symbol to forecast (AAPL)")
        d.add_argument("--season", type=int, default=None,
                       help="season length (default: the dataset's or from the time spacing)")
        s = parser.add_argument_group("split")
        s.add_argument("--horizon", type=int, default=None, help="steps to forecast")
        s.add_argument("--window", type=int, default=None, help="input window length")
        s.add_argument("--test-windows", type=int, default=3,
                       help="back-to-back horizons held out at the end (default 3)")
        m = parser.add_argument_group("model and training")
        m.add_argument("--hidden", type=int, default=64, help="LSTM hidden size (default 64)")
        m.add_argument("--layers", type=int, default=2, help="LSTM layers (default 2)")
        m.add_argument("--dropout", type=float, default=0.0, help="dropout between layers")
        m.add_argument("--quantiles", default="0.1,0.5,0.9",
                       help="quantiles to learn; the outer two give the interval")
        m.add_argument("--epochs", type=int, default=60, help="epochs (default 60)")
        m.add_argument("--batch-size", type=int, default=32, help="batch size (default 32)")
        m.add_argument("--lr", type=float, default=1e-2, help="Adam learning rate (1e-2)")
        m.add_argument("--clip", type=float, default=1.0, help="gradient-norm clip (0: off)")
        m.add_argument("--train-stride", type=int, default=1,
                       help="use every k-th training window (faster, default 1)")
        m.add_argument("--time-budget", type=float, default=0.0,
                       help="stop training after this many seconds (0: no limit)")

    # ------------------------------------------------------------------ helpers
    @staticmethod
    def _quantiles(args: argparse.Namespace) -> list[float]:
        try:
            qs = sorted({float(q) for q in _csv_list(args.quantiles)})
        except ValueError:
            raise TaskError(f"--quantiles: expected numbers like 0.1,0.5,0.9, "
                            f"got {args.quantiles!r}") from None
        if not qs or any(not 0 < q < 1 for q in qs):
            raise TaskError(f"--quantiles: values must lie in (0, 1), got {args.quantiles!r}")
        if 0.5 not in qs:
            qs = sorted([*qs, 0.5])
        return qs

    @staticmethod
    def _check_numbers(args: argparse.Namespace) -> None:
        def need(cond: bool, opt: str, what: str, value: Any) -> None:
            if not cond:
                raise TaskError(f"--{opt}: expected {what}, got {value}")

        for opt in ("horizon", "season"):
            v = getattr(args, opt.replace("-", "_"))
            need(v is None or v >= 1, opt, "an integer >= 1", v)
        need(args.window is None or args.window >= 2, "window", "an integer >= 2", args.window)
        for opt in ("test-windows", "hidden", "layers", "epochs", "batch-size", "train-stride"):
            v = getattr(args, opt.replace("-", "_"))
            need(v >= 1, opt, "an integer >= 1", v)
        need(math.isfinite(args.dropout) and 0 <= args.dropout < 1, "dropout",
             "a number in [0, 1)", args.dropout)
        need(math.isfinite(args.lr) and args.lr > 0, "lr", "a positive number", args.lr)
        need(math.isfinite(args.clip) and args.clip >= 0, "clip", "a number >= 0", args.clip)
        need(math.isfinite(args.time_budget) and args.time_budget >= 0, "time-budget",
             "a number >= 0", args.time_budget)
        if args.data is None and (args.time or args.target):
            raise TaskError("--time/--target need --data FILE.csv")

    def _prepare(self, args: argparse.Namespace, window: int | None = None,
                 horizon: int | None = None, season: int | None = None) -> _Prepared:
        self._check_numbers(args)
        series = data.load_series(args.dataset, args.data, args.time, args.target,
                                  _csv_list(args.covariates), args.symbol)
        info = data.DATASETS.get(args.dataset) if not args.data else None
        series.season = season or args.season or (info.season if info else series.season)
        h = horizon or args.horizon or (info.horizon if info else max(series.season, 1))
        if series.season == 1 and not (horizon or args.horizon) and not info:
            h = max(1, min(12, len(series) // 20))
        w = window or args.window or (info.window if info else max(2 * series.season, 3 * h))
        split = data.make_split(len(series), w, h, args.test_windows)
        return _Prepared(series, split, series.values())

    @staticmethod
    def _check_model_matches(args: argparse.Namespace, model: M.Forecaster,
                             prep_covariates: int) -> None:
        cfg = model.cfg
        for opt, given, trained in (("horizon", args.horizon, cfg.horizon),
                                    ("window", args.window, cfg.window)):
            if given is not None and given != trained:
                raise TaskError(f"--{opt} {given}: this model was trained with --{opt} {trained}")
        if prep_covariates != cfg.n_covariates:
            raise TaskError(f"--covariates: the model expects {cfg.n_covariates} covariate(s), "
                            f"got {prep_covariates}")

    def _evaluate(self, model: M.Forecaster, prep: _Prepared, out_dir: Path,
                  title: str) -> dict[str, Any]:
        s, sp, v = prep.series, prep.split, prep.values
        h = sp.horizon
        origins = np.asarray(sp.test_origins)
        x, actual = data.windows(v, origins, sp.window, h)
        assert actual is not None
        pred = model.predict(x)
        q = model.cfg.quantiles
        med = pred[:, :, model.cfg.median_index]
        lower, upper = pred[:, :, 0], pred[:, :, -1]
        scale = metrics.mase_scale(s.target[: sp.test_start], s.season)
        snaive = np.stack([baselines.seasonal_naive(s.target[:o], h, s.season) for o in origins])
        ets = np.stack([baselines.exponential_smoothing(s.target[:o], h, s.season)
                        for o in origins])
        result: dict[str, Any] = {"lstm": metrics.point_metrics(actual, med, scale)}
        if len(q) >= 3 or (len(q) == 2 and q[0] != q[1]):
            level = round((q[-1] - q[0]) * 100)
            result["lstm"][f"cov{level}"] = metrics.coverage(actual, lower, upper)
        result["seasonal_naive"] = metrics.point_metrics(actual, snaive, scale)
        result["ets"] = metrics.point_metrics(actual, ets, scale)
        from .plotting import plot_forecasts

        start = max(0, sp.test_start - 3 * max(h, s.season))
        plot_forecasts(out_dir / "forecast.png", s.time, s.target, start, list(origins),
                       {"lstm": med, "seasonal_naive": snaive, "ets": ets},
                       (lower, upper) if len(q) > 1 else None, title)
        return result

    def _load(self, ctx: RunContext, args: argparse.Namespace) -> tuple[M.Forecaster, _Prepared]:
        assert ctx.run_dir is not None
        if not (ctx.run_dir / M.CONFIG).is_file() or not (ctx.run_dir / M.WEIGHTS).is_file():
            raise TaskError(f"{ctx.run_dir}: no trained forecaster ({M.CONFIG}, {M.WEIGHTS})")
        model = M.load(ctx.run_dir)
        prep = self._prepare(args, model.cfg.window if args.window is None else args.window,
                             model.cfg.horizon if args.horizon is None else args.horizon,
                             model.cfg.season if args.season is None else args.season)
        self._check_model_matches(args, model, prep.values.shape[1] - 1)
        return model, prep

    # ------------------------------------------------------------------ protocol
    def train(self, args: argparse.Namespace, ctx: RunContext) -> dict[str, Any]:
        """Fit on everything before the held-out tail; report metrics on the tail."""
        quantiles = self._quantiles(args)
        prep = self._prepare(args)
        s, sp, v = prep.series, prep.split, prep.values
        h, w = sp.horizon, sp.window
        train_origins = np.arange(w, sp.val_start - h + 1)[:: args.train_stride]
        val_origins = np.arange(sp.val_start, sp.test_start - h + 1)
        x_tr, y_tr = data.windows(v, train_origins, w, h)
        x_va, y_va = data.windows(v, val_origins, w, h)
        fit_part = v[: sp.val_start]
        std = fit_part.std(axis=0)
        cfg = M.ForecasterConfig(
            window=w, horizon=h, n_covariates=v.shape[1] - 1, hidden=args.hidden,
            layers=args.layers, dropout=args.dropout, quantiles=quantiles, season=s.season,
            scale=metrics.mase_scale(s.target[: sp.val_start], s.season),
            mean=fit_part.mean(axis=0).tolist(),
            std=np.where(std > 0, std, 1.0).tolist(),
        )
        model = M.Forecaster(cfg, seed=ctx.seed)
        ctx.log(f"{s.name}: {len(s)} points, season {s.season}, window {w}, horizon {h}; "
                f"{len(train_origins)} training / {len(val_origins)} validation windows, "
                f"{len(sp.test_origins)} held-out horizons")
        assert y_tr is not None and y_va is not None
        with ctx.progress(args.epochs, "forecasting") as bar:
            summary = M.fit(model, x_tr, y_tr, x_va, y_va, epochs=args.epochs,
                            batch_size=args.batch_size, lr=args.lr, clip=args.clip,
                            seed=ctx.seed, on_epoch=bar.update, time_budget=args.time_budget)
        M.save(model, ctx.out_dir)
        ctx.write_json("training.json", summary)
        return self._evaluate(model, prep, ctx.out_dir, f"{s.name}: held-out forecasts")

    def evaluate(self, args: argparse.Namespace, ctx: RunContext) -> dict[str, Any]:
        """Reload the model and recompute the held-out metrics and plot."""
        model, prep = self._load(ctx, args)
        return self._evaluate(model, prep, ctx.out_dir,
                              f"{prep.series.name}: held-out forecasts")

    def forecast(self, args: argparse.Namespace, ctx: RunContext) -> tuple[np.ndarray, dict]:
        """``(history window [1, window, 1+C], prediction dict)`` past the end of the data."""
        model, prep = self._load(ctx, args)
        cfg, s = model.cfg, prep.series
        x = prep.values[None, -cfg.window :, :]
        pred = model.predict(x)[0]
        out: dict[str, list] = {"time": data.future_times(s.time, cfg.horizon),
                                "forecast": pred[:, cfg.median_index].tolist()}
        if len(cfg.quantiles) > 1:
            out[f"q{cfg.quantiles[0]:g}"] = pred[:, 0].tolist()
            out[f"q{cfg.quantiles[-1]:g}"] = pred[:, -1].tolist()
        return x, out

    def predict(self, args: argparse.Namespace, ctx: RunContext) -> dict[str, list]:
        """Forecast ``horizon`` steps past the end of the series (median and interval)."""
        x, out = self.forecast(args, ctx)
        return out

    def export_onnx(self, args: argparse.Namespace, ctx: RunContext, path: Path) -> Path:
        """Write the end-to-end ONNX model and check onnxruntime reproduces ``predict``."""
        from .onnx_export import export_onnx, run_onnx

        model, prep = self._load(ctx, args)
        export_onnx(model, path)
        x = prep.values[None, -model.cfg.window :, :]
        ours = model.predict(x)
        theirs = run_onnx(path, x)
        err = float(np.max(np.abs(ours - theirs)))
        tol = 1e-4 * max(1.0, float(np.max(np.abs(ours))))
        if not err <= tol:
            raise TaskError(f"export: onnxruntime disagrees with pylstm by {err:.3g} (> {tol:.3g})")
        ctx.log(f"onnxruntime matches pylstm (max abs difference {err:.3g})")
        return path
