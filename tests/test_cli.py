"""The ``pylstm`` command line: commands, global options, run folders, Ctrl-C, progress lines,
``pylstm bench`` from outside the checkout, and every error path.

Uses the example plugin's tasks (``pip install ./examples/plugin-example``): the instant
``ar-sine`` and ``sine-lstm`` (trained by ``pylstm.train.Trainer``, checkpointed each epoch). The
forecasting task's end-to-end run is in ``plugins/forecasting/tests``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pytest

import pylstm
from pylstm import plugins
from pylstm.cli import main
from pylstm.hookspecs import hookimpl
from pylstm.runs import Run

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
    assert "ar-sine" in plugins.get_tasks(), "pip install ./examples/plugin-example"


def _status(folder: Path) -> str:
    return json.loads((folder / "run.json").read_text())["status"]


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


def test_task_options_become_flags(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "sine-lstm", "--help"]) == 0
    out = capsys.readouterr().out
    for flag in ("--hidden", "--epochs", "--lr", "--length", "--noise", "--resume"):
        assert flag in out
    assert "(default: 5)" in out and "training:" in out  # defaults and groups shown


def test_info_prints_engine_info_and_threads(capsys: pytest.CaptureFixture[str]) -> None:
    before = pylstm.get_num_threads()
    try:
        rc, out, _ = run(["info", "--json"], capsys)
        assert rc == 0
        info = json.loads(out)
        expected = json.loads(json.dumps(pylstm.info()))
        assert {k: info[k] for k in expected if k != "num_threads"} == {
            k: v for k, v in expected.items() if k != "num_threads"}
        assert {"forecasting", "ar-sine", "sine-lstm"} <= set(info["tasks"])
        assert any(b.startswith("onnxruntime: ") for b in info["backends"])
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
    rc, stdout, err = run(["--seed", "3", "--out", str(out), "train", "ar-sine", "--order", "6"],
                          capsys)
    assert rc == 0 and "naive" in stdout, err
    manifest = json.loads((out / "run.json").read_text())
    assert manifest["task"] == "ar-sine" and manifest["status"] == "complete"
    assert manifest["options"] == {"order": 6, "length": 400, "noise": 0.05}
    assert manifest["seed"] == 3 and manifest["threads"] == pylstm.get_num_threads()
    assert {"model.safetensors", "model.json", "metrics.json", "history.json",
            "loss.png"} <= set(manifest["files"])
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["ar"]["mse"] < 0.2 * metrics["naive"]["mse"]
    history = json.loads((out / "history.json").read_text())
    assert history[0]["epoch"] == 1 and "loss" in history[0]
    assert (out / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # evaluate: the run's options and seed (same data -> same numbers)
    rc, stdout, _ = run(["-q", "evaluate", str(out)], capsys)
    assert rc == 0 and json.loads(stdout) == metrics
    assert json.loads((out / "evaluation.json").read_text()) == metrics

    rc, stdout, _ = run(["predict", str(out), "--steps", "4", "--json"], capsys)
    assert rc == 0
    pred = json.loads(stdout)
    assert pred["step"] == [1, 2, 3, 4] and len(pred["value"]) == 4
    assert pylstm.load(out).forecast(4) == pred["value"]  # the CLI is a layer over load

    rc, stdout, _ = run(["export", str(out), "-o", str(tmp_path / "m.onnx")], capsys)
    assert rc == 0 and stdout.strip() == str(tmp_path / "m.onnx")
    import onnxruntime as ort
    from pylstm_plugin_example import series

    x = series(400, 0.05, 3)[-6:].astype(np.float32)[None, :]
    sess = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    (onnx_next,) = sess.run(None, {"window": x})
    assert onnx_next[0, 0] == pytest.approx(pred["value"][0], rel=1e-5, abs=1e-6)


def test_train_default_out_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    rc, _, err = run(["-q", "train", "ar-sine"], capsys)
    assert rc == 0, err
    rc, _, err = run(["-q", "train", "ar-sine"], capsys)  # the same second: another folder
    assert rc == 0, err
    folders = sorted((tmp_path / "runs").iterdir())
    assert len(folders) == 2 and all(f.name.startswith("ar-sine-") for f in folders)
    assert all(_status(f) == "complete" for f in folders)


def test_options_given_after_run_dir_override_saved_ones(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    assert main(["-q", "--out", str(out), "train", "ar-sine"]) == 0
    capsys.readouterr()
    rc, stdout, _ = run(["predict", str(out), "--steps", "2", "-q", "--seed", "0"], capsys)
    assert rc == 0 and len(json.loads(stdout)["value"]) == 2
    rc, stdout, _ = run(["evaluate", str(out), "--out", str(tmp_path / "ev"), "-q",
                         "--noise", "0.5"], capsys)
    assert rc == 0 and (tmp_path / "ev" / "evaluation.json").is_file()
    noisy = json.loads(stdout)
    assert noisy != json.loads((out / "metrics.json").read_text())  # other data, same model
    assert not (out / "evaluation.json").exists()


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


def test_bench_quick_runs_from_the_installed_package(tmp_path: Path) -> None:
    """As from a wheel: the package alone on the path (no checkout, no benchmarks/), cwd
    elsewhere; the quick suite runs every case end to end in seconds."""
    site = tmp_path / "site"
    shutil.copytree(REPO / "pylstm", site / "pylstm",
                    ignore=shutil.ignore_patterns("__pycache__"))
    work = tmp_path / "work"
    work.mkdir()
    code = (
        "import sys\n"
        f"sys.path[:] = [p for p in sys.path if p.rstrip('/') != {str(REPO)!r}]\n"
        "import pylstm, pylstm.cli\n"
        f"assert pylstm.__file__.startswith({str(site)!r}), pylstm.__file__\n"
        "rc = pylstm.cli.main(['bench', '--quick', '--plain', '--json', 'out.json'])\n"
        "assert 'benchmarks' not in sys.modules\n"
        "sys.exit(rc)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(site), "PYLSTM_PLUGINS": ""}
    proc = subprocess.run([sys.executable, "-c", code], cwd=work, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    result = json.loads((work / "out.json").read_text())
    assert result["errors"] == [] and result["meta"]["quick"] is True
    # where it ran: the CPU and the SIMD flags that chose the kernels
    from pylstm.bench.suite import cpu_flags

    assert result["meta"]["cpu_flags"] == cpu_flags()
    assert result["meta"]["pylstm"]["kernel"] in ("scalar", "avx2", "avx512", "neon")
    groups = {row["group"] for row in result["rows"]}
    # bf16c (bfloat16 compute on AMX tiles) runs only where the CPU has AMX
    amx = {"bf16c"} if result["meta"]["pylstm"]["amx"] == "available" else set()
    assert groups == {"inference", "packed", "bf16", "training", "varlen", "bidir", "latency",
                      "threads", "recorder"} | amx
    assert all(row["ms"] > 0 for row in result["rows"])


def test_backend_option_selects_backend(capsys: pytest.CaptureFixture[str]) -> None:
    import pylstm.backends as backends

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
        (["train", "ar-sine", "--order", "abc"], 2, "--order: expected an integer, got 'abc'"),
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


@dataclass
class _FailingOptions:
    when: Literal["start", "late"] = "start"
    how: Literal["error", "interrupt"] = "error"


@dataclass
class _NoRequest:
    pass


class _Failing:
    """A task whose training fails (``when="start"``: before saving anything; ``"late"``:
    after a checkpoint-like file) or is interrupted like Ctrl-C."""

    name = "failing-task"
    description = "fails on purpose"
    Options = _FailingOptions
    PredictOptions = _NoRequest

    def train(self, options: Any, run: Run, ctx: Any) -> dict[str, Any]:
        if options.when == "late":
            run.write_json("checkpoint.json", {"epoch": 1})
        if options.how == "interrupt":
            raise KeyboardInterrupt
        raise plugins.TaskError("--when: the data ran out")

    def load(self, run: Run) -> Any:
        return None

    def evaluate(self, predictor: Any, options: Any, ctx: Any) -> dict[str, Any]:
        return {}

    def predict(self, predictor: Any, request: Any, ctx: Any) -> Any:
        return {}

    def export_onnx(self, predictor: Any, path: Path, ctx: Any) -> Path:
        return path


@pytest.fixture
def failing_task() -> Any:
    class Plugin:
        @hookimpl
        def register_tasks(self, register: Any) -> None:
            register(_Failing())

    plugins.get_plugin_manager().register(Plugin(), name="failing")
    yield
    plugins.pm.unregister(name="failing")


def test_failed_train_leaves_no_folder_it_made(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               failing_task: Any,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    rc, _, err = run(["train", "failing-task"], capsys)  # default --out: runs/... not kept
    assert_one_line_error(rc, err, 1, "--when: the data ran out")
    assert list(tmp_path.iterdir()) == []
    rc, _, err = run(["--out", "a/b/c", "train", "failing-task"], capsys)
    assert_one_line_error(rc, err, 1, "the data ran out")
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "mine").mkdir()  # an existing empty folder is left as it was: empty
    rc, _, err = run(["--out", "mine", "train", "failing-task"], capsys)
    assert rc == 1 and (tmp_path / "mine").is_dir() and not any((tmp_path / "mine").iterdir())


def test_failed_train_that_saved_something_says_failed(
    tmp_path: Path, failing_task: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "r"
    rc, _, err = run(["--out", str(out), "train", "failing-task", "--when", "late"], capsys)
    assert_one_line_error(rc, err, 1, "the data ran out")
    manifest = json.loads((out / "run.json").read_text())
    assert manifest["status"] == "failed" and "the data ran out" in manifest["message"]
    rc, _, err = run(["evaluate", str(out)], capsys)
    assert_one_line_error(rc, err, 1, "incomplete", "failed", "--resume")
    rc, _, err = run(["--out", str(out), "train", "failing-task"], capsys)  # not over it
    assert_one_line_error(rc, err, 1, "incomplete run")


def test_interrupt_keeps_the_run_and_says_how_to_resume(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failing_task: Any,
    capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "r"
    rc, _, err = run(["--out", str(out), "train", "failing-task", "--when", "late", "--how",
                      "interrupt"], capsys)
    assert rc == 130 and err.count("\n") == 1 and "Traceback" not in err
    assert f"resume with: pylstm train failing-task --resume {out}" in err
    assert _status(out) == "interrupted" and (out / "checkpoint.json").is_file()
    rc, _, err = run(["evaluate", str(out)], capsys)
    assert_one_line_error(rc, err, 1, "incomplete", "interrupted")
    # interrupted before anything was saved, with the default --out: nothing is left
    monkeypatch.chdir(tmp_path)
    rc, _, err = run(["train", "failing-task", "--how", "interrupt"], capsys)
    assert rc == 130 and not (tmp_path / "runs").exists()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # restored


def test_resume_checks_what_it_is_given(tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    done = tmp_path / "done"
    assert main(["-q", "--out", str(done), "train", "ar-sine"]) == 0
    capsys.readouterr()
    rc, _, err = run(["train", "ar-sine", "--resume", str(done)], capsys)
    assert_one_line_error(rc, err, 1, "complete run; nothing to resume")
    half = Run.create(tmp_path / "half", task="sine-lstm", options={"epochs": 3}, seed=0)
    half.interrupt("test")
    rc, _, err = run(["train", "ar-sine", "--resume", str(half.path)], capsys)
    assert_one_line_error(rc, err, 1, "is a 'sine-lstm' run, not 'ar-sine'")
    rc, _, err = run(["train", "sine-lstm", "--resume", str(half.path), "--epochs", "4"], capsys)
    assert_one_line_error(rc, err, 1, "options cannot change when resuming", "--epochs was 3")
    rc, _, err = run(["--seed", "2", "train", "sine-lstm", "--resume", str(half.path)], capsys)
    assert_one_line_error(rc, err, 1, "--seed: the run was trained with --seed 0")
    rc, _, err = run(["--out", "x", "train", "sine-lstm", "--resume", str(half.path)], capsys)
    assert_one_line_error(rc, err, 1, "--out")


def test_bad_run_folders_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, _, err = run(["evaluate", str(tmp_path / "nothing")], capsys)
    assert_one_line_error(rc, err, 1, "run.json")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "run.json").write_text("{not json")
    rc, _, err = run(["predict", str(bad)], capsys)
    assert_one_line_error(rc, err, 1, "run.json")
    gone = Run.create(tmp_path / "gone", task="vanished", options={}, seed=0)
    gone.finish({})
    rc, _, err = run(["export", str(gone.path)], capsys)
    assert_one_line_error(rc, err, 1, "vanished")
    # options in run.json of the wrong type: the file, the key, expected and actual
    typed = Run.create(tmp_path / "typed", task="ar-sine", options={"order": "6"}, seed=0)
    typed.finish({})
    rc, _, err = run(["evaluate", str(typed.path)], capsys)
    assert_one_line_error(rc, err, 1, "run.json: options: order: expected an integer, got "
                                      "str '6'")
    good = tmp_path / "good"
    assert main(["-q", "--out", str(good), "train", "ar-sine"]) == 0
    capsys.readouterr()
    rc, _, err = run(["evaluate", str(good), "--order", "x"], capsys)
    assert_one_line_error(rc, err, 2, "--order")
    rc, _, err = run(["evaluate", str(good), "--order", "0"], capsys)
    assert_one_line_error(rc, err, 1, "--order")
    rc, _, err = run(["predict", str(good), "--steps", "0"], capsys)
    assert_one_line_error(rc, err, 1, "--steps")


def test_unexpected_exception_is_one_line_unless_debug(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
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
    assert proc.stdout == "" and not (tmp_path / "r").exists()


# ---------------------------------------------------------------------------- real processes


def _start(args: list[str], cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "pylstm", *args], cwd=cwd, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, "PYLSTM_DEBUG": "", "PYLSTM_PLUGINS": "example"})


def test_plain_progress_lines_when_stderr_is_not_a_terminal(tmp_path: Path) -> None:
    proc = _start(["--out", "r", "train", "sine-lstm", "--epochs", "3"], tmp_path)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    lines = [line for line in err.splitlines() if line.startswith("epoch ")]
    assert [line.split()[1] for line in lines] == ["1/3", "2/3", "3/3"]
    assert all("val_mse" in line and "eta" in line for line in lines)
    assert "\x1b[" not in err  # no terminal control codes in a log file


@pytest.mark.parametrize("presses", [1, 2])
def test_ctrl_c_during_training(tmp_path: Path, presses: int) -> None:
    """SIGINT after the first epoch's line: exit 130, no traceback, the checkpoint kept and
    the resume command printed; ``--resume`` then finishes the run. Pressing twice (impatient
    users) changes nothing."""
    proc = _start(["--out", "r", "train", "sine-lstm", "--epochs", "150"], tmp_path)
    assert proc.stderr is not None
    line = proc.stderr.readline()
    while line and not line.startswith("epoch "):
        line = proc.stderr.readline()
    assert line.startswith("epoch "), "training never reported an epoch"
    for _ in range(presses):
        proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert "resume with: pylstm train sine-lstm --resume r" in err
    folder = tmp_path / "r"
    manifest = json.loads((folder / "run.json").read_text())
    assert manifest["status"] == "interrupted"
    assert "checkpoint/best.safetensors" in manifest["files"]
    if presses == 1:
        done = subprocess.run([sys.executable, "-m", "pylstm", "-q", "train", "sine-lstm",
                               "--resume", "r"], cwd=tmp_path, capture_output=True, text=True,
                              timeout=300, env={**os.environ, "PYLSTM_PLUGINS": "example"})
        assert done.returncode == 0, done.stderr
        assert _status(folder) == "complete"
        assert len(json.loads((folder / "history.json").read_text())) == 150
