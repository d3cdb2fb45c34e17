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
import shutil
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from pylstm.errors import PylstmError
from pylstm.plugins import (
    OptionSpec,
    RunContext,
    Task,
    TaskError,
    check_plugins,
    get_plugin_manager,
    get_task,
    get_tasks,
    list_plugins,
    option_specs,
    options_to_dict,
    plugin_errors,
    run_options,
)
from pylstm.plugins.options import parse_option_text

__all__ = ["build_parser", "main"]

_GLOBAL_DESTS = ("backend", "threads", "seed", "out", "quiet")


class _Parser(argparse.ArgumentParser):
    """ArgumentParser whose errors are one line on stderr (no usage block)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None


def _add_global_options(parser: argparse.ArgumentParser, suppress: bool) -> None:
    """Global options; on sub-parsers their default is SUPPRESS so they don't override."""

    def d(value: Any) -> Any:
        return argparse.SUPPRESS if suppress else value

    g = parser.add_argument_group("global options")
    g.add_argument("--backend", default=d(None), help="compute backend (default: rust)")
    g.add_argument("--threads", type=_positive_int, default=d(None), help="worker threads")
    g.add_argument("--seed", type=_int, default=d(None),
                   help="random seed (default 0; for a trained run, the run's)")
    g.add_argument("--out", type=Path, default=d(None), help="output folder")
    g.add_argument("-q", "--quiet", action="store_true", default=d(False),
                   help="no progress output or tables")


