"""What the CLI's commands share: the parser class, global options, flags made from a task's
options dataclass, applying the engine settings, one-line error text."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, NoReturn

from pylstm.plugins import OptionSpec, TaskError, option_specs
from pylstm.plugins.options import parse_option_text

__all__ = ["GLOBAL_DESTS", "Parser", "add_global_options", "add_option_flags", "apply_globals",
           "given_options", "one_line"]

GLOBAL_DESTS = ("backend", "threads", "seed", "out", "quiet")


class Parser(argparse.ArgumentParser):
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


def add_global_options(parser: argparse.ArgumentParser, suppress: bool) -> None:
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


def given_options(args: argparse.Namespace, cls: type) -> dict[str, Any]:
    return {s.name: getattr(args, s.name) for s in option_specs(cls) if hasattr(args, s.name)}


def apply_globals(args: argparse.Namespace) -> None:
    """Apply --threads and --backend to the engine (the seed goes to the task)."""
    import pylstm
    from pylstm.distributed import world

    world()  # under mpirun: each rank takes its share of the node's cores (unless told)
    if args.threads is not None:
        pylstm.set_num_threads(args.threads)
    if args.backend is not None:
        pylstm.set_backend(args.backend)
        backend = pylstm.get_backend()
        if not backend.available():
            raise TaskError(f"--backend: backend {args.backend!r} is not available here")


def one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    msg = text[0] if text else type(exc).__name__
    if isinstance(exc, OSError) and exc.filename and str(exc.filename) not in msg:
        msg = f"{msg}: {exc.filename}"
    return msg
