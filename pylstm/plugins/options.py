"""Typed task options: a dataclass per task, turned into command-line flags and JSON.

A task declares its options as a dataclass whose fields all have defaults::

    @dataclass
    class Options:
        epochs: int = field(default=60, metadata={"help": "epochs", "group": "training"})
        dataset: Literal["co2", "sunspots"] = "co2"
        quantiles: list[float] = field(default_factory=lambda: [0.1, 0.5, 0.9])
        plot: bool = True
        data: Path | None = None

        def __post_init__(self):          # ranges: raise TaskError naming the flag
            if self.epochs < 1:
                raise TaskError(f"--epochs: expected an integer >= 1, got {self.epochs}")

Supported field types: ``bool`` (``--flag/--no-flag``), ``int``, ``float``, ``str``, ``Path``,
``Literal[...]`` (or ``metadata["choices"]``), ``list[int|float|str]`` (comma-separated on the
command line, a JSON list in ``run.json``) and any of these ``| None`` (``none`` on the command
line). :func:`option_specs` describes the fields for the CLI; :func:`options_to_dict` and
:func:`options_from_dict` convert to and from the JSON saved in ``run.json``, checking every
value's type (errors name the file, the key, the expected and the actual value).
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pylstm.errors import CheckpointError
from pylstm.plugins.task import TaskError

__all__ = [
    "OptionSpec",
    "option_specs",
    "options_from_dict",
    "options_to_dict",
    "parse_option_text",
    "run_options",
]

_KINDS = {bool: "bool", int: "int", float: "float", str: "str", Path: "path"}
_EXPECTED = {"bool": "true or false", "int": "an integer", "float": "a number",
             "str": "a string", "path": "a path (string)"}


@dataclass(frozen=True)
class OptionSpec:
    """One option: the dataclass field ``name`` and how it is typed and shown."""

    name: str
    kind: str  # bool | int | float | str | path | list
    element: str | None  # the element kind of a list
    optional: bool  # None is allowed
    choices: tuple[Any, ...] | None
    default: Any
    help: str
    group: str | None

    @property
    def flag(self) -> str:
        """The command-line flag: ``test_windows`` -> ``--test-windows``."""
        return "--" + self.name.replace("_", "-")

    @property
    def expected(self) -> str:
        """What a valid value looks like, for error messages."""
        if self.choices is not None:
            text = "one of " + ", ".join(repr(c) for c in self.choices)
        elif self.kind == "list":
            text = f"a list of {_EXPECTED[self.element or 'str'].split(' ', 1)[-1]}s"
        else:
            text = _EXPECTED[self.kind]
        return text + (" or null" if self.optional else "")


def _describe(cls: type, f: dataclasses.Field, hint: Any) -> OptionSpec:
    optional = False
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(args) != 1 or len(typing.get_args(hint)) != 2:
            raise TypeError(f"{cls.__name__}.{f.name}: unsupported type {hint!r} (a union "
                            "other than X | None)")
        optional, hint = True, args[0]
        origin = typing.get_origin(hint)
    choices = f.metadata.get("choices")
    element = None
    if origin is Literal:
        choices = choices or typing.get_args(hint)
        kinds = {_KINDS.get(type(c), "") for c in choices}
        if len(kinds) != 1 or "" in kinds or "path" in kinds:
            raise TypeError(f"{cls.__name__}.{f.name}: Literal choices must share one type of "
                            f"bool, int, float or str, got {choices!r}")
        kind = kinds.pop()
    elif origin is list:
        (elem,) = typing.get_args(hint) or (str,)
        if elem not in (int, float, str):
            raise TypeError(f"{cls.__name__}.{f.name}: unsupported list element {elem!r}")
        kind, element = "list", _KINDS[elem]
    elif hint in _KINDS:
        kind = _KINDS[hint]
    else:
        raise TypeError(f"{cls.__name__}.{f.name}: unsupported option type {hint!r} (bool, int, "
                        "float, str, Path, Literal, list[int|float|str], optionally | None)")
    if f.default is not dataclasses.MISSING:
        default = f.default
    elif f.default_factory is not dataclasses.MISSING:
        default = f.default_factory()
    else:
        raise TypeError(f"{cls.__name__}.{f.name}: every option needs a default")
    return OptionSpec(name=f.name, kind=kind, element=element, optional=optional,
                      choices=tuple(choices) if choices is not None else None, default=default,
                      help=str(f.metadata.get("help", "")), group=f.metadata.get("group"))


def option_specs(cls: type) -> list[OptionSpec]:
    """The options of dataclass ``cls`` in field order; ``TypeError`` for an unsupported one."""
    if not (isinstance(cls, type) and dataclasses.is_dataclass(cls)):
        raise TypeError(f"expected a dataclass type, got {cls!r}")
    hints = typing.get_type_hints(cls)
    return [_describe(cls, f, hints[f.name]) for f in dataclasses.fields(cls) if f.init]


def _parse_scalar(kind: str, text: str) -> Any:
    if kind == "int":
        return int(text.strip())
    if kind == "float":
        return float(text.strip())
    if kind == "bool":
        low = text.strip().lower()
        if low in ("true", "yes", "1", "on"):
            return True
        if low in ("false", "no", "0", "off"):
            return False
        raise ValueError(text)
    if kind == "path":
        return Path(text)
    return text


def parse_option_text(spec: OptionSpec, text: str) -> Any:
    """Command-line text -> value for ``spec``; ``ValueError`` saying what was expected."""
    if spec.optional and text.strip().lower() in ("none", "null"):
        return None
    try:
        if spec.kind == "list":
            value: Any = [_parse_scalar(spec.element or "str", t.strip())
                          for t in text.split(",") if t.strip()]
        else:
            value = _parse_scalar(spec.kind, text)
    except ValueError:
        raise ValueError(f"expected {spec.expected}, got {text!r}") from None
    if spec.choices is not None and value not in spec.choices:
        raise ValueError(f"expected {spec.expected}, got {text!r}")
    return value


def _json_value(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (list, tuple)):
        return [_json_value(v) for v in value]
    return value


def options_to_dict(options: Any) -> dict[str, Any]:
    """A task's options as JSON-ready data (paths as strings)."""
    return {s.name: _json_value(getattr(options, s.name)) for s in option_specs(type(options))}


