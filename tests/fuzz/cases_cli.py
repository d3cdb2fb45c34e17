"""Random and malformed ``pylstm`` command lines.

Each case builds an argument list from pools of commands, global options, task options and
their values (good ones, and unknown options, bad numbers, missing, empty or file run
folders, runs of a task nobody installed, damaged copies of real runs from ``cases_files``),
and runs it with :func:`pylstm.cli.main` in this process or, for about one case in six, as
``python -m pylstm`` in a child process.

Whatever the arguments, the exit status is 0, 1 or 2; a non-zero status comes with exactly
one ``error:`` line on stderr (besides ``pylstm: warning:`` lines), and no Python traceback is
ever printed. A failed run is reported to the oracle as :class:`ExitStatus` (a
``PylstmError``), so a case with an invalid argument is an ``"error"`` case: it must fail.
(Only ``pylstm`` without a command prints its usage on stdout and exits with 2.)
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import cases_files
import numpy as np
from cases_files import Violation
from oracle import Case

import pylstm
from pylstm.errors import PylstmError


class ExitStatus(PylstmError, ValueError):
    """The command failed (its status and its error line are the message)."""


def _pick(rng: np.random.Generator, items: list[Any]) -> Any:
    return items[int(rng.integers(len(items)))]


# (text, whether an option given it must fail)
THREADS = [("2", False), ("1", False), ("0", True), ("-1", True), ("two", True), ("1e3", True),
           ("3.5", True), ("", True)]
SEEDS = [("0", False), ("7", False), ("x", True), ("1.5", True), ("", True)]
BACKENDS = [("rust", False), ("no-such-backend", True), ("", True)]
AR_OPTIONS = {  # ar-sine's flags: values and whether they must fail
    "--order": [("4", False), ("0", True), ("abc", True), ("1000", True), ("-3", True)],
    "--length": [("100", False), ("5", True), ("1e9", True), ("x", True)],
    "--noise": [("0.1", False), ("nan", True), ("-1", True), ("inf", True), ("zero", True)],
}
PREDICT_OPTIONS = {"--steps": [("3", False), ("0", True), ("-2", True), ("x", True),
                               ("1.5", True)]}
JUNK_FLAGS = ["--bogus", "--order=", "---", "--epochs", "-x", "--resume"]


class _Folders:
    """Run folders for one case (copies, removed after it)."""

    def __init__(self) -> None:
        self.made: list[Path] = []

    def fresh(self, tag: str) -> Path:
        cases_files._COUNTER[0] += 1
        path = cases_files._root() / "cli" / f"{cases_files._COUNTER[0]}-{tag}"
        path.parent.mkdir(parents=True, exist_ok=True)
        self.made.append(path)
        return path

    def run_dir(self, rng: np.random.Generator) -> tuple[Path, bool, str]:
        """``(folder, whether commands on it must fail, what it is)``."""
        kind = _pick(rng, ["good", "good", "good", "good", "missing", "file", "empty",
                           "unknown-task", "damaged", "damaged", "incomplete"])
        if kind == "missing":
            return self.fresh("missing"), True, "a missing folder"
        if kind == "file":
            path = self.fresh("file")
            path.write_text("not a run")
            return path, True, "a file"
        if kind == "empty":
            path = self.fresh("empty")
            path.mkdir()
            return path, True, "an empty folder"
        name = "trainer" if kind == "unknown-task" else _pick(rng, ["ar-sine", "sine-lstm"])
        t = cases_files.template(name) or cases_files.template("trainer")
        assert t is not None
        path = self.fresh(t.name)
        shutil.copytree(t.path, path)
        self.made.append(path)
        if t.name == "trainer":
            return path, True, "a run of a task nobody installed"
        if kind == "incomplete":
            run_json = path / "run.json"
            run_json.write_text(run_json.read_text().replace('"complete"', '"interrupted"'))
            return path, True, f"an interrupted {t.name} run"
        if kind == "damaged":
            return path, True, f"a damaged {t.name} run ({_damage(path, rng)})"
        return path, False, f"a {t.name} run"


def _damage(folder: Path, rng: np.random.Generator) -> str:
    """Damage that every command reading the run must refuse."""
    what = _pick(rng, ["truncate run.json", "run.json a list", "status done", "flip weights",
                       "drop weights", "truncate model.json"])
    if what == "truncate run.json":
        raw = (folder / "run.json").read_bytes()
        (folder / "run.json").write_bytes(raw[:int(rng.integers(0, len(raw.rstrip())))])
    elif what == "run.json a list":
        (folder / "run.json").write_text("[1, 2]")
    elif what == "status done":
        run_json = folder / "run.json"
        run_json.write_text(run_json.read_text().replace('"complete"', '"done"'))
    elif what == "flip weights":
        raw = bytearray((folder / "model.safetensors").read_bytes())
        raw[int(rng.integers(len(raw)))] ^= 1 << int(rng.integers(8))
        (folder / "model.safetensors").write_bytes(bytes(raw))
    elif what == "drop weights":
        (folder / "model.safetensors").unlink()
    else:
        raw = (folder / "model.json").read_bytes()
        (folder / "model.json").write_bytes(raw[:len(raw) // 2])
    return what


def _globals(rng: np.random.Generator, folders: _Folders) -> tuple[list[str], bool, bool]:
    """Global options: ``(argv, must fail, gives --out)``."""
    argv: list[str] = []
    bad: dict[str, bool] = {}  # a repeated option: the last value counts
    out = False
    for _ in range(int(rng.integers(0, 3))):
        which = _pick(rng, ["--threads", "--seed", "--backend", "-q", "--out"])
        if which == "-q":
            argv.append(_pick(rng, ["-q", "--quiet"]))
            continue
        if which == "--out":
            argv += ["--out", str(folders.fresh("out"))]
            out = True
            continue
        pool = {"--threads": THREADS, "--seed": SEEDS, "--backend": BACKENDS}[which]
        value, bad[which] = _pick(rng, pool) if rng.random() < 0.5 else pool[0]
        argv += [which, value]
    return argv, any(bad.values()), out


def _task_flags(rng: np.random.Generator, options: dict[str, list]) -> tuple[list[str], bool]:
    argv: list[str] = []
    bad: dict[str, bool] = {}  # a repeated flag: the last value counts
    for _ in range(int(rng.integers(0, 3))):
        flag = _pick(rng, sorted(options))
        value, bad[flag] = _pick(rng, options[flag]) if rng.random() < 0.5 else \
            options[flag][0]
        argv += [flag, value] if rng.random() < 0.8 else [f"{flag}={value}"]
    fails = any(bad.values())
    if rng.random() < 0.15:
        argv.append(_pick(rng, JUNK_FLAGS))
        fails = True
    return argv, fails


def _argv(rng: np.random.Generator, folders: _Folders) -> tuple[list[str], bool, str]:
    """``(argv, whether it must fail, a description)``."""
    head, fails, gives_out = _globals(rng, folders)
    command = _pick(rng, ["info", "plugins", "train", "train", "evaluate", "evaluate",
                          "predict", "predict", "export", "frobnicate", "none"])
    what = ""
    if command == "none":
        return head, True, "no command"
    if command == "frobnicate":
        return head + ["frobnicate"], True, "an unknown command"
    if command == "info":
        rest = ["--json"] if rng.random() < 0.5 else []
        if rng.random() < 0.1:
            rest.append("--bogus")
            fails = True
        return head + ["info", *rest], fails, "info"
    if command == "plugins":
        rest = [f for f in ("--all", "--check") if rng.random() < 0.5]
        return head + ["plugins", *rest], fails, "plugins"
    if command == "train":
        task = _pick(rng, ["ar-sine", "ar-sine", "no-such-task", ""])
        if task in ("no-such-task", ""):
            return head + ["train"] + ([task] if task else []), True, "train without a task"
        flags, bad = _task_flags(rng, AR_OPTIONS)
        rest = ["train", task, *flags]
        if rng.random() < 0.3:
            folder, _, what = folders.run_dir(rng)
            rest += ["--resume", str(folder)]
            bad = True  # nothing here can be resumed: missing, complete, damaged or foreign
        elif not gives_out:
            rest[:0] = ["--out", str(folders.fresh("out"))]
        return head + rest, fails or bad, f"train {task} {what}".strip()
    folder, bad_dir, what = folders.run_dir(rng)
    options = PREDICT_OPTIONS if command == "predict" else AR_OPTIONS
    flags, bad = _task_flags(rng, options)
    if command == "export":
        flags = [] if rng.random() < 0.5 else ["-o", str(folders.fresh("onnx"))]
        bad = False
        if "sine-lstm" in what:
            bad = True  # the example has no export
    if command == "evaluate" and "sine-lstm" in what:
        bad = bad or any(f.startswith("--order") for f in flags)  # an ar-sine flag
    if command == "predict" and rng.random() < 0.3:
        flags.append("--json")
    return head + [command, str(folder), *flags], fails or bad_dir or bad, f"{command} on {what}"


def _judge_output(rc: Any, out: str, err: str, no_command: bool) -> str | None:
    if not isinstance(rc, int) or isinstance(rc, bool) or rc not in (0, 1, 2):
        return f"exit status {rc!r} (expected 0, 1 or 2)"
    if "Traceback" in err or "Traceback" in out:
        return f"a traceback was printed: {err[-600:]!r}"
    lines = [line for line in err.splitlines() if not line.startswith("pylstm: warning:")]
    if rc == 0:
        return None
    if no_command and rc == 2 and not lines and out.startswith("usage:"):
        return None
    if len(lines) != 1 or "error:" not in lines[0]:
        return f"exit status {rc} without exactly one error line: {err[-600:]!r}"
    return None


def _in_process(argv: list[str]) -> tuple[Any, str, str]:
    from pylstm.cli import main

    threads = pylstm.get_num_threads()
    out, err = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            rc = main(list(argv))
    except BaseException as exc:  # noqa: BLE001 - main must never raise
        return f"raised {type(exc).__name__}: {exc}", out.getvalue(), err.getvalue()
    finally:
        pylstm.set_num_threads(threads)  # what the case's --threads/--backend changed
        pylstm.set_backend(None)
    return rc, out.getvalue(), err.getvalue()


def _child(argv: list[str]) -> tuple[Any, str, str]:
    env = {**os.environ, "PYLSTM_DEBUG": ""}
    proc = subprocess.run([sys.executable, "-m", "pylstm", *argv], capture_output=True,
                          text=True, env=env, timeout=120, cwd=cases_files._root())
    return proc.returncode, proc.stdout, proc.stderr


def make_case(rng: np.random.Generator) -> Case:
    folders = _Folders()
    argv, must_fail, what = _argv(rng, folders)
    child = rng.random() < 0.17
    no_command = what == "no command"

    def call() -> Any:
        try:
            rc, out, err = (_child if child else _in_process)(argv)
        finally:
            for path in folders.made:
                if path.is_dir():
                    shutil.rmtree(path, ignore_errors=True)
                elif path.exists():
                    path.unlink()
        problem = _judge_output(rc, out, err, no_command)
        if problem:
            raise Violation(problem)
        if rc != 0:
            line = [x for x in err.splitlines() if not x.startswith("pylstm: warning:")] or \
                ["usage on stdout"]
            raise ExitStatus(f"cli: exit status {rc}: {line[0]}")
        return rc

    shown = " ".join(a if cases_files._ROOT is None or str(cases_files._ROOT) not in a
                     else "<dir>" for a in argv)
    desc = f"{'python -m pylstm' if child else 'main'}({shown!r}) [{what}]"
    return Case(desc=desc, call=call, expect="error" if must_fail else "any", names={"cli"})