def _option_type(spec: OptionSpec) -> Any:
    def convert(text: str) -> Any:
        try:
            return parse_option_text(spec, text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    convert.__name__ = spec.kind
    return convert


def add_option_flags(parser: argparse.ArgumentParser, cls: type) -> None:
    """Add a ``--flag`` per field of the options dataclass ``cls`` (defaults SUPPRESSed, so
    only the flags given appear in the parsed namespace). Names that clash with the CLI's own
    flags were refused when the task registered."""
    groups: dict[str | None, Any] = {}
    for spec in option_specs(cls):
        group = groups.get(spec.group)
        if group is None:
            group = groups[spec.group] = (parser.add_argument_group(spec.group) if spec.group
                                          else parser)
        default = spec.default
        shown = ",".join(map(str, default)) if isinstance(default, list) else default
        help_text = spec.help + (f" (choices: {', '.join(map(str, spec.choices))})"
                                 if spec.choices else "")
        help_text = f"{help_text} (default: {shown})".strip()
        if spec.kind == "bool" and not spec.optional:
            group.add_argument(spec.flag, dest=spec.name, action=argparse.BooleanOptionalAction,
                               default=argparse.SUPPRESS, help=help_text)
        else:
            group.add_argument(spec.flag, dest=spec.name, type=_option_type(spec),
                               default=argparse.SUPPRESS, help=help_text,
                               metavar=spec.name.upper() if spec.kind != "list" else "A,B")


def _given_options(args: argparse.Namespace, cls: type) -> dict[str, Any]:
    return {s.name: getattr(args, s.name) for s in option_specs(cls) if hasattr(args, s.name)}


def build_parser() -> argparse.ArgumentParser:
    """Build the full parser, including task and plugin commands (loads plugins)."""
    parser = _Parser(prog="pylstm", description="pylstm: LSTM engine, tasks and tools")
    _add_global_options(parser, suppress=False)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    def add(name: str, help: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help)
        _add_global_options(p, suppress=True)
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
    task_sub = p.add_subparsers(dest="task", metavar="TASK", parser_class=_Parser)
    task_sub.required = True
    for task in get_tasks().values():
        tp = task_sub.add_parser(task.name, help=task.description, description=task.description)
        _add_global_options(tp, suppress=True)
        tp.add_argument("--resume", type=Path, default=None, metavar="RUN_DIR",
                        help="continue an interrupted run from its last checkpoint")
        add_option_flags(tp, task.Options)
    p.set_defaults(func=_cmd_train)

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


# --------------------------------------------------------------------------------------------
# output helpers


def _console() -> Any:
    try:
        from rich.console import Console
    except ImportError:
        return None
    return Console(highlight=False)


def _fmt(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def _print_table(title: str, header: list[str], rows: list[list[str]]) -> None:
    console = _console()
    if console is None:
        print(title)
        for r in [header] + rows:
            print("  ".join(f"{c:>12}" for c in r))
        return
    from rich.table import Table

    table = Table(title=title)
    for i, h in enumerate(header):
        table.add_column(h, justify="left" if i == 0 else "right")
    for r in rows:
        table.add_row(*r)
    console.print(table)


def _print_metrics(title: str, metrics: dict[str, Any]) -> None:
    """A table with a row per model when the values are dicts, else two columns."""
    if metrics and all(isinstance(v, dict) for v in metrics.values()):
        cols: list[str] = []
        for row in metrics.values():
            cols += [c for c in row if c not in cols]
        rows = [[name] + [_fmt(row.get(c, "")) for c in cols] for name, row in metrics.items()]
        _print_table(title, ["model", *cols], rows)
    else:
        _print_table(title, ["metric", "value"], [[k, _fmt(v)] for k, v in metrics.items()])


def _jsonable(obj: Any) -> Any:
    if hasattr(obj, "tolist"):
        return obj.tolist()
    return str(obj)


def _print_prediction(pred: Any, as_json: bool) -> None:
    columns = (isinstance(pred, dict) and pred
               and all(isinstance(v, list) for v in pred.values())
               and len({len(v) for v in pred.values()}) == 1)
    if as_json or not columns:
        print(json.dumps(pred, indent=2, default=_jsonable))
        return
    keys = list(pred)
    _print_table("prediction", keys,
                 [[_fmt(pred[k][i]) for k in keys] for i in range(len(pred[keys[0]]))])


def _plot_history(history: list[dict[str, float]], path: Path) -> None:
    """Per-epoch curves (every recorded number against the epoch) into ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [k for k in history[0] if k not in ("epoch", "time_s", "seconds", "lr")]
    fig, ax = plt.subplots(figsize=(7, 4))
    epochs = [h.get("epoch", i + 1) for i, h in enumerate(history)]
    for k in keys:
        ax.plot(epochs, [h.get(k, float("nan")) for h in history], label=k)
    ax.set_xlabel("epoch")
    positive = all(isinstance(h.get(k, 1), (int, float)) and h.get(k, 1) > 0
                   for h in history for k in keys)
    ax.set_yscale("log" if positive else "linear")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100, format="png")  # the run writes to a temporary name
    plt.close(fig)


# --------------------------------------------------------------------------------------------
# engine settings


def _apply_globals(args: argparse.Namespace) -> None:
    """Apply --threads and --backend to the engine (the seed goes to the task)."""
    import pylstm

    if args.threads is not None:
        pylstm.set_num_threads(args.threads)
    if args.backend is not None:
        pylstm.set_backend(args.backend)
        backend = pylstm.get_backend()
        if not backend.available():
            raise TaskError(f"--backend: backend {args.backend!r} is not available here")


# --------------------------------------------------------------------------------------------
# commands


def _cmd_info(args: argparse.Namespace) -> int:
    import pylstm

    info = dict(pylstm.info())
    info["tasks"] = sorted(get_tasks())
    info["backends"] = [str(b) for b in pylstm.list_backends()]
    if args.json:
        print(json.dumps(info, indent=2, default=_jsonable))
    else:
        _print_metrics("pylstm", {k: v if not isinstance(v, (list, dict)) else json.dumps(
            v, default=_jsonable) for k, v in info.items()})
    return 0


def _cmd_plugins(args: argparse.Namespace) -> int:
    print(json.dumps(list_plugins(all=args.all), indent=2))
    if args.check:
        check_plugins()
    return 0


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


def _ignore_sigint() -> None:
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
    run = Run.open(args.resume, require_complete=False)
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


def _cmd_train(args: argparse.Namespace) -> int:
    import pylstm
    from pylstm.runs import Run

    task = get_task(args.task)
    given = _given_options(args, task.Options)
    created: list[Path] = []
    if args.resume is not None:
        run, options = _resume_run(task, args, given)
    else:
        options = task.Options(**given)  # range errors here, before any folder exists
        out = args.out if args.out is not None else _default_out(task)
        created = _missing_parents(out)
        run = Run.create(out, task=task.name, options=options_to_dict(options),
                         seed=0 if args.seed is None else args.seed,
                         threads=args.threads or pylstm.get_num_threads())
    ctx = RunContext(out_dir=Path(run.path), seed=run.seed, backend=args.backend,
                     threads=run.threads, quiet=args.quiet, resume=args.resume is not None)
    try:
        metrics = task.train(options, run, ctx)
        _save_history(run, ctx)
        run.finish(metrics)
    except KeyboardInterrupt:
        _ignore_sigint()
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
            run.fail(f"{type(exc).__name__}: {_one_line(exc)}")
        if not run.files and args.resume is None:
            _discard(run, created)
        raise
    if not args.quiet:
        _print_metrics(f"{task.name}: held-out metrics", metrics)
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
        run.add_file("loss.png", lambda path: _plot_history(history, path))


def _cmd_run_dir(args: argparse.Namespace) -> int:
    from pylstm.runs import Run

    run = Run.open(args.run_dir)
    task = get_task(run.task)
    tp = _Parser(prog=f"pylstm {args.command} RUN_DIR")
    _add_global_options(tp, suppress=True)
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
    for k in (*_GLOBAL_DESTS, "json", "output"):  # globals given after RUN_DIR win
        if hasattr(targs, k):
            setattr(args, k, getattr(targs, k))
    _apply_globals(args)
    out = args.out if args.out is not None else Path(run.path)
    ctx = RunContext(out_dir=out, seed=run.seed if args.seed is None else args.seed,
                     backend=args.backend, threads=args.threads, quiet=args.quiet)
    if args.command == "evaluate":
        saved = run_options(task.Options, run)
        options = dataclasses.replace(saved, **_given_options(targs, task.Options))
        predictor = task.load(run)
        out.mkdir(parents=True, exist_ok=True)
        metrics = task.evaluate(predictor, options, ctx)
        _write_json(out / "evaluation.json", metrics)
        if args.quiet:
            print(json.dumps(metrics, default=_jsonable))
        else:
            _print_metrics(f"{task.name}: evaluation", metrics)
    elif args.command == "predict":
        request = task.PredictOptions(**_given_options(targs, task.PredictOptions))
        pred = task.predict(task.load(run), request, ctx)
        _print_prediction(pred, as_json=getattr(args, "json", False) or args.quiet)
    else:
        path = getattr(args, "output", None) or run.file("model.onnx")
        path.parent.mkdir(parents=True, exist_ok=True)
        print(task.export_onnx(task.load(run), path, ctx))
    return 0


def _write_json(path: Path, data: Any) -> None:
    """Atomically: a temporary file in the same folder, then renamed over ``path``."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=2, default=_jsonable) + "\n")
    os.replace(tmp, path)


def _cmd_bench(args: argparse.Namespace) -> int:
    bench = importlib.import_module("pylstm.bench")  # the suite's imports only when it runs
    return int(bench.main(list(args.bench_args)) or 0)


# --------------------------------------------------------------------------------------------


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    msg = text[0] if text else type(exc).__name__
    if isinstance(exc, OSError) and exc.filename and str(exc.filename) not in msg:
        msg = f"{msg}: {exc.filename}"
    return msg


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
        _apply_globals(args)
    return int(args.func(args) or 0)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI with ``argv`` (default ``sys.argv[1:]``, the program's); return the exit
    status."""
    previous = signal.getsignal(signal.SIGINT)
    try:
        return _main(list(sys.argv[1:] if argv is None else argv))
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
        _ignore_sigint()
        sys.stderr.write("pylstm: interrupted\n")
        return 130
    except (PylstmError, OSError, ValueError, TypeError, RuntimeError, ImportError) as exc:
        if debug:
            raise
        ours = isinstance(exc, PylstmError) or isinstance(exc, (OSError, ValueError))
        prefix = "" if ours else type(exc).__name__ + ": "
        sys.stderr.write(f"pylstm: error: {prefix}{_one_line(exc)}\n")
        return 1
    except Exception as exc:  # never a traceback for users
        if debug:
            raise
        sys.stderr.write(f"pylstm: error: {type(exc).__name__}: {_one_line(exc)} "
                         "(set PYLSTM_DEBUG=1 for a traceback)\n")
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
