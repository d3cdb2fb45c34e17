"""The forecasting plugin (``pip install ./plugins/forecasting``): data, metrics, baselines,
options, the model config, the predictor (threads included), the CLI end to end with ONNX, bad
inputs, and the LSTM beating seasonal-naive on real data."""

from __future__ import annotations

import json
import threading
import typing
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pylstm_forecasting import baselines, data, metrics
from pylstm_forecasting.model import ForecasterConfig, ForecastNet
from pylstm_forecasting.options import DatasetName, ForecastingOptions
from pylstm_forecasting.predictor import Forecaster

import pylstm
from pylstm import plugins
from pylstm.cli import main
from pylstm.plugins import TaskError


@pytest.fixture(autouse=True)
def _plugins_loaded() -> None:
    plugins.reset_plugins()


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    rc = main(argv)
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


run_cli = run


@pytest.fixture
def csv_file(tmp_path: Path) -> Path:
    """300 days: trend + weekly season + a covariate that leads the target; rows shuffled."""
    rng = np.random.default_rng(0)
    t = np.arange(300)
    x = np.cos(2 * np.pi * t / 7) + 0.05 * rng.standard_normal(300)
    y = 10 + 0.01 * t + 2 * np.sin(2 * np.pi * t / 7) + 0.1 * rng.standard_normal(300)
    df = pd.DataFrame({"day": pd.date_range("2020-01-01", periods=300, freq="D")
                       .strftime("%Y-%m-%d"), "sales": y, "promo": x, "note": "n"})
    df.loc[50, "sales"] = np.nan  # one gap: interpolated
    path = tmp_path / "sales.csv"
    df.sample(frac=1.0, random_state=1).to_csv(path, index=False)
    return path


# ---------------------------------------------------------------------------- metrics


def test_metrics_known_values() -> None:
    a = np.array([1.0, 2.0, 3.0, 4.0])
    f = np.array([1.0, 3.0, 1.0, 4.0])
    assert metrics.mae(a, f) == pytest.approx(0.75)
    assert metrics.rmse(a, f) == pytest.approx(np.sqrt(5 / 4))
    assert metrics.smape(a, f) == pytest.approx(200 / 4 * (1 / 5 + 2 / 4))
    assert metrics.smape(np.zeros(3), np.zeros(3)) == 0.0  # 0/0 terms count 0
    train = np.array([1.0, 2.0, 4.0, 7.0, 11.0])
    assert metrics.mase_scale(train, 1) == pytest.approx(2.5)
    assert metrics.mase_scale(train, 2) == pytest.approx((3 + 5 + 7) / 3)
    assert metrics.mase_scale(np.ones(5), 1) == 1.0  # constant: no division by zero
    assert metrics.mase(a, f, 2.5) == pytest.approx(0.3)
    assert metrics.coverage(a, a - 1, a + np.array([1, 1, -2, 1])) == 0.75


def test_seasonal_naive_repeats_last_season() -> None:
    y = np.arange(10.0)
    np.testing.assert_array_equal(baselines.seasonal_naive(y, 5, 3), [7, 8, 9, 7, 8])
    np.testing.assert_array_equal(baselines.seasonal_naive(y, 3, 1), [9, 9, 9])


def test_exponential_smoothing_follows_trend_and_season() -> None:
    t = np.arange(120)
    y = 5 + 0.2 * t + 3 * np.sin(2 * np.pi * t / 12)
    fc = baselines.exponential_smoothing(y[:108], 12, 12)
    assert metrics.mae(y[108:], fc) < 0.3
    assert metrics.mae(y[108:], baselines.seasonal_naive(y[:108], 12, 12)) > 2


# ---------------------------------------------------------------------------- data


def test_embedded_datasets_load_offline() -> None:
    co2 = data.load_series("co2", None, None, None, [], None)
    assert len(co2) == 2284 and co2.season == 52 and np.isfinite(co2.target).all()
    assert np.issubdtype(co2.time.dtype, np.datetime64)
    sun = data.load_series("sunspots", None, None, None, [], None)
    assert len(sun) == 309 and sun.time[0] == 1700
    st = data.load_series("stocks", None, None, None, ["MSFT", "IBM"], "AAPL")
    assert st.values().shape == (123, 3) and st.covariate_names == ["MSFT", "IBM"]
    sea = data.load_series("seattle-temps", None, None, None, [], None)
    assert len(sea) == 8759 and sea.season == 24


