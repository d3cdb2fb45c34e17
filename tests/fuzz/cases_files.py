"""Corrupted checkpoints, weights files and run folders, loaded through the public loaders.

Templates are written once per process by the real writers (``nn.save_checkpoint`` with each
optimiser and schedule, ``nn.save_weights``, a :class:`pylstm.train.Trainer` run folder, and,
when the example plugin is installed, ``pylstm train ar-sine`` / ``sine-lstm`` runs). Each case
copies one, damages one file (truncation, a flipped bit, appended bytes, a JSON value of
another type, a missing or an unexpected key, huge numbers, NaN, a safetensors header with
another dtype, shape or offsets, a tensor dropped or renamed, a pending journal) and, for a
file whose digest is recorded, leaves the digest stale or records the new one (so the damage
reaches the parsers). Then it loads the copy with ``nn.load_checkpoint``, ``nn.load_weights``
(+ ``load_state_dict``), ``Run.open`` / ``Run.load_tensors``, the trainer's resume loader or
``pylstm.load``, or calls an optimiser's or a schedule's ``load_state_dict`` on a damaged state
dict.

Besides the oracle's rules (a ``PylstmError`` that is a ValueError/TypeError), every error
must be one line starting with the damaged folder's path or the argument's name, and the
objects loaded into must be untouched (weights, generator states, optimiser and schedule
state compare equal); a load that succeeds must leave objects that train one more step.
Damage that may be harmless (a flipped bit in an undigested JSON file, a value of the same
kind) is an ``"any"`` case.
"""

from __future__ import annotations

import atexit
import copy
import hashlib
import json
import math
import shutil
import struct
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from oracle import Case

import pylstm
from pylstm import nn
from pylstm.errors import PylstmError

# ----------------------------------------------------------------------------- templates
_ROOT: Path | None = None
_TEMPLATES: dict[str, Template] = {}
_COUNTER = [0]


def _root() -> Path:
    global _ROOT
    if _ROOT is None:
        _ROOT = Path(tempfile.mkdtemp(prefix="pylstm-fuzz-files-"))
        atexit.register(shutil.rmtree, _ROOT, ignore_errors=True)
    return _ROOT


class Net(nn.Module):
    """LSTM -> Dropout (a generator to save) -> Linear."""

    def __init__(self, seed: int) -> None:
        super().__init__()
        self.lstm = pylstm.LSTM(3, 4, seed=seed)
        self.drop = nn.Dropout(0.25, seed=seed + 1)
        self.head = nn.Linear(4, 2, seed=seed + 2)

    def forward(self, x: Any) -> Any:
        y, _ = self.lstm(x)
        return self.head(self.drop(y))


_X = np.random.default_rng(0).standard_normal((5, 2, 3)).astype(np.float32)
_Y = np.random.default_rng(1).standard_normal((5, 2, 2)).astype(np.float32)
_MSE = nn.MSELoss()


def _train_step(model: Net, opt: Any, sched: Any) -> float:
    model.train()
    model.zero_grad()
    with pylstm.record():
        loss = _MSE(model(_X), _Y)
    loss.backward()
    opt.step()
    value = float(loss.item())
    if isinstance(sched, nn.ReduceLROnPlateau):
        sched.step(value)
    elif sched is not None:
        sched.step()
    return value


OPTIMIZERS: dict[str, Callable[[Net], Any]] = {
    "adam": lambda m: nn.Adam(m, lr=0.02),
    "adamw": lambda m: nn.AdamW(m, lr=0.01, weight_decay=0.1),
    "sgd": lambda m: nn.SGD(m, lr=0.1, momentum=0.9),
}
SCHEDULES: dict[str, Callable[[Any], Any]] = {
    "step": lambda o: nn.StepLR(o, step_size=2, gamma=0.5),
    "exp": lambda o: nn.ExponentialLR(o, gamma=0.9),
    "cosine": lambda o: nn.CosineWarmupLR(o, total_steps=8, warmup_steps=2, min_lr=1e-4),
    "plateau": lambda o: nn.ReduceLROnPlateau(o, patience=1, cooldown=1),
    "none": lambda o: None,
}


def _objects(opt_name: str, sched_name: str, seed: int, steps: int) -> tuple[Net, Any, Any]:
    model = Net(seed)
    opt = OPTIMIZERS[opt_name](model)
    sched = SCHEDULES[sched_name](opt)
    for _ in range(steps):
        _train_step(model, opt, sched)
    return model, opt, sched


@dataclass
class Template:
    """A folder (or a file) written by the real writers, and how to load it."""

    name: str
    path: Path
    kind: str  # "ckpt", "weights", "trainer", "task"
    manifest: str | None  # the file recording the others' digests (relative name)
    files: list[str]  # the files in it (relative names)
    meta: dict[str, Any] = field(default_factory=dict)


