"""One writer per run folder: the lock (``fcntl.flock`` on ``run.lock``) between real
processes — a second writer is refused naming the folder and the holder's pid, the lock goes
with its process however it ends, stale lock files never block, readers need no lock and wait
for a commit in progress."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

import pylstm
from pylstm import runs
from pylstm.runs import LOCK_FILE, Run, lock_holder

pytest.importorskip("fcntl")
pytest.importorskip("safetensors")

# A child that makes (or opens) a run holding its lock, says READY, and waits for a line.
_HOLDER = textwrap.dedent("""
    import sys
    from pylstm.runs import Run
    path, mode = sys.argv[1], sys.argv[2]
    if mode == "create":
        run = Run.create(path, task="sine-lstm", options={}, seed=0, lock=True)
    else:
        run = Run.open(path, require_complete=False, lock=True)
    if mode == "pending":  # stop in the middle of a commit: run.json lists a pending file
        import json, pathlib
        from pylstm.nn.checkpoint import write_atomic
        target = pathlib.Path(path) / "run.json"
        doc = json.loads(target.read_text())
        journal = {**doc, "pending": ["x"],
                   "files": {**doc["files"], "x": {"sha256": "0" * 64, "size": 0}}}
        write_atomic(target, lambda p: p.write_text(json.dumps(journal)))
        print("READY", flush=True)
        sys.stdin.readline()
        write_atomic(target, lambda p: p.write_text(json.dumps(doc)))  # the commit ends
        print("DONE", flush=True)
        sys.stdin.readline()
    else:
        print("READY", flush=True)
        sys.stdin.readline()
        run.set_info(child="wrote")
        print("WROTE", flush=True)
        sys.stdin.readline()
""")


def _holder(path: Path, mode: str = "create") -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-c", _HOLDER, str(path), mode], text=True,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line == "READY\n", (line, proc.stderr.read() if proc.stderr else "")
    return proc


def _busy_pattern(path: Path, pid: int) -> str:
    return (f"^{path}: the run folder is being written by process {pid} \\(it holds "
            f"{LOCK_FILE}\\)")


def _stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.communicate(timeout=30)


def test_a_second_process_cannot_write_while_the_first_holds_the_lock(tmp_path):
    path = tmp_path / "run"
    proc = _holder(path)
    try:
        assert lock_holder(path) == proc.pid
        reader = Run.open(path, require_complete=False)  # readers take no lock
        assert reader.status == "running" and not reader.locked
        for write in (lambda: reader.set_info(parent=1), lambda: reader.fail("x"),
                      lambda: reader.save_tensors("model", {"w": np.ones(2)})):
            with pytest.raises(pylstm.CheckpointError, match=_busy_pattern(path, proc.pid)) \
                    as info:
                write()
            assert "\n" not in str(info.value)
        with pytest.raises(pylstm.CheckpointError, match=_busy_pattern(path, proc.pid)):
            Run.open(path, require_complete=False, lock=True)
        with pytest.raises(pylstm.CheckpointError, match=_busy_pattern(path, proc.pid)):
            reader.lock()
        assert not reader.locked
        # the holder itself writes as usual, and nothing of ours got in between
        proc.stdin.write("\n")
        proc.stdin.flush()
        assert proc.stdout.readline() == "WROTE\n"
        again = Run.open(path, require_complete=False)
        assert again.info == {"child": "wrote"} and "model.safetensors" not in again.files
    finally:
        _stop(proc)


def test_the_lock_goes_with_a_killed_process_and_a_stale_file_never_blocks(tmp_path):
    path = tmp_path / "run"
    proc = _holder(path)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert (path / LOCK_FILE).read_text().strip() == str(proc.pid)  # the stale file stays
    assert lock_holder(path) is None
    with Run.open(path, require_complete=False, lock=True) as run:
        assert run.locked and lock_holder(path) == os.getpid()
        run.set_info(after="kill")
        assert (path / LOCK_FILE).read_text().strip() == str(os.getpid())
    assert not run.locked and lock_holder(path) is None
    # a create killed after taking the lock but before run.json leaves only run.lock behind
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    (fresh / LOCK_FILE).write_text("999999999\n")
    Run.create(fresh, task="t", options={}, seed=0, lock=True).close()
    assert Run.open(fresh, require_complete=False).status == "running"


def test_the_holder_is_released_on_close_and_lets_another_process_in(tmp_path):
    path = tmp_path / "run"
    run = Run.create(path, task="sine-lstm", options={}, seed=0, lock=True)
    assert run.locked and lock_holder(path) == os.getpid()
    code = textwrap.dedent(f"""
        from pylstm.runs import Run
        Run.open({str(path)!r}, require_complete=False).set_info(child=1)
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 1
    last = proc.stderr.strip().splitlines()[-1]
    assert f"{path}: the run folder is being written by process {os.getpid()}" in last
    run.close()
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert Run.open(path, require_complete=False).info == {"child": 1}


