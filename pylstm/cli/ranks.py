"""The CLI under ``mpirun``: rank 0 owns the run folder and the terminal, the other ranks work
in private scratch folders; a SIGTERM (``mpirun`` ending the job after a rank died) becomes an
interruption, so the run folder says so and keeps its last checkpoint."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import signal
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any

from pylstm.distributed import World, world
from pylstm.runs import LOCK_FILE

__all__ = ["JobEnded", "as_rank", "sharded_predict"]


class JobEnded(KeyboardInterrupt):
    """SIGTERM from the launcher: another rank ended (handled as an interruption)."""


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second one ends us at once
    raise JobEnded("SIGTERM: the job was ended (another rank stopped)")


@contextmanager
def as_rank(args: argparse.Namespace) -> Iterator[World]:
    """Set ``args`` up for this rank of ``pylstm train`` (nothing changes in one process).

    A rank other than 0 trains into a scratch copy (``--out`` there; for ``--resume`` a copy of
    the run folder, made before rank 0 touches it), quietly; the scratch is removed after.
    With a shared filesystem (or the run folder copied to every machine) ``--resume`` works
    with any number of ranks: the checkpoint holds no rank count.
    """
    job = world()
    if not job.distributed:
        yield job
        return
    signal.signal(signal.SIGTERM, _on_sigterm)
    scratch = None
    try:
        if not job.is_root:
            scratch = Path(tempfile.mkdtemp(prefix=f"pylstm-rank{job.rank}-"))
            if args.resume is not None:
                shutil.copytree(args.resume, scratch / "run",
                                ignore=shutil.ignore_patterns(LOCK_FILE))
                args.resume = scratch / "run"
            else:
                args.out = scratch / "run"
            args.quiet = True
        job.barrier("the run folders' set-up")
        yield job
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)


def sharded_predict(task: Any, predictor: Any, request: Any, ctx: Any, job: World) -> str:
    """``mpirun -n K pylstm predict RUN --input FILE --output OUT``: rank ``r`` predicts lines
    ``r, r+K, ...`` (the task's own ``predict`` on its shard); rank 0 writes ``OUT`` in input
    order. Needs a task whose request has ``input`` and ``output`` files of lines."""
    from pylstm.plugins import TaskError

    source, target = getattr(request, "input", None), getattr(request, "output", None)
    if source is None or target is None or str(source) == "-":
        raise TaskError(f"predict under mpirun ({job.size} ranks): expected --input FILE and "
                        f"--output FILE to shard (got --input {source}, --output {target})")
    try:
        lines = Path(source).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise TaskError(f"--input: expected a readable UTF-8 text file, got {source} "
                        f"({type(exc).__name__})") from None
    mine = lines[job.rank::job.size]
    got: list[str] = []
    if mine:
        with tempfile.TemporaryDirectory(prefix=f"pylstm-rank{job.rank}-") as scratch:
            shard_in, shard_out = Path(scratch) / "input.txt", Path(scratch) / "output.txt"
            shard_in.write_text("".join(line + "\n" for line in mine), encoding="utf-8")
            task.predict(predictor, dataclasses.replace(request, input=shard_in,
                                                        output=shard_out), ctx)
            got = shard_out.read_text(encoding="utf-8").splitlines()
        if len(got) != len(mine):
            raise TaskError(f"predict: expected {len(mine)} output lines from rank "
                            f"{job.rank}'s shard, got {len(got)}")
    shards = job.gather_bytes(json.dumps(got).encode(), "the predictions to rank 0")
    if shards is None:
        return ""
    parts = [json.loads(s.decode()) for s in shards]
    ordered = [parts[i % job.size][i // job.size] for i in range(len(lines))]
    tmp = Path(target).with_name(f".{Path(target).name}.{os.getpid()}.tmp")
    tmp.write_text("".join(line + "\n" for line in ordered), encoding="utf-8")
    os.replace(tmp, target)
    return f"{len(ordered)} lines written to {target} ({job.size} ranks)"