def _files(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def _ckpt_template(opt_name: str, sched_name: str) -> Template:
    name = f"ckpt-{opt_name}-{sched_name}"
    folder = _root() / "templates" / name
    model, opt, sched = _objects("adam" if opt_name == "none" else opt_name, sched_name,
                                 seed=3, steps=3)
    nn.save_checkpoint(folder, model, {"hidden": 4, "note": "fuzz"},
                       optimizer=None if opt_name == "none" else opt, scheduler=sched)
    return Template(name, folder, "ckpt", "config.json", _files(folder),
                    {"opt": opt_name, "sched": sched_name})


def _weights_template() -> Template:
    folder = _root() / "templates" / "weights"
    folder.mkdir(parents=True)
    model, _, _ = _objects("adam", "none", seed=4, steps=1)
    digest = nn.save_weights(folder / "w.safetensors", model.state_dict())
    return Template("weights", folder, "weights", None, ["w.safetensors"], {"sha256": digest})


TRAIN_SEED = 3


def _trainer_options() -> Any:
    from pylstm.train import TrainOptions

    return TrainOptions(epochs=2, metric="train_loss")


def _trainer_template() -> Template:
    from pylstm.runs import Run
    from pylstm.train import Trainer

    folder = _root() / "templates" / "trainer"
    model, opt, sched = _objects("adam", "step", seed=5, steps=0)
    run = Run.create(folder, task="fuzz-trainer", options={"hidden": 4}, seed=TRAIN_SEED)
    trainer = Trainer(model, opt, scheduler=sched, run=run, seed=TRAIN_SEED,
                      options=_trainer_options())

    def batches(epoch: int) -> list[int]:
        return [0, 1]

    def loss(batch: int) -> Any:
        return _MSE(model(_X), _Y)

    trainer.fit(batches, loss)
    run.save_tensors("model", model.state_dict(), config={"hidden": 4})
    run.finish({"loss": 0.5})
    return Template("trainer", folder, "trainer", "run.json", _files(folder))


def _task_template(task: str) -> Template | None:
    from pylstm import plugins

    if task not in plugins.get_tasks():
        return None
    from pylstm.cli import main

    folder = _root() / "templates" / task
    extra = ["--epochs", "2", "--length", "100"] if task == "sine-lstm" else []
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        rc = main(["-q", "--out", str(folder), "train", task, *extra])
    if rc != 0:
        raise RuntimeError(f"could not train the {task} template (exit status {rc})")
    return Template(task, folder, "task", "run.json", _files(folder), {"task": task})


TEMPLATE_NAMES = [f"ckpt-{o}-{s}" for o in ("adam", "adamw", "sgd") for s in SCHEDULES] + [
    "ckpt-none-none", "weights", "trainer", "ar-sine", "sine-lstm"]


def template(name: str) -> Template | None:
    """The template ``name`` (built on first use), or None when its plugin is missing."""
    if name not in _TEMPLATES:
        if name.startswith("ckpt-"):
            _, opt_name, sched_name = name.split("-")
            _TEMPLATES[name] = _ckpt_template(opt_name, sched_name)
        elif name == "weights":
            _TEMPLATES[name] = _weights_template()
        elif name == "trainer":
            _TEMPLATES[name] = _trainer_template()
        else:
            t = _task_template(name)
            if t is None:
                return None
            _TEMPLATES[name] = t
    return _TEMPLATES[name]


def work_copy(t: Template) -> Path:
    """A fresh copy of the template's folder."""
    _COUNTER[0] += 1
    dest = _root() / "work" / f"{_COUNTER[0]}-{t.name}"
    shutil.copytree(t.path, dest)
    return dest


# ----------------------------------------------------------------------------- JSON damage
def _nan() -> float:
    return float("nan")


JUNK: list[Any] = [None, True, False, 0, -1, 1, 1.5, -0.5, 10**30, 2**64, 10**400, 1e308,
                   -1e308, "nan", "inf", "-inf", "", "x", "tiny", "three", [], [1, 2], {},
                   {"a": 1}, [[1]], [None]]


def _junk(rng: np.random.Generator) -> Any:
    v = JUNK[int(rng.integers(len(JUNK)))]
    if v == "nan":
        return _nan()
    if v == "inf":
        return math.inf
    if v == "-inf":
        return -math.inf
    return copy.deepcopy(v)


def _kind(v: Any) -> str:
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int):
        return "int"
    if isinstance(v, float):
        return "nan" if math.isnan(v) else "float"
    if v is None:
        return "null"
    return type(v).__name__


def _replacement_must_fail(old: Any, new: Any) -> bool:
    """Whether a validated field must refuse ``new`` where ``old`` was saved."""
    a, b = _kind(old), _kind(new)
    if "null" in (a, b):
        return False  # several fields are "X or null"
    if b == "nan":
        return a in ("int", "float")  # no number of our formats may be NaN
    if a == b or (a == "float" and b == "int"):
        return False
    return True


