"""The ``pylstm`` command line: commands, global options, run folders and every error path.

Uses the example plugin's instant ``ar-sine`` task (``pip install -e examples/plugin-example``);
the forecasting task's end-to-end run is in ``test_forecasting.py``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from pylstm import plugins
from pylstm.cli import main

REPO = Path(__file__).resolve().parents[1]


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    rc = main(argv)
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def assert_one_line_error(rc: int, err: str, expected_rc: int, *needles: str) -> None:
    assert rc == expected_rc, err
    assert err.count("\n") == 1 and err.endswith("\n"), f"not one line: {err!r}"
    assert "Traceback" not in err and "error:" in err
    for needle in needles:
        assert needle in err, err


@pytest.fixture(autouse=True)
def _plugins_loaded() -> None:
    plugins.reset_plugins()
    assert "ar-sine" in plugins.get_tasks(), "pip install -e examples/plugin-example"


# ---------------------------------------------------------------------------- commands


def test_python_dash_m_and_help() -> None:
    out = subprocess.run([sys.executable, "-m", "pylstm", "--help"], capture_output=True,
                         text=True, check=True, cwd=REPO).stdout
    for command in ("info", "plugins", "train", "evaluate", "predict", "export", "bench"):
        assert command in out
    for option in ("--backend", "--threads", "--seed", "--out"):
        assert option in out


def test_console_script_entry() -> None:
    import tomllib

    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts == {"pylstm": "pylstm.cli:main"}


def test_no_command_prints_help(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = run([], capsys)
    assert rc == 2 and "usage: pylstm" in out


def test_info_prints_engine_info_and_threads(capsys: pytest.CaptureFixture[str]) -> None:
    import pylstm

    before = pylstm.get_num_threads()
    try:
        rc, out, _ = run(["info", "--json"], capsys)
        assert rc == 0
        info = json.loads(out)
        expected = json.loads(json.dumps(pylstm.info()))
        assert {k: info[k] for k in expected if k != "num_threads"} == {
            k: v for k, v in expected.items() if k != "num_threads"}
        assert "forecasting" in info["tasks"] and "ar-sine" in info["tasks"]
        rc, out, _ = run(["info", "--json", "--threads", "1"], capsys)  # global option after
        assert rc == 0 and json.loads(out)["num_threads"] == 1
        rc, out, _ = run(["info"], capsys)  # table form
        assert rc == 0 and "tasks" in out
    finally:
        pylstm.set_num_threads(before)


def test_train_evaluate_predict_export_ar_sine(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    rc, stdout, _ = run(["--seed", "3", "--out", str(out), "train", "ar-sine", "--order", "6"],
                        capsys)
    assert rc == 0 and "naive" in stdout
    config = json.loads((out / "config.json").read_text())
    assert config["task"] == "ar-sine"
    assert config["args"] == {"order": 6, "length": 400, "noise": 0.05, "steps": 10}
    assert config["global"] == {"backend": None, "threads": None, "seed": 3}
    assert config["versions"]["pylstm-plugin-example"] == "0.1.0"
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["ar"]["mse"] < 0.2 * metrics["naive"]["mse"]
    history = json.loads((out / "history.json").read_text())
    assert history[0]["epoch"] == 1 and "loss" in history[0]
    assert (out / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # evaluate: saved options are the defaults (same seed -> same data -> same numbers)
    rc, stdout, _ = run(["-q", "evaluate", str(out)], capsys)
    assert rc == 0 and json.loads(stdout) == metrics
    assert json.loads((out / "evaluation.json").read_text()) == metrics

    rc, stdout, _ = run(["predict", str(out), "--steps", "4", "--json"], capsys)
    assert rc == 0
    pred = json.loads(stdout)
    assert pred["step"] == [1, 2, 3, 4] and len(pred["value"]) == 4

    rc, stdout, _ = run(["export", str(out), "-o", str(tmp_path / "m.onnx")], capsys)
    assert rc == 0 and stdout.strip() == str(tmp_path / "m.onnx")
    import onnxruntime as ort
    from pylstm_plugin_example import _series

    x = _series(400, 0.05, 3)[-6:].astype(np.float32)[None, :]
    sess = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    (onnx_next,) = sess.run(None, {"window": x})
    assert onnx_next[0, 0] == pytest.approx(pred["value"][0], rel=1e-5, abs=1e-6)


def test_train_default_out_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    rc, _, err = run(["-q", "train", "ar-sine"], capsys)
    assert rc == 0, err
    (folder,) = (tmp_path / "runs").iterdir()
    assert folder.name.startswith("ar-sine-") and (folder / "metrics.json").is_file()


def test_options_given_after_run_dir_override_saved_ones(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    assert main(["-q", "--out", str(out), "train", "ar-sine"]) == 0
    capsys.readouterr()
    rc, stdout, _ = run(["predict", str(out), "--steps", "2", "-q", "--seed", "0"], capsys)
    assert rc == 0 and len(json.loads(stdout)["value"]) == 2
    rc, stdout, _ = run(["evaluate", str(out), "--out", str(tmp_path / "ev"), "-q"], capsys)
    assert rc == 0 and (tmp_path / "ev" / "evaluation.json").is_file()


def test_bench_passes_arguments(monkeypatch: pytest.MonkeyPatch,
                                capsys: pytest.CaptureFixture[str]) -> None:
    seen: list[list[str]] = []
    fake = types.ModuleType("pylstm.bench")
    fake.main = lambda argv: seen.append(argv) or 0  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "pylstm.bench", fake)
    rc, _, _ = run(["bench", "--quick", "--filter", "lstm"], capsys)
    assert rc == 0 and seen == [["--quick", "--filter", "lstm"]]


def test_bench_missing_is_one_line(monkeypatch: pytest.MonkeyPatch,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(sys.modules, "pylstm.bench", None)  # import raises ModuleNotFoundError
    rc, _, err = run(["bench"], capsys)
    assert_one_line_error(rc, err, 1, "pylstm.bench")


def test_backend_option_selects_backend(capsys: pytest.CaptureFixture[str]) -> None:
    import importlib

    backends = importlib.import_module("pylstm.backends")
    try:
        rc, _, err = run(["--backend", "onnxruntime", "plugins"], capsys)
        assert rc == 0, err
        assert backends.current_selection()[:1] == ("onnxruntime",)
    finally:
        backends.set_backend(None)


# ---------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("argv", "rc", "needle"),
    [
        (["frobnicate"], 2, "frobnicate"),
        (["train"], 2, "TASK"),
        (["train", "no-such-task"], 2, "no-such-task"),
        (["train", "ar-sine", "--order", "abc"], 2, "--order"),
        (["train", "ar-sine", "--order", "1000"], 1, "--order"),
        (["train", "ar-sine", "--noise", "nan"], 1, "--noise"),
        (["train", "ar-sine", "--bogus"], 2, "--bogus"),
        (["--threads", "0", "info"], 2, "--threads"),
        (["--threads", "two", "info"], 2, "--threads"),
        (["--seed", "x", "info"], 2, "--seed"),
        (["--backend", "no-such-backend", "info"], 1, "no-such-backend"),
    ],
)
def test_bad_arguments_one_line(argv: list[str], rc: int, needle: str, tmp_path: Path,
                                capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(["--out", str(tmp_path / "r"), *argv] if argv[0] == "train" else argv,
                       capsys)
    assert_one_line_error(code, err, rc, needle)
    assert not (tmp_path / "r").exists()  # a failed train leaves no run folder behind


def test_bad_run_folders_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, _, err = run(["evaluate", str(tmp_path / "nothing")], capsys)
    assert_one_line_error(rc, err, 1, "config.json")

    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "config.json").write_text("{not json")
    rc, _, err = run(["predict", str(bad)], capsys)
    assert_one_line_error(rc, err, 1, "config.json")

    (bad / "config.json").write_text(json.dumps({"task": "vanished", "args": {}}))
    rc, _, err = run(["export", str(bad)], capsys)
    assert_one_line_error(rc, err, 1, "vanished")

    good = tmp_path / "good"
    assert main(["-q", "--out", str(good), "train", "ar-sine"]) == 0
    capsys.readouterr()
    rc, _, err = run(["evaluate", str(good), "--order", "x"], capsys)
    assert_one_line_error(rc, err, 2, "--order")
    rc, _, err = run(["evaluate", str(good), "--order", "0"], capsys)
    assert_one_line_error(rc, err, 1, "--order")


def test_unexpected_exception_is_one_line_unless_debug(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from pylstm.hookspecs import hookimpl

    class Boom(Exception):
        pass

    class Plugin:
        @hookimpl
        def register_commands(self, cli: object) -> None:
            def boom(args: object) -> None:
                raise Boom("kaput")

            cli.add_parser("boom").set_defaults(func=boom)  # type: ignore[attr-defined]

    plugins.get_plugin_manager().register(Plugin(), name="boom")
    try:
        rc, _, err = run(["boom"], capsys)
        assert_one_line_error(rc, err, 1, "Boom: kaput", "PYLSTM_DEBUG")
        monkeypatch.setenv("PYLSTM_DEBUG", "1")
        with pytest.raises(Boom):
            main(["boom"])
    finally:
        plugins.pm.unregister(name="boom")


def test_subprocess_bad_data_file_has_no_traceback(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "pylstm", "--out", str(tmp_path / "r"), "train", "forecasting",
         "--data", str(tmp_path / "missing.csv"), "--target", "y"],
        capture_output=True, text=True, cwd=tmp_path, env={**os.environ, "PYLSTM_DEBUG": ""},
    )
    assert proc.returncode == 1
    assert proc.stderr == f"pylstm: error: --data: no such file: {tmp_path / 'missing.csv'}\n"
    assert proc.stdout == ""
