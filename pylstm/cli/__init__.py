"""The ``pylstm`` command line (console script ``pylstm``, also ``python -m pylstm``).

::

    pylstm [GLOBAL OPTIONS] COMMAND ...

    pylstm info [--json]                  engine build, CPU, tasks and backends
    pylstm plugins [--all] [--check]      installed plugins as JSON: name, version, hooks
    pylstm train TASK [options]           train a task into a run folder (--out, default
                  [--resume RUN_DIR]      runs/TASK-TIMESTAMP); --resume continues one
    pylstm evaluate RUN_DIR [options]     held-out metrics of a trained run (options default to
                                          the run's)
    pylstm predict RUN_DIR [options]      the task's prediction (--json for JSON)
    pylstm export RUN_DIR [-o FILE]       the model as ONNX (default RUN_DIR/model.onnx)
    pylstm bench [ARGS ...]               the benchmark suite (pylstm.bench.main(ARGS))

Global options (before or after the command): ``--backend NAME``, ``--threads N``,
``--seed N``, ``--out DIR``, ``-q/--quiet``. A task's options come from its ``Options``
dataclass (:mod:`pylstm.plugins.options`); plugins add commands with ``register_commands(cli)``.

The CLI is a thin layer over :func:`pylstm.load` and the task's methods. A user error prints one
line (``pylstm: error: ...``) and exits with 1 (2 for a malformed command line); Ctrl-C exits
with 130 and keeps what training saved; ``PYLSTM_DEBUG=1`` shows the traceback of an unexpected
error.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from pylstm.distributed import launched_by_mpi, world
from pylstm.errors import PylstmError
from pylstm.plugins import (
    RunContext,
    check_plugins,
    get_plugin_manager,
    get_task,
    get_tasks,
    list_plugins,
    plugin_errors,
    run_options,
)

from .common import (
    GLOBAL_DESTS,
    Parser,
    add_global_options,
    add_option_flags,
    apply_globals,
    given_options,
    one_line,
)
from .output import jsonable, print_metrics, print_prediction, write_json
from .ranks import sharded_predict
from .train import cmd_train, ignore_sigint

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """Build the full parser, including task and plugin commands (loads plugins)."""
    parser = Parser(prog="pylstm", description="pylstm: LSTM engine, tasks and tools")
    add_global_options(parser, suppress=False)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)

    def add(name: str, help: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help)
        add_global_options(p, suppress=True)
        return p

    p = add("info", "print engine build, SIMD, thread, task and backend information")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_cmd_info)

    p = add("plugins", "list installed plugins (JSON)")
    p.add_argument("--all", action="store_true", help="include built-in plugins")
    p.add_argument("--check", action="store_true",
                   help="exit with an error if a plugin could not be loaded")
    p.set_defaults(func=_cmd_plugins)

    p = add("train", "train a task")
    task_sub = p.add_subparsers(dest="task", metavar="TASK", parser_class=Parser)
    task_sub.required = True
    for task in get_tasks().values():
        tp = task_sub.add_parser(task.name, help=task.description, description=task.description)
        add_global_options(tp, suppress=True)
        tp.add_argument("--resume", type=Path, default=None, metavar="RUN_DIR",
                        help="continue an interrupted run from its last checkpoint")
        add_option_flags(tp, task.Options)
    p.set_defaults(func=cmd_train)

    for name, help_text in (("evaluate", "evaluate a trained run"),
                            ("predict", "predict with a trained run"),
                            ("export", "export a trained run as ONNX")):
        p = add(name, help_text)
        p.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="folder written by train")
        p.add_argument("task_args", nargs=argparse.REMAINDER, metavar="...",
                       help="the task's options (evaluate: overriding the run's; predict: the "
                            "request)")
        p.set_defaults(func=_cmd_run_dir)

    p = add("bench", "run the benchmark suite (pylstm bench --help)")
    p.add_argument("bench_args", nargs=argparse.REMAINDER, metavar="...",
                   help="arguments passed to pylstm.bench.main")
    p.set_defaults(func=_cmd_bench)

    get_plugin_manager().hook.register_commands(cli=sub)
    return parser


def _cmd_info(args: argparse.Namespace) -> int:
    import pylstm

    info = dict(pylstm.info())
    info["tasks"] = sorted(get_tasks())
    info["backends"] = [str(b) for b in pylstm.list_backends()]
    if args.json:
        print(json.dumps(info, indent=2, default=jsonable))
    else:
        print_metrics("pylstm", {k: v if not isinstance(v, (list, dict)) else json.dumps(
            v, default=jsonable) for k, v in info.items()})
    return 0


def _cmd_plugins(args: argparse.Namespace) -> int:
    print(json.dumps(list_plugins(all=args.all), indent=2))
    if args.check:
        check_plugins()
    return 0


def _cmd_run_dir(args: argparse.Namespace) -> int:
    from pylstm.runs import Run

    run = Run.open(args.run_dir)
    task = get_task(run.task)
    tp = Parser(prog=f"pylstm {args.command} RUN_DIR")
    add_global_options(tp, suppress=True)
    if args.command == "evaluate":
        add_option_flags(tp, task.Options)
    elif args.command == "predict":
        tp.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                        help="print JSON")
        add_option_flags(tp, task.PredictOptions)
    else:
        tp.add_argument("-o", "--output", type=Path, default=argparse.SUPPRESS,
                        help="ONNX file (default RUN_DIR/model.onnx)")
    targs = tp.parse_args(args.task_args)
    for k in (*GLOBAL_DESTS, "json", "output"):  # globals given after RUN_DIR win
        if hasattr(targs, k):
            setattr(args, k, getattr(targs, k))
    apply_globals(args)
    out = args.out if args.out is not None else Path(run.path)
    ctx = RunContext(out_dir=out, seed=run.seed if args.seed is None else args.seed,
                     backend=args.backend, threads=args.threads, quiet=args.quiet)
    job = world()
    if job.distributed and args.command != "predict" and not job.is_root:
        return 0  # under mpirun only predict shards; evaluate and export run on rank 0
    if args.command == "evaluate":
        saved = run_options(task.Options, run)
        options = dataclasses.replace(saved, **given_options(targs, task.Options))
        predictor = task.load(run)
        out.mkdir(parents=True, exist_ok=True)
        metrics = task.evaluate(predictor, options, ctx)
        write_json(out / "evaluation.json", metrics)
        if args.quiet:
            print(json.dumps(metrics, default=jsonable))
        else:
            print_metrics(f"{task.name}: evaluation", metrics)
    elif args.command == "predict":
        request = task.PredictOptions(**given_options(targs, task.PredictOptions))
        if job.distributed:
            done = sharded_predict(task, task.load(run), request, ctx, job)
            if job.is_root:
                print(done)
            return 0
        pred = task.predict(task.load(run), request, ctx)
        print_prediction(pred, as_json=getattr(args, "json", False) or args.quiet)
    else:
        path = getattr(args, "output", None) or run.file("model.onnx")
        path.parent.mkdir(parents=True, exist_ok=True)
        print(task.export_onnx(task.load(run), path, ctx))
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    bench = importlib.import_module("pylstm.bench")  # the suite's imports only when it runs
    return int(bench.main(list(args.bench_args)) or 0)


_VALUE_GLOBALS = ("--backend", "--threads", "--seed", "--out")


def _split_bench(argv: list[str]) -> tuple[list[str], list[str] | None]:
    """``[globals..., "bench", rest...]`` -> ``(up to "bench", rest)``: everything after
    ``bench`` goes to ``pylstm.bench.main`` verbatim (argparse would eat leading options)."""
    i = 0
    while i < len(argv):
        tok = argv[i]
        if tok in _VALUE_GLOBALS:
            i += 2
            continue
        if tok.startswith("-"):
            i += 1
            continue
        if tok == "bench":
            return argv[: i + 1], argv[i + 1 :]
        break
    return argv, None


def _warn_broken_plugins(command: str | None) -> None:
    if command == "plugins":  # it lists them
        return
    for name, why in sorted(plugin_errors().items()):
        sys.stderr.write(f"pylstm: warning: plugin {name!r} not loaded: {why}\n")


def _run(argv: list[str]) -> int:
    parser = build_parser()
    head, bench_args = _split_bench(argv)
    args = parser.parse_args(head)
    if bench_args is not None:
        args.bench_args = bench_args
    _warn_broken_plugins(getattr(args, "command", None))
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 2
    if args.command != "bench":  # bench sets its own threads
        apply_globals(args)
    return int(args.func(args) or 0)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI with ``argv`` (default ``sys.argv[1:]``, the program's); return the exit
    status."""
    previous = signal.getsignal(signal.SIGINT)
    try:
        code = _main(list(sys.argv[1:] if argv is None else argv))
        if code != 0 and launched_by_mpi() and world().distributed:
            sys.stderr.flush()
            world().abort(code)  # the other ranks would wait for this one forever
        return code
    finally:
        if argv is not None and signal.getsignal(signal.SIGINT) is not previous:
            signal.signal(signal.SIGINT, previous)  # called as a function: leave no trace


def _main(argv: list[str]) -> int:
    debug = os.environ.get("PYLSTM_DEBUG", "") not in ("", "0")
    try:
        return _run(argv)
    except SystemExit as exc:  # argparse errors and --help
        code = exc.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    except KeyboardInterrupt:
        ignore_sigint()
        sys.stderr.write("pylstm: interrupted\n")
        return 130
    except (PylstmError, OSError, ValueError, TypeError, RuntimeError, ImportError) as exc:
        if debug:
            raise
        ours = isinstance(exc, PylstmError) or isinstance(exc, (OSError, ValueError))
        prefix = "" if ours else type(exc).__name__ + ": "
        sys.stderr.write(f"pylstm: error: {prefix}{one_line(exc)}\n")
        return 1
    except Exception as exc:  # never a traceback for users
        if debug:
            raise
        sys.stderr.write(f"pylstm: error: {type(exc).__name__}: {one_line(exc)} "
                         "(set PYLSTM_DEBUG=1 for a traceback)\n")
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