def test_one_process_shares_its_lock_between_runs_of_a_folder(tmp_path):
    path = tmp_path / "run"
    first = Run.create(path, task="t", options={}, seed=0, lock=True)
    second = Run.open(path, require_complete=False, lock=True)  # no deadlock with ourselves
    second.set_info(k=1)
    first.close()
    assert lock_holder(path) == os.getpid()  # second still holds it
    del second  # a dropped Run lets go
    assert lock_holder(path) is None
    with Run.open(path, require_complete=False) as plain:
        with plain.locked_for_writing():
            assert plain.locked
        assert not plain.locked


def test_a_forked_child_does_not_inherit_the_right_to_write(tmp_path):
    path = tmp_path / "run"
    run = Run.create(path, task="t", options={}, seed=0, lock=True)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its parent holds the lock
        os.close(r)
        try:
            run.set_info(child=1)
            msg = "wrote"
        except pylstm.CheckpointError as exc:
            msg = str(exc)
        os.write(w, msg.encode())
        os._exit(0)
    os.close(w)
    with os.fdopen(r) as f:
        msg = f.read()
    os.waitpid(pid, 0)
    assert f"being written by process {os.getpid()}" in msg
    run.set_info(parent=1)  # the parent still holds it
    run.close()


def test_a_reader_waits_for_a_commit_in_progress(tmp_path, monkeypatch):
    path = tmp_path / "run"
    Run.create(path, task="t", options={}, seed=0).finish({"mae": 1.0})
    proc = _holder(path, "pending")
    try:
        monkeypatch.setattr(runs, "_COMMIT_WAIT", 0.3)
        with pytest.raises(pylstm.CheckpointError, match="a save is still in progress after 0 s "
                                                         rf"\({path}: the run folder is being "
                                                         f"written by process {proc.pid}"):
            Run.open(path)
        assert json.loads((path / "run.json").read_text())["pending"] == ["x"]  # untouched
        monkeypatch.setattr(runs, "_COMMIT_WAIT", 30.0)
        start = time.monotonic()
        proc.stdin.write("\n")  # the holder finishes its commit while we wait
        proc.stdin.flush()
        run = Run.open(path)
        assert run.status == "complete" and time.monotonic() - start < 30
    finally:
        _stop(proc)


def test_the_lock_file_is_not_a_run_file(tmp_path):
    run = Run.create(tmp_path / "run", task="t", options={}, seed=0, lock=True)
    with pytest.raises(pylstm.LstmValueError, match="not run.json or run.lock"):
        run.add_file(LOCK_FILE, lambda p: p.write_text("x"))
    run.close()
    unlocked = Run.create(tmp_path / "plain", task="t", options={}, seed=0)
    assert not (unlocked.path / LOCK_FILE).exists()  # only a lock makes the file


# ---------------------------------------------------------------------------- the CLI


def _cli(args: list[str], cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "pylstm", *args], cwd=cwd, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, "PYLSTM_DEBUG": "", "PYLSTM_PLUGINS": "example"})


def _needs_sine_lstm() -> None:
    from pylstm import plugins

    if "sine-lstm" not in plugins.get_tasks():
        pytest.skip("pip install ./examples/plugin-example")


def test_resume_while_the_run_is_held_is_refused(tmp_path):
    _needs_sine_lstm()
    path = tmp_path / "r"
    proc = _holder(path)
    try:
        second = _cli(["train", "sine-lstm", "--resume", str(path)], tmp_path)
        _, err = second.communicate(timeout=120)
        assert second.returncode == 1, err
        assert err.count("\n") == 1 and "Traceback" not in err
        assert err.startswith(f"pylstm: error: {path}: the run folder is being written by "
                              f"process {proc.pid}")
        assert Run.open(path, require_complete=False).status == "running"  # not failed
    finally:
        _stop(proc)


def test_a_training_and_a_resume_of_the_same_folder(tmp_path):
    """``pylstm train`` holds its folder: a ``--resume`` of it meanwhile is refused naming the
    trainer's pid; once the trainer is SIGKILLed the folder is free again."""
    _needs_sine_lstm()
    first = _cli(["--out", "r", "train", "sine-lstm", "--epochs", "100000"], tmp_path)
    try:
        assert first.stderr is not None
        line = first.stderr.readline()
        while line and not line.startswith("epoch "):
            line = first.stderr.readline()
        assert line.startswith("epoch "), "the training never reported an epoch"
        second = _cli(["train", "sine-lstm", "--resume", "r"], tmp_path)
        _, err = second.communicate(timeout=120)
        assert second.returncode == 1 and err.count("\n") == 1, err
        assert f"r: the run folder is being written by process {first.pid}" in err
        assert first.poll() is None  # the trainer went on
    finally:
        first.kill()
        first.communicate(timeout=60)
    assert lock_holder(tmp_path / "r") is None
    with Run.open(tmp_path / "r", require_complete=False, lock=True) as run:
        assert run.status == "running" and run.has_file("checkpoint/state.json")