def _walk(doc: Any, prefix: tuple = ()) -> list[tuple[tuple, Any]]:
    out = [(prefix, doc)]
    if isinstance(doc, dict):
        for k, v in doc.items():
            out += _walk(v, prefix + (k,))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            out += _walk(v, prefix + (i,))
    return out


def _get(doc: Any, path: tuple) -> Any:
    for k in path:
        doc = doc[k]
    return doc


# Where a file's values are free (the user's config, task options, notes) or checked only by
# a task plugin: damage there may load.
FREE: dict[str, list[tuple]] = {
    "config.json": [("config",)],
    "run.json": [("options",), ("info",), ("message",), ("created",), ("updated",),
                 ("pylstm_version",)],
    "checkpoint/state.json": [("history",), ("options",)],
    "model.json": [()],
    "history.json": [()],
    "metrics.json": [()],
}
OPTIONAL_KEYS = {"pending", "optimizer", "scheduler", "initial_lr"}


def _free(file: str, path: tuple) -> bool:
    return any(path[:len(z)] == z for z in FREE.get(file, []))


def damage_json(doc: Any, file: str, rng: np.random.Generator
                ) -> tuple[Any, str, bool, tuple]:
    """``(damaged document, what was done, whether a validating loader must refuse it, the
    path of the damaged value)``."""
    doc = copy.deepcopy(doc)
    nodes = _walk(doc)
    op = str(rng.choice(["replace", "replace", "replace", "delete", "add", "wrap", "root"]))
    if op == "root":
        new = rng.choice(["list", "string", "number", "null"])
        value = {"list": [doc], "string": "x", "number": 3, "null": None}[str(new)]
        return value, f"root -> {new}", not _free(file, ()), ()
    path, old = nodes[int(rng.integers(1, len(nodes)))] if len(nodes) > 1 else nodes[0]
    where = "/".join(map(str, path))
    if not path:
        return [doc], "root wrapped in a list", not _free(file, ()), ()
    parent = _get(doc, path[:-1])
    if op == "delete":
        if isinstance(parent, dict):
            del parent[path[-1]]
            fails = not _free(file, path) and path[-1] not in OPTIONAL_KEYS
        else:
            del parent[path[-1]]
            fails = False  # a list one shorter: fixed-length lists refuse it, others may not
        return doc, f"delete {where}", fails, path
    if op == "add":
        target = parent if isinstance(parent, dict) else doc if isinstance(doc, dict) else None
        if target is None:
            op = "replace"
        else:
            target["fuzz_unexpected"] = 1
            at_root = target is doc
            return doc, f"add key next to {where}", at_root and file in (
                "run.json", "config.json", "checkpoint/state.json"), () if at_root else path
    if op == "wrap":
        parent[path[-1]] = [old]
        return doc, f"wrap {where} in a list", (not _free(file, path)
                                               and _kind(old) != "null"), path
    new = _junk(rng)
    parent[path[-1]] = new
    return doc, f"{where}: {_short(old)} -> {_short(new)}", (
        not _free(file, path) and _replacement_must_fail(old, new)), path


