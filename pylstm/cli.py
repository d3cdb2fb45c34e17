"""The ``pylstm`` command line (console script ``pylstm``, also ``python -m pylstm``).

::

    pylstm [GLOBAL OPTIONS] COMMAND ...

    pylstm info                           engine build and CPU information (pylstm.info())
    pylstm plugins [--all]                installed plugins as JSON: name, version, hooks
    pylstm train TASK [task options]      train a task; writes config.json, metrics.json,
                                          history.json, PNG plots and the model to --out
    pylstm evaluate RUN_DIR [options]     evaluate a trained run (options default to the run's)
    pylstm predict RUN_DIR [options]      print the trained model's prediction
    pylstm export RUN_DIR [-o FILE]       write the model as ONNX (default RUN_DIR/model.onnx)
    pylstm bench [ARGS ...]               run the benchmark suite (pylstm.bench.main(ARGS))

Global options (before or after the command): ``--backend NAME``, ``--threads N``,
``--seed N``, ``--out DIR``, ``-q/--quiet``. Plugins add commands with the
``register_commands(cli)`` hook and tasks with ``register_tasks(register)``.

Errors in arguments or data print one line (``pylstm: error: ...``) on stderr and exit with a
non-zero status; set ``PYLSTM_DEBUG=1`` to see the traceback of an unexpected error.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from .plugins import RunContext, TaskError, get_plugin_manager, get_tasks, list_plugins

__all__ = ["main", "build_parser"]

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
                   help="no progress bars or tables")


def build_parser() -> argparse.ArgumentParser:
    """Build the full parser, including task and plugin commands (loads plugins)."""
    parser = _Parser(prog="pylstm", description="pylstm: LSTM engine, tasks and tools")
    _add_global_options(parser, suppress=False)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    def add(name: str, help: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help)
        _add_global_options(p, suppress=True)
        return p

    p = add("info", "print engine build, SIMD and thread information")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_cmd_info)

    p = add("plugins", "list installed plugins (JSON)")
    p.add_argument("--all", action="store_true", help="include built-in plugins")
    p.set_defaults(func=_cmd_plugins)

    tasks = get_tasks()
    p = add("train", "train a task")
    task_sub = p.add_subparsers(dest="task", metavar="TASK", parser_class=_Parser)
    task_sub.required = True
    for task in tasks.values():
        tp = task_sub.add_parser(task.name, help=task.description, description=task.description)
        _add_global_options(tp, suppress=True)
        task.add_arguments(tp)
    p.set_defaults(func=_cmd_train)

    for name, help_text in (
        ("evaluate", "evaluate a trained run"),
        ("predict", "predict with a trained run"),
        ("export", "export a trained run as ONNX"),
    ):
        p = add(name, help_text)
        p.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="folder written by train")
        if name == "export":
            p.add_argument("-o", "--output", type=Path, default=None,
                           help="ONNX file (default RUN_DIR/model.onnx)")
        if name == "predict":
            p.add_argument("--json", action="store_true", help="print JSON")
        p.add_argument("task_args", nargs=argparse.REMAINDER, metavar="...",
                       help="task options overriding those saved in RUN_DIR/config.json")
        p.set_defaults(func=_cmd_run_dir)

    p = add("bench", "run the benchmark suite")
    p.add_argument("bench_args", nargs=argparse.REMAINDER, metavar="...",
                   help="arguments passed to pylstm.bench.main")
    p.set_defaults(func=_cmd_bench)

    get_plugin_manager().hook.register_commands(cli=sub)
    return parser


# --------------------------------------------------------------------------------------------
# helpers


def _apply_globals(args: argparse.Namespace) -> None:
    """Apply --threads, --backend and --seed to the engine."""
    import numpy as np

    if args.seed is not None:
        np.random.seed(args.seed % 2**32)
    if args.threads is not None or args.backend is not None:
        try:
            import pylstm
        except ImportError as exc:
            raise TaskError(f"cannot import the pylstm engine: {exc}") from None
        if args.threads is not None:
            set_threads = getattr(pylstm, "set_num_threads", None)
            if set_threads is None:
                raise TaskError("this pylstm build has no set_num_threads")
            set_threads(args.threads)
        if args.backend is not None:
            _select_backend(args.backend)


def _select_backend(name: str) -> None:
    """Select ``name`` process-wide with ``pylstm.backends.set_backend`` (checks it exists)."""
    backends = importlib.import_module("pylstm.backends")  # pylstm.backends is also a function
    backends.set_backend(name)
    backend = backends.get_backend()
    if hasattr(backend, "available") and not backend.available():
        raise TaskError(f"backend {name!r} is not available on this machine")


def _console(stderr: bool = False) -> Any:
    try:
        from rich.console import Console
    except ImportError:
        return None
    return Console(stderr=stderr, highlight=False)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def _print_metrics(title: str, metrics: dict[str, Any]) -> None:
    """Print metrics: a table with a row per model when values are dicts, else two columns."""
    nested = metrics and all(isinstance(v, dict) for v in metrics.values())
    console = _console()
    if nested:
        cols: list[str] = []
        for row in metrics.values():
            cols += [c for c in row if c not in cols]
        rows = [[name] + [_fmt(row.get(c, "")) for c in cols] for name, row in metrics.items()]
        header = ["model"] + cols
    else:
        header = ["metric", "value"]
        rows = [[k, _fmt(v)] for k, v in metrics.items()]
    if console is not None:
        from rich.table import Table

        table = Table()
        for i, h in enumerate(header):
            table.add_column(h, justify="left" if i == 0 else "right")
        for r in rows:
            table.add_row(*r)
        console.print(f"[bold]{title}[/bold]")
        console.print(table)
    else:
        print(title)
        for r in [header] + rows:
            print("  ".join(f"{c:>12}" for c in r))


def _print_prediction(pred: Any, as_json: bool) -> None:
    columns = (
        isinstance(pred, dict)
        and pred
        and all(isinstance(v, list) for v in pred.values())
        and len({len(v) for v in pred.values()}) == 1
    )
    if as_json or not columns:
        print(json.dumps(pred, indent=2, default=_jsonable))
        return
    keys = list(pred)
    n = len(pred[keys[0]])
    rows = [[_fmt(pred[k][i]) for k in keys] for i in range(n)]
    console = _console()
    if console is not None:
        from rich.table import Table

        table = Table(title="prediction")
        for i, k in enumerate(keys):
            table.add_column(k, justify="left" if i == 0 else "right")
        for r in rows:
            table.add_row(*r)
        console.print(table)
    else:
        print("\t".join(keys))
        for r in rows:
            print("\t".join(r))


def _jsonable(obj: Any) -> Any:
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    return str(obj)


def _task_dests(parser: argparse.ArgumentParser) -> list[str]:
    return [
        a.dest
        for a in parser._actions
        if a.dest not in _GLOBAL_DESTS and a.dest != "help" and a.dest is not argparse.SUPPRESS
    ]


def _plot_history(history: list[dict[str, float]], path: Path) -> Path | None:
    """Plot per-epoch curves (every recorded metric against epoch) into ``path``."""
    if not history:
        return None
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    keys = [k for k in history[0] if k not in ("epoch", "time_s")]
    if not keys:
        return None
    fig, ax = plt.subplots(figsize=(7, 4))
    epochs = [h["epoch"] for h in history]
    for k in keys:
        ax.plot(epochs, [h.get(k, float("nan")) for h in history], label=k)
    ax.set_xlabel("epoch")
    ax.set_yscale("log" if all(h.get(k, 1) > 0 for h in history for k in keys) else "linear")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _versions(task_name: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"python": sys.version.split()[0]}
    for p in list_plugins(all=True):
        if task_name is None or not p["builtin"]:
            out[p["name"]] = p["version"]
    return out


# --------------------------------------------------------------------------------------------
# commands


def _cmd_info(args: argparse.Namespace) -> int:
    try:
        import pylstm
    except ImportError as exc:
        raise TaskError(f"cannot import the pylstm engine: {exc}") from None
    info_fn = getattr(pylstm, "info", None)
    if info_fn is None:
        raise TaskError("this pylstm build has no info() (is the Rust extension built?)")
    info = dict(info_fn())
    info["tasks"] = sorted(get_tasks())
    if args.json:
        print(json.dumps(info, indent=2, default=_jsonable))
    else:
        _print_metrics("pylstm", {k: v if not isinstance(v, (list, dict)) else json.dumps(
            v, default=_jsonable) for k, v in info.items()})
    return 0


def _cmd_plugins(args: argparse.Namespace) -> int:
    print(json.dumps(list_plugins(all=args.all), indent=2))
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    task = get_tasks()[args.task]
    if args.seed is None:
        args.seed = 0
    out = args.out or Path("runs") / f"{task.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    ctx = RunContext(out_dir=out, seed=args.seed, backend=args.backend,
                     threads=args.threads, quiet=args.quiet)
    # the task's own options, as a fresh parser sees them, define what config.json saves
    probe = _Parser(add_help=False)
    task.add_arguments(probe)
    task_args = {d: getattr(args, d) for d in _task_dests(probe) if hasattr(args, d)}
    config = {
        "task": task.name,
        "args": task_args,
        "global": {"backend": args.backend, "threads": args.threads, "seed": args.seed},
        "versions": _versions(task.name),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    ctx.write_json("config.json", config)
    try:
        metrics = task.train(args, ctx)
    except BaseException:
        if created:  # leave no half-written run behind
            shutil.rmtree(out, ignore_errors=True)
        raise
    ctx.write_json("metrics.json", metrics)
    if ctx.history:
        ctx.write_json("history.json", ctx.history)
        _plot_history(ctx.history, out / "loss.png")
    if not args.quiet:
        _print_metrics(f"{task.name}: held-out metrics", metrics)
    ctx.log(f"wrote {out}")
    return 0


def _cmd_run_dir(args: argparse.Namespace) -> int:
    run_dir: Path = args.run_dir
    cfg_path = run_dir / "config.json"
    if not cfg_path.is_file():
        raise TaskError(f"{run_dir} is not a training run (no config.json)")
    try:
        config = json.loads(cfg_path.read_text())
        task_name = config["task"]
        saved = dict(config.get("args", {}))
    except (ValueError, KeyError, TypeError) as exc:
        raise TaskError(f"{cfg_path}: unreadable run configuration ({exc})") from None
    tasks = get_tasks()
    if task_name not in tasks:
        raise TaskError(f"run {run_dir} needs task {task_name!r}, which no plugin provides "
                        f"(installed: {', '.join(tasks) or 'none'})")
    task = tasks[task_name]
    tp = _Parser(prog=f"pylstm {args.command} RUN_DIR")
    _add_global_options(tp, suppress=True)
    if args.command == "predict":  # the command's own options may follow RUN_DIR too
        tp.add_argument("--json", action="store_true", default=argparse.SUPPRESS)
    if args.command == "export":
        tp.add_argument("-o", "--output", type=Path, default=argparse.SUPPRESS)
    task.add_arguments(tp)
    known = set(_task_dests(tp))
    tp.set_defaults(**{k: v for k, v in saved.items() if k in known})
    targs = tp.parse_args(args.task_args)
    for k, v in vars(targs).items():  # globals given after RUN_DIR win
        setattr(args, k, v)
    saved_globals = config.get("global", {})
    if args.backend is None and saved_globals.get("backend"):
        args.backend = saved_globals["backend"]
    if args.seed is None:
        args.seed = int(saved_globals.get("seed") or 0)
    out = args.out or run_dir
    out.mkdir(parents=True, exist_ok=True)
    ctx = RunContext(out_dir=out, run_dir=run_dir, seed=args.seed, backend=args.backend,
                     threads=args.threads, quiet=args.quiet)
    _apply_globals(args)
    if args.command == "evaluate":
        metrics = task.evaluate(args, ctx)
        ctx.write_json("evaluation.json", metrics)
        if not args.quiet:
            _print_metrics(f"{task.name}: evaluation", metrics)
        else:
            print(json.dumps(metrics, default=_jsonable))
    elif args.command == "predict":
        pred = task.predict(args, ctx)
        _print_prediction(pred, as_json=args.json or args.quiet)
    else:
        path = args.output or run_dir / "model.onnx"
        path.parent.mkdir(parents=True, exist_ok=True)
        written = task.export_onnx(args, ctx, path)
        print(written)
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    try:
        bench = importlib.import_module("pylstm.bench")
    except ModuleNotFoundError as exc:
        if exc.name in ("pylstm.bench", "pylstm"):
            raise TaskError("the benchmark runner (pylstm.bench) is not part of this "
                            "installation") from None
        raise
    rc = bench.main(list(args.bench_args))
    return int(rc or 0)


# --------------------------------------------------------------------------------------------


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    msg = text[0] if text else type(exc).__name__
    if isinstance(exc, FileNotFoundError) and exc.filename and str(exc.filename) not in msg:
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


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI with ``argv`` (default ``sys.argv[1:]``); return the exit status."""
    import pluggy

    debug = os.environ.get("PYLSTM_DEBUG", "") not in ("", "0")
    try:
        parser = build_parser()
        argv = list(sys.argv[1:] if argv is None else argv)
        head, bench_args = _split_bench(argv)
        args = parser.parse_args(head)
        if bench_args is not None:
            args.bench_args = bench_args
        if getattr(args, "func", None) is None:
            parser.print_help()
            return 2
        _apply_globals(args)
        rc = args.func(args)
        return int(rc or 0)
    except SystemExit as exc:  # argparse errors and --help
        code = exc.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    except KeyboardInterrupt:
        sys.stderr.write("pylstm: interrupted\n")
        return 130
    except (TaskError, pluggy.PluginValidationError, OSError, ValueError, TypeError,
            KeyError, RuntimeError, ImportError) as exc:
        if debug:
            raise
        ours = type(exc).__module__.startswith("pylstm")
        prefix = "" if ours or isinstance(exc, (OSError, ValueError)) else (
            type(exc).__name__ + ": ")
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