def test_csv_loading_sorts_interpolates_and_infers_season(csv_file: Path) -> None:
    s = data.load_csv(csv_file, "day", "sales", ["promo"])
    assert len(s) == 300 and s.season == 7
    assert np.all(np.diff(s.time) > np.timedelta64(0))
    assert np.isfinite(s.target).all()
    assert s.target[50] == pytest.approx((s.target[49] + s.target[51]) / 2)
    assert s.values().shape == (300, 2)
    assert data.future_times(s.time, 2) == ["2020-10-27 00:00:00", "2020-10-28 00:00:00"]


def test_csv_numeric_time_and_no_time(tmp_path: Path) -> None:
    p = tmp_path / "years.csv"
    pd.DataFrame({"year": [2003, 2001, 2002], "v": [3.0, 1.0, 2.0]}).to_csv(p, index=False)
    s = data.load_csv(p, "year", "v", [])
    np.testing.assert_array_equal(s.target, [1, 2, 3])
    assert data.future_times(s.time, 2) == ["2004", "2005"]
    s = data.load_csv(p, None, "v", [])
    np.testing.assert_array_equal(s.target, [3, 1, 2])


def test_windows_and_split() -> None:
    v = np.arange(20.0)[:, None] * np.array([1.0, 10.0])
    x, y = data.windows(v, np.array([3, 5]), 3, 2)
    np.testing.assert_array_equal(x[:, :, 0], [[0, 1, 2], [2, 3, 4]])
    np.testing.assert_array_equal(x[1, :, 1], [20, 30, 40])
    np.testing.assert_array_equal(y, [[3, 4], [5, 6]])
    sp = data.make_split(200, 10, 5, 3)
    assert sp.test_origins == (185, 190, 195) and sp.test_start == 185 and sp.val_start == 175
    with pytest.raises(TaskError, match="too short"):
        data.make_split(40, 10, 5, 3)


# ---------------------------------------------------------------------------- model


def _config(**changes: object) -> ForecasterConfig:
    base = dict(window=4, horizon=2, n_covariates=1, hidden=4, layers=1, dropout=0.0,
                quantiles=[0.1, 0.5, 0.9], season=1, scale=2.0, mean=[10.0, 0.0],
                std=[5.0, 1.0])
    return ForecasterConfig(**{**base, **changes})  # type: ignore[arg-type]


def test_forecaster_scaling_roundtrip() -> None:
    cfg = _config()
    net = ForecastNet(cfg, seed=0)
    raw = np.array([[[10.0, 1], [12, 2], [14, 3], [16, 4]]])
    f = net.features(raw)
    np.testing.assert_allclose(f[0, :, 0], [-3, -2, -1, 0])  # relative to last / scale
    np.testing.assert_allclose(f[0, :, 1], [0, 0.4, 0.8, 1.2])  # absolute level
    np.testing.assert_allclose(f[0, :, 2], [1, 2, 3, 4])  # covariate
    z = net.target(raw, np.array([[18.0, 20.0]]))
    np.testing.assert_allclose(z, [[1, 2]])
    np.testing.assert_allclose(net.to_raw(raw, z[:, :, None])[0, :, 0], [18, 20])
    # forget-gate bias starts at 1
    np.testing.assert_array_equal(net.lstm.get_parameter("bias_ih_l0").data[4:8], 1.0)
    assert cfg.median_index == 1


def test_crossed_quantile_outputs_come_out_sorted() -> None:
    net = ForecastNet(_config(window=3, n_covariates=0, scale=1.0, mean=[0.0], std=[1.0]))
    raw = np.array([[[0.0], [0.0], [5.0]]])
    out = np.array([[[1.0, 0.0, -1.0], [0.5, 2.0, -3.0]]])
    np.testing.assert_allclose(net.to_raw(raw, out)[0], [[4, 5, 6], [2, 5.5, 7]])