# The brief's named holes, aimed at exactly: (file, path, value).
TARGETED: list[tuple[str, tuple, Any]] = [
    ("config.json", ("optimizer", "param_groups", 0, "eps"), "tiny"),
    ("config.json", ("optimizer", "param_groups", 0, "betas"), "x"),
    ("config.json", ("optimizer", "param_groups", 0, "betas"), [0.9, "x"]),
    ("config.json", ("optimizer", "param_groups", 0, "betas"), [2.0, 0.5]),
    ("config.json", ("optimizer", "param_groups", 0, "lr"), -1.0),
    ("config.json", ("optimizer", "param_groups", 0, "lr"), "nan"),
    ("config.json", ("optimizer", "param_groups", 0, "momentum"), "x"),
    ("config.json", ("optimizer", "param_groups", 0, "weight_decay"), -0.5),
    ("config.json", ("optimizer", "param_groups", 0, "params"), ["nope"]),
    ("config.json", ("optimizer", "scalar_state", "*", "step"), "three"),
    ("config.json", ("optimizer", "scalar_state", "*", "step"), -3),
    ("config.json", ("optimizer", "scalar_state", "*", "step"), 10**400),
    ("config.json", ("optimizer", "scalar_state", "*", "step"), 1e308),
    ("config.json", ("optimizer", "arrays"), {"a": 1}),
    ("config.json", ("optimizer", "arrays", 0), ["x", "y"]),
    ("config.json", ("rng_states",), []),
    ("config.json", ("rng_states", "*"), [1, 2]),
    ("config.json", ("rng_states", "*", "state", "state"), -5),
    ("config.json", ("rng_states", "*", "state", "state"), 2**200),
    ("config.json", ("rng_states", "*", "state", "state"), "x"),
    ("config.json", ("rng_states", "*", "has_uint32"), 1.5),
    ("config.json", ("rng_states", "*", "bit_generator"), "MT19937"),
    ("config.json", ("scheduler", "state", "last_epoch"), "three"),
    ("config.json", ("scheduler", "state", "last_epoch"), 10**400),
    ("config.json", ("scheduler", "state", "base_lrs"), "x"),
    ("config.json", ("scheduler", "state", "base_lrs", 0), "nan"),
    ("config.json", ("scheduler", "state", "gamma"), "x"),
    ("config.json", ("scheduler", "state", "gamma"), -2.0),
    ("config.json", ("scheduler", "state", "step_size"), 0),
    ("config.json", ("scheduler", "state", "total_steps"), 0),
    ("config.json", ("scheduler", "state", "warmup_steps"), 100),
    ("config.json", ("scheduler", "state", "best"), "nan"),
    ("config.json", ("scheduler", "state", "mode"), "mid"),
    ("config.json", ("scheduler", "state", "cooldown_counter"), 50),
    ("config.json", ("scheduler", "state"), [1]),
    ("config.json", ("scheduler",), "x"),
    ("config.json", ("parameters",), []),
    ("config.json", ("parameters", "*", "shape"), [99]),
    ("config.json", ("files", "model.safetensors", "size"), 10**30),
    ("config.json", ("files", "model.safetensors", "sha256"), "0" * 64),
    ("config.json", ("files",), []),
    ("config.json", ("version",), 1),
    ("config.json", ("version",), "2"),
    ("config.json", ("config",), [1]),
    ("run.json", ("status",), "done"),
    ("run.json", ("seed",), -1),
    ("run.json", ("seed",), "nan"),
    ("run.json", ("threads",), 0),
    ("run.json", ("files",), [1]),
    ("run.json", ("files", "model.safetensors"), {"sha256": "x", "size": 1}),
    ("run.json", ("pending",), ["model.safetensors"]),
    ("run.json", ("pending",), "model.safetensors"),
    ("run.json", ("options",), [1]),
    ("checkpoint/state.json", ("epoch",), "three"),
    ("checkpoint/state.json", ("step",), -1),
    ("checkpoint/state.json", ("best",), "nan"),
    ("checkpoint/state.json", ("elapsed",), -1.0),
    ("checkpoint/state.json", ("history",), {"a": 1}),
    ("checkpoint/state.json", ("rng_states",), []),
    ("checkpoint/state.json", ("optimizer", "param_groups", 0, "eps"), "tiny"),
    ("checkpoint/state.json", ("optimizer", "scalar_state", "*", "step"), "three"),
    ("checkpoint/state.json", ("scheduler", "state", "last_epoch"), "three"),
    ("checkpoint/state.json", ("scheduler", "state", "gamma"), 0),
]


def _targeted(doc: Any, file: str, rng: np.random.Generator
              ) -> tuple[Any, str, tuple] | None:
    options = [(p, v) for f, p, v in TARGETED if f == file]
    rng.shuffle(options)
    for path, value in options:
        doc2 = copy.deepcopy(doc)
        node = doc2
        ok = True
        for k in path[:-1]:
            if k == "*":
                if not isinstance(node, dict) or not node:
                    ok = False
                    break
                k = sorted(node)[0]
            try:
                node = node[k]
            except (KeyError, IndexError, TypeError):
                ok = False
                break
        last = path[-1]
        if ok and last == "*":
            ok = isinstance(node, dict) and bool(node)
            last = sorted(node)[0] if ok else last
        if not ok or not isinstance(node, (dict, list)):
            continue
        if isinstance(node, dict) and last not in node or isinstance(node, list) and (
                not isinstance(last, int) or last >= len(node)):
            continue
        value = {"nan": _nan()}.get(value, value) if isinstance(value, str) else value
        node[last] = copy.deepcopy(value)
        return doc2, f"{'/'.join(map(str, path))} = {_short(value)}", path
    return None


def _short(v: Any) -> str:
    if isinstance(v, np.ndarray):
        return f"array {v.dtype}{list(v.shape)}"
    r = repr(v)
    return r if len(r) < 40 else r[:37] + "..."


# ----------------------------------------------------------------------------- safetensors damage
def _split_st(raw: bytes) -> tuple[dict[str, Any], bytes]:
    n = struct.unpack("<Q", raw[:8])[0]
    return json.loads(raw[8:8 + n]), raw[8 + n:]


def _join_st(header: Any, data: bytes) -> bytes:
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + data


