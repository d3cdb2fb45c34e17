"""``pylstm train``: the run folder's life around the task's ``train`` (create or resume it,
finish, fail or interrupt it, never leave behind a folder that reads as a complete run)."""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import signal
import sys
import time
from pathlib import Path
from typing import Any

from pylstm.plugins import RunContext, Task, TaskError, get_task, options_to_dict, run_options

from .common import given_options, one_line
from .output import plot_history, print_metrics

__all__ = ["cmd_train", "ignore_sigint"]


def _missing_parents(path: Path) -> list[Path]:
    """``path`` and its ancestors that do not exist yet, deepest first."""
    out = []
    p = path.absolute()
    while not p.exists():
        out.append(p)
        p = p.parent
    return out


def _discard(run: Any, created: list[Path]) -> None:
    """Undo a run that saved nothing: remove the folder and the parents the CLI created, or
    empty a folder that existed (:meth:`Run.create` only takes an empty one)."""
    if created:
        shutil.rmtree(run.path, ignore_errors=True)
        for folder in created[1:]:
            try:
                folder.rmdir()  # only if empty
            except OSError:
                break
        return
    for entry in Path(run.path).iterdir():
        if entry.is_dir():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)


def ignore_sigint() -> None:
    """After a first Ctrl-C: ignore the next ones, so the bookkeeping and the exit (130) finish
    without a traceback however often the user presses it. :func:`main` restores the handler
    when it was called as a function (tests, other programs)."""
    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    except ValueError:  # not the main thread: signals cannot be changed there
        pass


def _default_out(task: Task) -> Path:
    base = Path("runs") / f"{task.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    out, k = base, 1
    while out.exists():
        k += 1
        out = base.with_name(f"{base.name}-{k}")
    return out


def _resume_run(task: Task, args: argparse.Namespace, given: dict[str, Any]) -> tuple[Any, Any]:
    from pylstm.runs import Run

    if args.out is not None:
        raise TaskError("--out: a resumed run continues in its own folder (--resume RUN_DIR)")
    run = Run.open(args.resume, require_complete=False, lock=True)  # one writer at a time
    try:
        return _check_resume(task, args, given, run)
    except BaseException:
        run.close()
        raise


def _check_resume(task: Task, args: argparse.Namespace, given: dict[str, Any],
                  run: Any) -> tuple[Any, Any]:
    if run.status == "complete":
        raise TaskError(f"--resume: {args.resume} is a complete run; nothing to resume")
    if run.task != task.name:
        raise TaskError(f"--resume: {args.resume} is a {run.task!r} run, not {task.name!r}")
    options = run_options(task.Options, run)
    saved = options_to_dict(options)
    changed = {k: v for k, v in options_to_dict(dataclasses.replace(options, **given)).items()
               if saved[k] != v}
    if changed:
        raise TaskError("--resume: options cannot change when resuming (" + ", ".join(
            f"--{k.replace('_', '-')} was {saved[k]!r}" for k in changed) + ")")
    if args.seed is not None and args.seed != run.seed:
        raise TaskError(f"--seed: the run was trained with --seed {run.seed}, got {args.seed}")
    if args.threads is not None and run.threads is not None and args.threads != run.threads:
        raise TaskError(f"--threads: the run was trained with --threads {run.threads} (the "
                        f"same count gives the same result), got {args.threads}")
    if run.threads is not None:
        import pylstm

        pylstm.set_num_threads(run.threads)
    return run, options


def cmd_train(args: argparse.Namespace) -> int:
    """``pylstm train``; under ``mpirun`` every rank trains (data-parallel, see
    :mod:`pylstm.cli.ranks`) and rank 0 writes the run folder."""
    from .ranks import as_rank

    with as_rank(args):
        return _train(args)


def _train(args: argparse.Namespace) -> int:
    import pylstm
    from pylstm.runs import Run

    task = get_task(args.task)
    given = given_options(args, task.Options)
    created: list[Path] = []
    if args.resume is not None:
        run, options = _resume_run(task, args, given)
    else:
        options = task.Options(**given)  # range errors here, before any folder exists
        out = args.out if args.out is not None else _default_out(task)
        created = _missing_parents(out)
        run = Run.create(out, task=task.name, options=options_to_dict(options),
                         seed=0 if args.seed is None else args.seed,
                         threads=args.threads or pylstm.get_num_threads(), lock=True)
    ctx = RunContext(out_dir=Path(run.path), seed=run.seed, backend=args.backend,
                     threads=run.threads, quiet=args.quiet, resume=args.resume is not None)
    try:
        metrics = task.train(options, run, ctx)
        _save_history(run, ctx)
        run.finish(metrics)
    except KeyboardInterrupt:
        ignore_sigint()
        if run.status == "running":
            run.interrupt("interrupted (Ctrl-C)")
        if not run.files and args.resume is None:
            _discard(run, created)
            sys.stderr.write("pylstm: interrupted before anything was saved\n")
        else:
            sys.stderr.write(f"pylstm: interrupted; the run so far (its best checkpoint) is in "
                             f"{run.path}; resume with: pylstm train {task.name} --resume "
                             f"{run.path}\n")
        return 130
    except BaseException as exc:
        if run.status == "running":
            run.fail(f"{type(exc).__name__}: {one_line(exc)}")
        if not run.files and args.resume is None:
            _discard(run, created)
        raise
    finally:
        run.close()  # the folder's lock (another process may resume it now)
    if not args.quiet:
        print_metrics(f"{task.name}: held-out metrics", metrics)
    ctx.log(f"wrote {run.path}")
    return 0


def _save_history(run: Any, ctx: RunContext) -> None:
    """``history.json`` (unless the trainer wrote it) and its plot ``loss.png``."""
    history_file = run.file("history.json")
    if ctx.history and not history_file.is_file():
        run.write_json("history.json", ctx.history)
    history = run.read_json("history.json") if history_file.is_file() else []
    if isinstance(history, list) and history and all(isinstance(h, dict) for h in history):
        try:
            import matplotlib  # noqa: F401  (optional: the zoo extra)
        except ImportError:
            return
        run.add_file("loss.png", lambda path: plot_history(history, path))
