"""The ``forecasting`` task: the protocol's methods over data, training, the predictor and the
ONNX export (see the README)."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from pylstm.plugins import RunContext, TaskError, run_options
from pylstm.runs import Run

from . import baselines, data, metrics
from .options import ForecastingOptions, ForecastRequest
from .predictor import Forecaster
from .training import Prepared, fit

__all__ = ["ForecastingTask"]


def prepare(options: ForecastingOptions, window: int | None = None,
            horizon: int | None = None, season: int | None = None) -> Prepared:
    """Load the series the options describe and split it (``window``/``horizon``/``season``
    default to the options', then to the dataset's)."""
    series = data.load_series(options.dataset, options.data, options.time, options.target,
                              options.covariates, options.symbol)
    info = data.DATASETS.get(options.dataset) if options.data is None else None
    series.season = season or options.season or (info.season if info else series.season)
    h = horizon or options.horizon or (info.horizon if info else max(series.season, 1))
    if series.season == 1 and not (horizon or options.horizon) and not info:
        h = max(1, min(12, len(series) // 20))
    w = window or options.window or (info.window if info else max(2 * series.season, 3 * h))
    return Prepared(series, data.make_split(len(series), w, h, options.test_windows))


def _prepare_for(model: Forecaster, options: ForecastingOptions) -> Prepared:
    """The data of ``options`` shaped for a trained model; options it contradicts are errors."""
    cfg = model.config
    for opt, given, trained in (("horizon", options.horizon, cfg.horizon),
                                ("window", options.window, cfg.window)):
        if given is not None and given != trained:
            raise TaskError(f"--{opt} {given}: this model was trained with --{opt} {trained}")
    prep = prepare(options, cfg.window, cfg.horizon, options.season or cfg.season)
    if prep.values.shape[1] - 1 != cfg.n_covariates:
        raise TaskError(f"--covariates: the model expects {cfg.n_covariates} covariate(s), "
                        f"got {prep.values.shape[1] - 1}")
    return prep


def _write_png(run: Run | None, out_dir: Path, name: str, draw: Any) -> None:
    """A plot into the run (recorded) or into another folder."""
    if run is not None and Path(out_dir).resolve() == Path(run.path).resolve():
        run.add_file(name, draw)
    else:
        draw(Path(out_dir) / name)


def _evaluate(model: Forecaster, prep: Prepared, title: str, out_dir: Path,
              run: Run | None, plot_name: str) -> dict[str, Any]:
    """Held-out metrics of the LSTM and both baselines from the same origins, and the plot."""
    s, sp, v = prep.series, prep.split, prep.values
    h = sp.horizon
    origins = np.asarray(sp.test_origins)
    x, actual = data.windows(v, origins, sp.window, h)
    assert actual is not None
    pred = model.predict(x)
    q = model.quantiles
    med = pred[:, :, model.config.median_index]
    lower, upper = pred[:, :, 0], pred[:, :, -1]
    scale = metrics.mase_scale(s.target[: sp.test_start], s.season)
    snaive = np.stack([baselines.seasonal_naive(s.target[:o], h, s.season) for o in origins])
    ets = np.stack([baselines.exponential_smoothing(s.target[:o], h, s.season) for o in origins])
    result: dict[str, Any] = {"lstm": metrics.point_metrics(actual, med, scale)}
    if len(q) >= 2:
        result["lstm"][f"cov{round((q[-1] - q[0]) * 100)}"] = metrics.coverage(actual, lower,
                                                                               upper)
    result["seasonal_naive"] = metrics.point_metrics(actual, snaive, scale)
    result["ets"] = metrics.point_metrics(actual, ets, scale)
    from .plotting import plot_forecasts

    start = max(0, sp.test_start - 3 * max(h, s.season))
    _write_png(run, out_dir, plot_name, lambda path: plot_forecasts(
        path, s.time, s.target, start, list(origins),
        {"lstm": med, "seasonal_naive": snaive, "ets": ets},
        (lower, upper) if len(q) > 1 else None, title))
    return result


class ForecastingTask:
    """Multi-step LSTM forecasting with quantile intervals, baselines and ONNX export."""

    name = "forecasting"
    description = ("multi-layer LSTM forecaster (multi-step, quantile intervals) on co2, "
                   "sunspots, stocks, seattle-temps or a CSV")
    Options = ForecastingOptions
    PredictOptions = ForecastRequest

    def train(self, options: ForecastingOptions, run: Run, ctx: RunContext) -> dict[str, Any]:
        """Fit on everything before the held-out tail; report metrics on the tail."""
        prep = prepare(options)
        s, sp = prep.series, prep.split
        ctx.log(f"{s.name}: {len(s)} points, season {s.season}, window {sp.window}, horizon "
                f"{sp.horizon}; {len(sp.test_origins)} held-out horizons")
        with ctx.progress(options.epochs, self.name) as progress:
            net, summary = fit(options, prep, run, resume=ctx.resume, progress=progress)
        model = Forecaster(net, options)
        model.save(run)
        run.write_json("training.json", summary)
        return _evaluate(model, prep, f"{s.name}: held-out forecasts", ctx.out_dir, run,
                         "forecast.png")

    def load(self, run: Run) -> Forecaster:
        """The trained :class:`Forecaster` (config and weights checked)."""
        return Forecaster.load(run, run_options(self.Options, run))

    def evaluate(self, predictor: Forecaster, options: ForecastingOptions,
                 ctx: RunContext) -> dict[str, Any]:
        """Recompute the held-out metrics and the plot, ``evaluation.png`` (``options`` may
        point at other data of the same shape)."""
        prep = _prepare_for(predictor, options)
        return _evaluate(predictor, prep, f"{prep.series.name}: held-out forecasts",
                         ctx.out_dir, None, "evaluation.png")

    def history(self, predictor: Forecaster, request: ForecastRequest) -> data.Series:
        """The series a prediction starts from: ``--input`` or the run's own data."""
        options = predictor.options or ForecastingOptions()
        if request.input is not None:
            if options.data is None:
                raise TaskError("--input: the model was trained on an embedded dataset; give "
                                "a CSV only for models trained with --data")
            options = dataclasses.replace(options, data=request.input)
        s = data.load_series(options.dataset, options.data, options.time, options.target,
                             options.covariates, options.symbol)
        if s.values().shape[1] - 1 != predictor.config.n_covariates:
            raise TaskError(f"--covariates: the model expects {predictor.config.n_covariates} "
                            f"covariate(s), got {s.values().shape[1] - 1}")
        if len(s) < predictor.window:
            raise TaskError(f"--input: expected at least {predictor.window} rows (the model's "
                            f"window), got {len(s)}")
        return s

    def predict(self, predictor: Forecaster, request: ForecastRequest,
                ctx: RunContext) -> dict[str, list]:
        """Forecast ``horizon`` steps past the end of the series (median and interval)."""
        s = self.history(predictor, request)
        pred = predictor.forecast(s.values())
        q = predictor.quantiles
        out: dict[str, list] = {"time": data.future_times(s.time, predictor.horizon),
                                "forecast": pred[:, predictor.config.median_index].tolist()}
        if len(q) > 1:
            out[f"q{q[0]:g}"] = pred[:, 0].tolist()
            out[f"q{q[-1]:g}"] = pred[:, -1].tolist()
        if request.output is not None:
            tmp = request.output.with_name(f".{request.output.name}.{os.getpid()}.tmp")
            tmp.write_text(json.dumps(out, indent=2) + "\n")
            os.replace(tmp, request.output)
        return out

    def export_onnx(self, predictor: Forecaster, path: Path, ctx: RunContext) -> Path:
        """Write the end-to-end ONNX model and check onnxruntime reproduces ``predict``."""
        from .onnx_export import export_onnx, run_onnx

        export_onnx(predictor, path)
        cfg = predictor.config
        rng = np.random.default_rng(0)  # windows around the training scale
        x = np.asarray(cfg.mean) + np.asarray(cfg.std) * rng.standard_normal(
            (8, cfg.window, 1 + cfg.n_covariates))
        ours, theirs = predictor.predict(x), run_onnx(path, x)
        err = float(np.max(np.abs(ours - theirs)))
        tol = 1e-4 * max(1.0, float(np.max(np.abs(ours))))
        if not err <= tol:
            raise TaskError(f"export: onnxruntime disagrees with pylstm by {err:.3g} (> {tol:.3g})")
        ctx.log(f"onnxruntime matches pylstm (max abs difference {err:.3g})")
        return path