def damage_safetensors(raw: bytes, rng: np.random.Generator, parsed: bool, strict: bool,
                       model: bool) -> tuple[bytes, str, bool]:
    """``(damaged bytes, what was done, whether a loader that parses it must refuse it)``;
    ``parsed``: whether the loader parses the file (not only checks its digest); ``strict``:
    whether it refuses missing and unexpected names; ``model``: whether it loads the arrays
    into a model (which knows the names, shapes and dtypes)."""
    strict = strict and model
    header, data = _split_st(raw)
    names = sorted(k for k in header if k != "__metadata__")
    name = names[int(rng.integers(len(names)))]
    entry = header[name]
    op = str(rng.choice(["truncate", "flip_header", "flip_data", "length", "reshape", "dtype",
                         "offsets", "drop", "rename", "huge_shape", "garbage", "metadata",
                         "extra"]))
    if op == "truncate":
        p = int(rng.integers(0, len(raw)))
        return raw[:p], f"truncated at {p} of {len(raw)}", parsed
    if op == "flip_header":
        p = 8 + int(rng.integers(0, len(raw) - 8 - len(data)))
        b = bytearray(raw)
        b[p] ^= 1 << int(rng.integers(8))
        return bytes(b), f"bit flipped in the header at {p}", False
    if op == "flip_data":
        if not data:
            return raw + b"\0", "a byte appended", parsed
        p = len(raw) - len(data) + int(rng.integers(len(data)))
        b = bytearray(raw)
        b[p] ^= 1 << int(rng.integers(8))
        return bytes(b), f"bit flipped in the data at {p}", False
    if op == "length":
        n = struct.unpack("<Q", raw[:8])[0]
        values = [0, 1, n - 8, n + 8, len(raw), 2**63, 2**64 - 1]
        new = values[int(rng.integers(len(values)))]
        return struct.pack("<Q", max(0, new)) + raw[8:], f"header length {n} -> {new}", parsed
    if op == "reshape":
        shape = list(entry["shape"])
        count = int(np.prod(shape)) if shape else 1
        options = [[count], [1, *shape], [*shape, 1], shape[::-1]]
        options = [s for s in options if s != shape]
        new_shape = options[int(rng.integers(len(options)))]
        entry["shape"] = new_shape
        return _join_st(header, data), f"{name}: shape {shape} -> {new_shape}", parsed and model
    if op == "dtype":
        new = str(rng.choice(["I32", "U32", "F16", "F64", "U8", "BOOL", "XX", "BF16"]))
        old = entry["dtype"]
        entry["dtype"] = new
        return _join_st(header, data), f"{name}: dtype {old} -> {new}", parsed and (
            new in ("XX", "F64", "U8", "F16", "BF16")  # the sizes no longer add up
            or model and new == "BOOL")  # not a number
    if op == "offsets":
        a, b = entry["data_offsets"]
        new = [[b, a], [a, b + 4], [a, len(data) + 1], [-1, b], ["0", b], [a], [0, 10**12]][
            int(rng.integers(7))]
        if new == [a, b]:
            new = [a, b + 4]
        entry["data_offsets"] = new
        return _join_st(header, data), f"{name}: data_offsets {[a, b]} -> {new}", parsed
    if op == "drop":
        del header[name]
        return _join_st(header, data), f"{name} dropped from the header", parsed and strict
    if op == "rename":
        header[name + ".x"] = header.pop(name)
        return _join_st(header, data), f"{name} renamed", parsed and strict
    if op == "huge_shape":
        entry["shape"] = [2**40, 2**40]
        return _join_st(header, data), f"{name}: shape -> [2**40, 2**40]", parsed
    if op == "garbage":
        choice = int(rng.integers(3))
        text = [b"not json", b"[1, 2, 3]", b'{"a": 5}'][choice]
        return (struct.pack("<Q", len(text)) + text + data,
                f"header replaced by {text.decode()!r}", parsed and choice < 2)
    if op == "metadata":
        header["__metadata__"] = [{"format": 5}, [1], "x"][int(rng.integers(3))]
        return _join_st(header, data), f"__metadata__ -> {header['__metadata__']!r}", False
    # extra: a second entry over the same bytes
    header[name + ".copy"] = dict(entry)
    return _join_st(header, data), f"{name} listed twice", parsed and strict