@pytest.mark.parametrize(("key", "value", "expected"), [
    ("window", -5, "window: expected an integer >= 2, got int -5"),
    ("window", 4.0, "window: expected an integer >= 2, got float 4.0"),
    ("horizon", True, "horizon: expected an integer >= 1, got bool True"),
    ("scale", 0, "scale: expected a positive number, got int 0"),
    ("scale", float("nan"), "scale: expected a positive number, got float nan"),
    ("quantiles", "0.5", "quantiles: expected a sorted list of distinct numbers in \\(0, 1\\) "
                         "holding 0.5, got str '0.5'"),
    ("quantiles", [0.9, 0.5], "quantiles: expected a sorted list"),
    ("quantiles", [0.1, 0.9], "quantiles: expected a sorted list"),
    ("dropout", 1.0, "dropout: expected a number in \\[0, 1\\), got float 1.0"),
    ("mean", [1.0], "mean: expected a list of 2 numbers"),
    ("std", [1.0, 0.0], "std: expected a list of 2 positive numbers"),
])
def test_model_config_is_validated_on_load(key: str, value: object, expected: str) -> None:
    good = _config().to_json()
    assert ForecasterConfig.from_json(good, "model.json") == _config()
    with pytest.raises(pylstm.CheckpointError, match=f"^model.json: {expected}"):
        ForecasterConfig.from_json({**good, key: value}, "model.json")


def test_model_config_keys_and_type() -> None:
    good = _config().to_json()
    with pytest.raises(pylstm.CheckpointError,
                       match="model.json: expected a JSON object, got list"):
        ForecasterConfig.from_json([good], "model.json")
    with pytest.raises(pylstm.CheckpointError, match="missing \\['scale'\\], unknown \\['x'\\]"):
        ForecasterConfig.from_json({**{k: v for k, v in good.items() if k != "scale"}, "x": 1},
                                   "model.json")


def test_forecaster_onnx_matches_predict_on_many_windows(tmp_path: Path) -> None:
    from pylstm_forecasting.onnx_export import export_onnx, run_onnx

    cfg = _config(window=9, horizon=3, n_covariates=2, hidden=6, layers=2,
                  quantiles=[0.25, 0.5, 0.75], scale=0.7, mean=[3.0, -1.0, 2.0],
                  std=[2.0, 0.5, 4.0])
    model = Forecaster(ForecastNet(cfg, seed=5))
    raw = np.random.default_rng(1).normal(2.0, 3.0, (17, 9, 3))
    path = export_onnx(model, tmp_path / "f.onnx")
    import onnx

    proto = onnx.load(str(path))
    assert proto.ir_version == 8
    assert json.loads({p.key: p.value for p in proto.metadata_props}["quantiles"]) == [
        0.25, 0.5, 0.75]
    np.testing.assert_allclose(run_onnx(path, raw), model.predict(raw), rtol=1e-4, atol=1e-4)


def test_predictor_checks_its_input() -> None:
    model = Forecaster(ForecastNet(_config(), seed=1))
    with pytest.raises(pylstm.ShapeError, match="raw_windows: expected shape \\[N, 4, 2\\]"):
        model.predict(np.zeros((3, 5, 2)))
    with pytest.raises(pylstm.ShapeError, match="finite"):
        model.predict(np.full((1, 4, 2), np.nan))
    with pytest.raises(pylstm.ShapeError, match="series: expected at least 4 rows"):
        model.forecast(np.zeros((3, 2)))
    assert model.forecast(np.ones((10, 2))).shape == (2, 3)


def test_predictor_is_safe_from_eight_threads() -> None:
    """The same answers from 8 threads at once as from one (inference changes no state)."""
    cfg = _config(window=12, horizon=4, n_covariates=1, hidden=16, layers=2, dropout=0.2,
                  mean=[1.0, 0.0], std=[2.0, 1.0])
    model = Forecaster(ForecastNet(cfg, seed=3))
    rng = np.random.default_rng(0)
    inputs = [rng.normal(1.0, 2.0, (int(rng.integers(1, 40)), 12, 2)) for _ in range(32)]
    series = [rng.normal(1.0, 2.0, (30, 2)) for _ in range(32)]
    expected = [model.predict(x) for x in inputs]
    expected_fc = [model.forecast(s) for s in series]
    results: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def work(t: int) -> None:
        try:
            start.wait()
            for k in range(t, 32, 8):
                for _ in range(3):
                    results[k] = (model.predict(inputs[k]), model.forecast(series[k]))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors, errors
    for k in range(32):
        np.testing.assert_array_equal(results[k][0], expected[k])
        np.testing.assert_array_equal(results[k][1], expected_fc[k])
    assert not model.net.training