def _check_scalar(kind: str, value: Any) -> bool:
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "float":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, str)


def _from_json(spec: OptionSpec, value: Any, where: str) -> Any:
    def bad() -> CheckpointError:
        return CheckpointError(f"{where}: expected {spec.expected}, got "
                              f"{type(value).__name__} {value!r}")

    if value is None:
        if not spec.optional:
            raise bad()
        return None
    if spec.kind == "list":
        if not isinstance(value, list) or not all(
                _check_scalar(spec.element or "str", v) for v in value):
            raise bad()
        out: Any = [float(v) if spec.element == "float" else v for v in value]
    else:
        if not _check_scalar(spec.kind, value):
            raise bad()
        out = Path(value) if spec.kind == "path" else value
        out = float(out) if spec.kind == "float" else out
    if spec.kind == "float" and not math.isfinite(out):
        raise bad()
    if spec.choices is not None and out not in spec.choices:
        raise bad()
    return out


def options_from_dict(cls: type, data: Any, *, source: str = "options",
                      overrides: dict[str, Any] | None = None) -> Any:
    """Rebuild ``cls`` from JSON ``data`` (e.g. ``run.json``'s options), checking every value.

    Missing keys take their defaults (options added after the run was made); an unknown key,
    a value of the wrong type or out of range is an error naming ``source``, the key, the
    expected and the actual value. ``overrides`` (already typed, e.g. parsed flags) replace
    values after the check.
    """
    specs = {s.name: s for s in option_specs(cls)}
    if not isinstance(data, dict):
        raise CheckpointError(f"{source}: expected an object of options, got "
                             f"{type(data).__name__}")
    unknown = sorted(set(data) - set(specs))
    if unknown:
        raise CheckpointError(f"{source}: unknown option(s) {', '.join(map(repr, unknown))} for "
                             f"{cls.__name__} (known: {', '.join(specs)})")
    values = {k: _from_json(specs[k], v, f"{source}: {k}") for k, v in data.items()}
    values.update(overrides or {})
    try:
        return cls(**values)
    except TaskError as exc:
        raise TaskError(f"{source}: {exc}") from None


def run_options(cls: type, run: Any) -> Any:
    """The options a :class:`pylstm.runs.Run` was trained with, as ``cls``, checked like
    :func:`options_from_dict` (errors name the run's run.json)."""
    return options_from_dict(cls, run.options, source=f"{Path(run.path) / 'run.json'}: options")