# ----------------------------------------------------------------------------- comparing state
def _equal(a: Any, b: Any) -> bool:
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return (isinstance(a, np.ndarray) and isinstance(b, np.ndarray) and a.shape == b.shape
                and a.dtype == b.dtype and np.array_equal(a, b, equal_nan=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return type(a) is type(b) and a == b


def snapshot(model: Any = None, opt: Any = None, sched: Any = None) -> dict[str, Any]:
    """Everything a failed load must leave as it was."""
    out: dict[str, Any] = {}
    if model is not None:
        out["weights"] = {k: np.array(p.data, copy=True)
                          for k, p in model.named_parameters(remove_duplicate=False)}
        out["rngs"] = {k: copy.deepcopy(r.bit_generator.state) for k, r in model.named_rngs()}
    if opt is not None:
        out["optimizer"] = copy.deepcopy(opt.state_dict())
        out["groups"] = [{k: copy.deepcopy(v) for k, v in g.items() if k != "params"}
                         for g in opt.param_groups]
    if sched is not None:
        out["scheduler"] = copy.deepcopy(sched.state_dict())
    return out


def changed(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    return [k for k in before if not _equal(before[k], after[k])]


class Violation(Exception):
    """A broken promise found inside a call (reported by the oracle as a foreign class)."""


def checked_call(run: Callable[[], Any], prefixes: list[str],
                 state: Callable[[], dict[str, Any]] | None,
                 after_success: Callable[[Any], None] | None = None) -> Callable[[], Any]:
    """``run`` wrapped: an error must be one line starting with one of ``prefixes`` and leave
    ``state()`` as it was; after a success ``after_success(result)`` must not raise."""

    def call() -> Any:
        before = state() if state is not None else None
        try:
            out = run()
        except PylstmError as exc:
            msg = str(exc)
            if "\n" in msg.strip():
                raise Violation(f"the message is not one line: {msg!r}") from None
            if prefixes and not any(msg.startswith(p) for p in prefixes):
                raise Violation(f"the message names none of {prefixes}: "
                                f"{type(exc).__name__}: {msg}") from None
            if before is not None:
                moved = changed(before, state())
                if moved:
                    raise Violation(f"a failed load changed {moved}: {type(exc).__name__}: "
                                    f"{msg}") from None
            raise
        if after_success is not None:
            try:
                after_success(out)
            except Exception as exc:  # noqa: BLE001 - any failure after a load is the finding
                raise Violation(f"loaded, then failed on first use: {type(exc).__name__}: "
                                f"{exc}") from None
        return out

    return call


# ----------------------------------------------------------------------------- loaders
@dataclass
class Loader:
    """One public loader applied to a work folder."""

    name: str
    reads: set[str]  # files whose digest or contents it checks
    parses: set[str]  # files whose contents it parses
    make: Callable[[Path, Template], tuple[Callable[[], Any],
                                           Callable[[], dict[str, Any]] | None,
                                           Callable[[Any], None] | None]]
    ignores: tuple[tuple, ...] = ()  # JSON subtrees of the files it parses that it never reads
    strict: bool = True  # refuses missing and unexpected tensor names
    model: bool = True  # loads the arrays into a model
    # The task plugin builds the model from model.json and passes the arrays to
    # Module.load_state_dict: those errors name the argument or the key ("hidden_size: ...",
    # "state_dict: ...") but cannot know the file.
    state_dict: bool = False
    optional: frozenset[str] = frozenset()  # read when recorded, fine when not


def _fresh(t: Template) -> tuple[Net, Any, Any]:
    opt_name = t.meta.get("opt", "adam")
    sched_name = t.meta.get("sched", "step")
    model, opt, sched = _objects("adam" if opt_name == "none" else opt_name, sched_name,
                                 seed=11, steps=1)
    return model, (None if opt_name == "none" else opt), sched


_MODEL_ONLY = (("optimizer",), ("scheduler",))  # what a model-only load leaves unread


def _ckpt_loaders(t: Template) -> list[Loader]:
    files = set(t.files)

    def full(folder: Path, t: Template):
        model, opt, sched = _fresh(t)

        def go():
            return nn.load_checkpoint(folder, model, optimizer=opt, scheduler=sched)

        return go, lambda: snapshot(model, opt, sched), lambda _: _train_step(
            model, opt or nn.SGD(model, lr=0.1), sched)

    def model_only(folder: Path, t: Template):
        model, _, _ = _fresh(t)
        return (lambda: nn.load_checkpoint(folder, model), lambda: snapshot(model),
                lambda _: _train_step(model, nn.SGD(model, lr=0.1), None))

    def lenient(folder: Path, t: Template):
        model, _, _ = _fresh(t)
        return (lambda: nn.load_checkpoint(folder, model, strict=False), lambda: snapshot(model),
                lambda _: _train_step(model, nn.SGD(model, lr=0.1), None))

    weights = {"config.json", "model.safetensors"}
    return [Loader("load_checkpoint(model, optimizer, scheduler)", files, files, full),
            Loader("load_checkpoint(model)", weights, weights, model_only, _MODEL_ONLY),
            Loader("load_checkpoint(model, strict=False)", weights, weights, lenient,
                   _MODEL_ONLY, strict=False)]


def _weights_loaders(t: Template) -> list[Loader]:
    def make(checked: bool):
        def build(folder: Path, t: Template):
            model, _, _ = _fresh(t)
            sha = t.meta["sha256"] if checked else None

            def go():
                model.load_state_dict(nn.load_weights(folder / "w.safetensors", sha256=sha))

            return go, lambda: snapshot(model), None

        return build

    return [Loader("load_weights(sha256=...) + load_state_dict", {"w.safetensors"},
                   {"w.safetensors"}, make(True)),
            Loader("load_weights + load_state_dict", set(), {"w.safetensors"}, make(False))]


def _run_loaders(t: Template) -> list[Loader]:
    from pylstm.runs import Run

    model_files = {"run.json", "model.safetensors", "model.json"}
    out = [
        Loader("Run.open", {"run.json"}, {"run.json"}, lambda folder, t: (
            lambda: Run.open(folder), None, None), model=False),
        Loader("Run.load_tensors", model_files, model_files, lambda folder, t: (
            lambda: Run.open(folder, require_complete=False).load_tensors("model"), None,
            None), model=False, optional=frozenset({"model.json"})),  # the config is optional
    ]
    if t.kind == "trainer":
        from pylstm.runtime import get_num_threads
        from pylstm.train import state as train_state

        ck = {"run.json", "checkpoint/state.json", "checkpoint/last.safetensors",
              "checkpoint/optimizer.safetensors"}

        def resume(folder: Path, t: Template):
            model, opt, sched = _objects("adam", "step", seed=11, steps=1)

            def go():
                run = Run.open(folder, require_complete=False)
                return train_state.load_checkpoint(
                    run, model, opt, sched, seed=TRAIN_SEED, threads=get_num_threads(),
                    options=_trainer_options().to_dict())

            return go, lambda: snapshot(model, opt, sched), lambda _: _train_step(
                model, opt, sched)

        out.append(Loader("the trainer's resume (train.state.load_checkpoint)",
                          ck | {"checkpoint/best.safetensors"}, ck, resume))
    if t.kind == "task":
        def load(folder: Path, t: Template):
            return (lambda: pylstm.load(folder), None, lambda p: p.forecast(2))

        out.append(Loader("pylstm.load", model_files, model_files, load, state_dict=True))
    return out


def loaders(t: Template) -> list[Loader]:
    if t.kind == "ckpt":
        return _ckpt_loaders(t)
    if t.kind == "weights":
        return _weights_loaders(t)
    return _run_loaders(t)


# ----------------------------------------------------------------------------- digests
def _rehash(folder: Path, t: Template, name: str) -> str | None:
    """Record ``name``'s new digest in the template's manifest (or return it, for a weights
    file whose digest the caller passes)."""
    path = folder / name
    raw = path.read_bytes() if path.exists() else b""
    digest = {"sha256": hashlib.sha256(raw).hexdigest(), "size": len(raw)}
    if t.manifest is None:
        return digest["sha256"]
    mpath = folder / t.manifest
    doc = json.loads(mpath.read_text())
    if isinstance(doc, dict) and isinstance(doc.get("files"), dict) and name in doc["files"]:
        doc["files"][name] = digest
        mpath.write_text(json.dumps(doc, indent=2, sort_keys=True))
    return None


def _digested(t: Template, name: str) -> bool:
    return name != t.manifest and (t.kind == "weights" or (t.manifest is not None and name in
                                                            _manifest_files(t)))


def _manifest_files(t: Template) -> set[str]:
    doc = json.loads((t.path / t.manifest).read_text())  # type: ignore[operator]
    return set(doc.get("files", {}))


# ----------------------------------------------------------------------------- cases
def _case_for(t: Template, rng: np.random.Generator) -> Case:
    loader = list(loaders(t))[int(rng.integers(len(loaders(t))))]
    folder = work_copy(t)
    candidates = [f for f in t.files if not f.endswith(".png")]
    # aim at what the loader reads most of the time
    read = [f for f in candidates if f in loader.reads or f in loader.parses]
    name = str(rng.choice(read if read and rng.random() < 0.85 else candidates))
    path = folder / name
    raw = path.read_bytes()
    digested = _digested(t, name) and name in loader.reads
    rehash = digested and rng.random() < 0.6
    must_fail = False
    control = rng.random() < 0.04
    if control:
        what = "untouched (control)"
    elif name.endswith(".safetensors"):
        new, what, must_fail = damage_safetensors(raw, rng, name in loader.parses,
                                                     loader.strict, loader.model)
        path.write_bytes(new)
        if new == raw:
            must_fail = False
    elif name.endswith(".json"):
        op = rng.random()
        if op < 0.12:
            p = int(rng.integers(0, len(raw.rstrip())))
            path.write_bytes(raw[:p])
            what, must_fail = f"truncated at {p} of {len(raw)}", name in loader.parses
        elif op < 0.22:
            p = int(rng.integers(len(raw)))
            b = bytearray(raw)
            b[p] ^= 1 << int(rng.integers(8))
            path.write_bytes(bytes(b))
            what, must_fail = f"bit flipped at {p}", False
        elif op < 0.27:
            path.write_bytes(raw + b"\x00garbage")
            what, must_fail = "garbage appended", name in loader.parses
        else:
            doc = json.loads(raw)
            hit = _targeted(doc, name, rng) if rng.random() < 0.45 else None
            if hit is not None:
                new_doc, what, where = hit
                must_fail = name in loader.parses
            else:
                new_doc, what, must_fail, where = damage_json(doc, name, rng)
                must_fail = must_fail and name in loader.parses
            if name == "config.json" and any(where[:len(z)] == z for z in loader.ignores):
                must_fail = False
            deleted = what.startswith("delete")
            if deleted and where[:1] == ("files",) and len(where) == 2:
                # an unrecorded file it does not need
                must_fail = where[1] in loader.reads and where[1] not in loader.optional
            if deleted and where[:1] == ("rng_states",) and not loader.strict:
                must_fail = False
            path.write_text(json.dumps(new_doc, indent=2))
    else:
        p = int(rng.integers(0, max(1, len(raw))))
        path.write_bytes(raw[:p])
        what, must_fail = f"truncated at {p}", False
    if control:
        expect = "ok"
    elif digested and not rehash and path.read_bytes() != raw:
        expect = "error"  # the recorded digest no longer matches
    else:
        expect = "error" if must_fail else "any"
    new_digest = _rehash(folder, t, name) if rehash else None
    if t.kind == "weights" and rehash:
        t = Template(t.name, t.path, t.kind, t.manifest, t.files,
                     {**t.meta, "sha256": new_digest})
    run, state, after = loader.make(folder, t)
    digest = "recorded anew" if rehash else "stale" if digested else "none"
    desc = f"{t.name}/{name}: {what} (digest {digest}) -> {loader.name}"
    # Module.load_state_dict cannot know the file its arrays came from
    prefixes = [str(folder), "directory", "path"] + (
        ["state_dict"] if t.kind == "weights" else
        ["state_dict", "input_size", "hidden_size"] if loader.state_dict else [])
    call = checked_call(run, prefixes, state, after)

    def cleanup_call() -> Any:
        try:
            return call()
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    return Case(desc=desc, call=cleanup_call, expect=expect)


# ----------------------------------------------------------------------------- state dicts
def _state_case(rng: np.random.Generator) -> Case:
    """An optimiser's or a schedule's ``load_state_dict`` on a damaged state dict."""
    opt_name = str(rng.choice(sorted(OPTIMIZERS)))
    sched_name = str(rng.choice([s for s in SCHEDULES if s != "none"]))
    src_model, src_opt, src_sched = _objects(opt_name, sched_name, seed=7, steps=2)
    model, opt, sched = _objects(opt_name, sched_name, seed=8, steps=1)
    which = "optimizer" if rng.random() < 0.5 else "scheduler"
    target = opt if which == "optimizer" else sched
    good = (src_opt if which == "optimizer" else src_sched).state_dict()
    control = rng.random() < 0.05
    if control:
        bad, what, must_fail = good, "untouched (control)", False
    else:
        bad, what, must_fail = _damage_state(good, rng)
    expect = "ok" if control else "error" if must_fail else "any"

    def go():
        target.load_state_dict(bad)

    call = checked_call(go, ["state_dict"], lambda: snapshot(model, opt, sched),
                        lambda _: _train_step(model, opt, sched))
    return Case(desc=f"{type(target).__name__}.load_state_dict: {what}", call=call,
                expect=expect, names={"state_dict"})


def _damage_state(good: dict[str, Any], rng: np.random.Generator
                  ) -> tuple[dict[str, Any], str, bool]:
    doc = copy.deepcopy(good)
    nodes = [(p, v) for p, v in _walk(doc) if p]
    path, old = nodes[int(rng.integers(len(nodes)))]
    parent = _get(doc, path[:-1])
    where = "/".join(map(str, path))
    if isinstance(old, np.ndarray):
        op = int(rng.integers(4))
        new: Any = [old.T.copy() if old.ndim == 2 else old[:-1].copy(),
                    old.astype(np.float64 if old.dtype == np.float32 else np.float32),
                    old.tolist(), np.zeros(old.shape, np.int32)][op]
        fails = True if not (op == 0 and old.ndim == 2 and old.shape[0] == old.shape[1]) \
            else False
        parent[path[-1]] = new
        return doc, f"{where}: array {old.dtype}{list(old.shape)} -> {_short(new)}", fails
    r = rng.random()
    if r < 0.15 and isinstance(parent, dict):
        del parent[path[-1]]
        # a missing optimizer option keeps the live one; everything else must be there
        return doc, f"delete {where}", path[0] != "param_groups" and path[0] != "state"
    if r < 0.25 and isinstance(parent, dict):
        parent["fuzz_unexpected"] = 1
        return doc, f"add a key next to {where}", len(path) == 1 or path[0] == "param_groups"
    new = _junk(rng)
    parent[path[-1]] = new
    return doc, f"{where}: {_short(old)} -> {_short(new)}", _replacement_must_fail(old, new)


# ----------------------------------------------------------------------------- entry
FAMILIES = [  # (share of the cases, templates)
    (0.35, [n for n in TEMPLATE_NAMES if n.startswith("ckpt-")]),
    (0.10, ["weights"]),
    (0.25, ["trainer"]),
    (0.15, ["ar-sine", "sine-lstm"]),
]


def make_case(rng: np.random.Generator) -> Case:
    r = rng.random()
    for share, names in FAMILIES:
        if r < share:
            t = template(names[int(rng.integers(len(names)))])
            if t is None:  # the example plugin is not installed
                t = template("trainer")
            assert t is not None
            return _case_for(t, rng)
        r -= share
    return _state_case(rng)