def test_options_dataset_names_match_the_datasets() -> None:
    assert set(typing.get_args(DatasetName)) == set(data.DATASETS)
    assert ForecastingOptions(quantiles=[0.9, 0.1, 0.1]).learned_quantiles() == [0.1, 0.5, 0.9]


# ---------------------------------------------------------------------------- CLI end to end


def test_cli_end_to_end_csv_with_covariate(
    csv_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = tmp_path / "run"
    rc, out, err = run(
        ["--out", str(run_dir), "train", "forecasting", "--data", str(csv_file), "--time", "day",
         "--target", "sales", "--covariates", "promo", "--window", "21", "--horizon", "7",
         "--test-windows", "2", "--hidden", "8", "--epochs", "3", "--batch-size", "64"],
        capsys,
    )
    assert rc == 0, err
    assert "lstm" in out and "seasonal_naive" in out and "ets" in out
    manifest = json.loads((run_dir / "run.json").read_text())
    assert manifest["status"] == "complete" and manifest["task"] == "forecasting"
    assert manifest["options"]["covariates"] == ["promo"] and manifest["options"]["window"] == 21
    for name in ("metrics.json", "history.json", "training.json", "model.json",
                 "model.safetensors", "forecast.png", "loss.png", "checkpoint/state.json"):
        assert name in manifest["files"], name  # recorded with its digest
    for png in ("forecast.png", "loss.png"):
        assert (run_dir / png).read_bytes()[:4] == b"\x89PNG"
    trained = json.loads((run_dir / "metrics.json").read_text())
    assert set(trained) == {"lstm", "seasonal_naive", "ets"}
    assert set(trained["lstm"]) == {"mae", "rmse", "smape", "mase", "cov80"}
    assert len(json.loads((run_dir / "history.json").read_text())) == 3

    rc, out, err = run(["-q", "evaluate", str(run_dir)], capsys)
    assert rc == 0, err
    assert (run_dir / "evaluation.png").read_bytes()[:4] == b"\x89PNG"
    evaluated = json.loads(out)
    for model_name, row in trained.items():
        for k, v in row.items():
            assert evaluated[model_name][k] == pytest.approx(v, rel=1e-6), (model_name, k)

    rc, out, err = run(["predict", str(run_dir), "--json"], capsys)
    assert rc == 0, err
    pred = json.loads(out)
    assert list(pred) == ["time", "forecast", "q0.1", "q0.9"]
    assert pred["time"][0] == "2020-10-27 00:00:00" and len(pred["forecast"]) == 7
    assert all(lo <= hi for lo, hi in zip(pred["q0.1"], pred["q0.9"], strict=True))
    # the same through pylstm.load, as an application uses it, and --input/--output
    model = pylstm.load(run_dir)
    assert isinstance(model, Forecaster) and model.quantiles == [0.1, 0.5, 0.9]
    series = data.load_csv(csv_file, "day", "sales", ["promo"]).values()
    np.testing.assert_array_equal(model.forecast(series)[:, 1], pred["forecast"])
    np.testing.assert_array_equal(model.predict(series[None, -21:])[0],
                                  model.forecast(series))
    rc, out, err = run(["predict", str(run_dir), "--input", str(csv_file), "--output",
                        str(tmp_path / "fc.json"), "--json"], capsys)
    assert rc == 0, err
    assert json.loads(out) == pred == json.loads((tmp_path / "fc.json").read_text())

    rc, out, err = run(["export", str(run_dir)], capsys)
    assert rc == 0, err
    onnx_path = Path(out.strip())
    assert onnx_path == run_dir / "model.onnx"

    # onnxruntime on the raw last window of the CSV gives predict's numbers
    import onnxruntime as ort

    df = pd.read_csv(csv_file)
    df["day"] = pd.to_datetime(df["day"])
    df = df.sort_values("day")
    df["sales"] = df["sales"].interpolate()
    window = df[["sales", "promo"]].to_numpy(np.float32)[-21:][None]
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    (fc,) = sess.run(["forecast"], {"history": window})
    assert fc.shape == (1, 7, 3)
    np.testing.assert_allclose(fc[0, :, 1], pred["forecast"], rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(fc[0, :, 0], pred["q0.1"], rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(fc[0, :, 2], pred["q0.9"], rtol=1e-5, atol=1e-4)


def test_stocks_covariates_train_and_export(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    run_dir = tmp_path / "stocks"
    rc, _, err = run(["-q", "--out", str(run_dir), "train", "forecasting", "--dataset", "stocks",
                      "--symbol", "IBM", "--covariates", "MSFT", "--epochs", "1",
                      "--hidden", "4"], capsys)
    assert rc == 0, err
    assert json.loads((run_dir / "model.json").read_text())["n_covariates"] == 1
    rc, _, err = run(["-q", "export", str(run_dir), "-o", str(tmp_path / "s.onnx")], capsys)
    assert rc == 0, err
    # a model trained with a covariate refuses to run without it
    rc, _, err = run(["evaluate", str(run_dir), "--covariates", ""], capsys)
    assert rc == 1 and err.count("\n") == 1 and "covariate" in err
    rc, _, err = run(["predict", str(run_dir), "--input", "x.csv"], capsys)
    assert rc == 1 and err.count("\n") == 1 and "embedded dataset" in err


def test_lstm_beats_seasonal_naive_on_co2(tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    """A short run (about 10 s on 2 cores) on real data, held-out tail of 3 x 26 weeks."""
    run_dir = tmp_path / "co2"
    rc, _, err = run(["-q", "--out", str(run_dir), "train", "forecasting", "--dataset", "co2",
                      "--window", "60", "--horizon", "26", "--hidden", "32", "--epochs", "20",
                      "--train-stride", "2", "--batch-size", "16"], capsys)
    assert rc == 0, err
    m = json.loads((run_dir / "metrics.json").read_text())
    assert m["seasonal_naive"]["mase"] > 1.0
    assert m["lstm"]["mase"] < 0.6 * m["seasonal_naive"]["mase"], m
    assert m["lstm"]["rmse"] < 0.6 * m["seasonal_naive"]["rmse"], m
    assert 0.5 <= m["lstm"]["cov80"] <= 1.0, m  # the 80% interval is not degenerate


# ---------------------------------------------------------------------------- bad inputs


@pytest.fixture
def bad_files(tmp_path: Path) -> dict[str, Path]:
    text = tmp_path / "text.csv"
    pd.DataFrame({"t": range(200), "y": ["a"] * 200}).to_csv(text, index=False)
    short = tmp_path / "short.csv"
    pd.DataFrame({"t": range(12), "y": np.arange(12.0)}).to_csv(short, index=False)
    garbage = tmp_path / "garbage.csv"
    garbage.write_bytes(b"\x00\xff\xfe\x00" * 100)
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    dates = tmp_path / "dates.csv"
    pd.DataFrame({"t": ["2020-01-01"] * 150 + ["nope"] * 50, "y": np.arange(200.0)}).to_csv(
        dates, index=False)
    return {"text": text, "short": short, "garbage": garbage, "empty": empty, "dates": dates}


BAD = [
    (["--data", "{tmp}/missing.csv", "--target", "y"], "no such file"),
    (["--data", "{short}", "--target", "nope"], "--target: no column 'nope'"),
    (["--data", "{short}", "--time", "when", "--target", "y"], "--time: no column 'when'"),
    (["--data", "{short}", "--target", "y", "--covariates", "zz"], "--covariates: no column"),
    (["--data", "{short}"], "--target"),
    (["--data", "{text}", "--target", "y"], "not numeric"),
    (["--data", "{short}", "--target", "y"], "series too short"),
    (["--data", "{garbage}", "--target", "y"], "--data"),
    (["--data", "{empty}", "--target", "y"], "--data"),
    (["--data", "{dates}", "--time", "t", "--target", "y"], "--time"),
    (["--covariates", "x"], "has no covariates"),
    (["--dataset", "stocks", "--symbol", "XYZ"], "unknown symbol 'XYZ'"),
    (["--target", "y"], "need --data"),
    (["--epochs", "0"], "--epochs"),
    (["--hidden", "-3"], "--hidden"),
    (["--lr", "-1"], "--lr"),
    (["--lr", "inf"], "--lr"),
    (["--dropout", "1.5"], "--dropout"),
    (["--clip", "-1"], "--clip"),
    (["--horizon", "0"], "--horizon"),
    (["--window", "1"], "--window"),
    (["--test-windows", "0"], "--test-windows"),
    (["--season", "0"], "--season"),
    (["--quantiles", "0.1,2"], "--quantiles"),
    (["--time-budget", "-5"], "--time-budget"),
]


@pytest.mark.parametrize(("extra", "needle"), BAD, ids=[n for _, n in BAD])
def test_bad_inputs_one_line(extra: list[str], needle: str, bad_files: dict[str, Path],
                             tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fmt = {k: str(v) for k, v in bad_files.items()} | {"tmp": str(tmp_path)}
    argv = ["--out", str(tmp_path / "r"), "train", "forecasting",
            *[a.format(**fmt) for a in extra]]
    rc, out, err = run(argv, capsys)
    assert rc == 1, err
    assert err.count("\n") == 1 and err.startswith("pylstm: error: "), err
    assert needle in err and "Traceback" not in err
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize(("extra", "needle"), [
    (["--epochs", "ten"], "--epochs"),
    (["--lr", "fast"], "--lr"),
    (["--horizon", "1.5"], "--horizon"),
    (["--quantiles", "low,high"], "--quantiles"),
    (["--dataset", "nope"], "--dataset: expected one of 'co2'"),
    (["--clip", ""], "--clip"),
])
def test_unparseable_numbers_are_argparse_errors(
    extra: list[str], needle: str, capsys: pytest.CaptureFixture[str]
) -> None:
    rc, _, err = run(["train", "forecasting", *extra], capsys)
    assert rc == 2 and err.count("\n") == 1 and needle in err


def test_evaluate_rejects_mismatched_shape_options(
    csv_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = tmp_path / "run"
    assert main(["-q", "--out", str(run_dir), "train", "forecasting", "--data", str(csv_file),
                 "--time", "day", "--target", "sales", "--window", "14", "--horizon", "7",
                 "--epochs", "1", "--hidden", "4"]) == 0
    rc, _, err = run(["evaluate", str(run_dir), "--horizon", "5"], capsys)
    assert rc == 1 and "trained with --horizon 7" in err and err.count("\n") == 1
    (run_dir / "model.safetensors").write_bytes(b"not the weights")
    rc, _, err = run(["predict", str(run_dir)], capsys)
    assert rc == 1 and "model.safetensors" in err and "sha256" in err and err.count("\n") == 1


def test_invalid_model_config_in_a_run_names_file_and_key(
    csv_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 13: a run whose model.json says "window": -5 (digests in order) does not load."""
    from pylstm.runs import Run

    run_dir = tmp_path / "run"
    assert main(["-q", "--out", str(run_dir), "train", "forecasting", "--data", str(csv_file),
                 "--time", "day", "--target", "sales", "--window", "14", "--horizon", "7",
                 "--epochs", "1", "--hidden", "4"]) == 0
    run = Run.open(run_dir)
    tensors, config = run.load_tensors("model")
    for key, value, expected in (("window", -5, "window: expected an integer >= 2, got int -5"),
                                 ("scale", 0, "scale: expected a positive number, got int 0"),
                                 ("quantiles", "0.5", "quantiles: expected a sorted list")):
        run.save_tensors("model", tensors, config={**config, key: value})
        with pytest.raises(pylstm.CheckpointError, match=f"model.json: {expected}"):
            pylstm.load(run_dir)
        rc, _, err = run_cli(["predict", str(run_dir)], capsys)
        assert rc == 1 and err.count("\n") == 1 and f"model.json: {key}" in err
    run.save_tensors("model", tensors, config=config)
    assert isinstance(pylstm.load(run_dir), Forecaster)
    # and the options saved in run.json are checked by type too
    manifest = json.loads((run_dir / "run.json").read_text())
    manifest["options"]["epochs"] = "three"
    (run_dir / "run.json").write_text(json.dumps(manifest))
    rc, _, err = run_cli(["evaluate", str(run_dir)], capsys)
    assert rc == 1 and err.count("\n") == 1
    assert "run.json: options: epochs: expected an integer, got str 'three'" in err
