"""The run folder: one format for every task's training run.

::

    run.json                 format, version, task, status, options, seed, threads, pylstm
                             version, times, info, and ``files``: name -> sha256 and size
    metrics.json             the held-out metrics (written by :meth:`Run.finish`)
    history.json             one row per epoch (written by the trainer)
    <name>.safetensors       weights (:meth:`Run.save_tensors`), with the model config in
    <name>.json              (e.g. ``model.safetensors`` + ``model.json``)
    tokenizer files          (:meth:`Run.add_file`)
    checkpoint/              the trainer's per-epoch checkpoint (``last``, ``best``, ``state.json``)

Every file is written to ``<name>.partial``, fsynced and renamed into place, and run.json,
which records every file's digest, is rewritten last (through a ``pending`` journal, see
:func:`pylstm.nn.checkpoint.commit_files`): a kill at any moment leaves a consistent folder.
Every read checks the file's size and sha256 against run.json first, so a flipped bit is an
error naming the file, never a silently different model.

**One writer at a time.** A process that writes a run for a while (``pylstm train``, a
``--resume``) holds the folder's lock: ``Run.create(..., lock=True)``,
``Run.open(..., lock=True)`` or ``with run.locked_for_writing():``. It is an ``fcntl.flock``
on ``run.lock`` inside the folder, holding the holder's pid; the kernel releases it when the
process ends, however it ends (a SIGKILL too), so a stale ``run.lock`` never blocks anyone.
While it is held, every other process's write (and a second lock) is refused with an error
naming the folder and the holder's pid, instead of interleaving commits. A write by a process
that holds no lock takes it for the commit's duration. Readers (``Run.open``,
``pylstm.load``) take no lock; one that finds a commit in progress waits for it to finish.
Within one process the lock is shared (a second ``Run`` of the same folder may write). Where
``fcntl`` does not exist (Windows) there is no lock.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import time
import weakref
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no lock
    fcntl = None  # type: ignore[assignment]

import numpy as np

import pylstm
from pylstm.errors import CheckpointError, DTypeError, LstmValueError
from pylstm.nn.checkpoint import (
    check_files,
    commit_files,
    dump_json,
    parse_json,
    parse_tensors,
    read_json,
    read_verified,
    recover_files,
    tensors_writer,
)

__all__ = ["LOCK_FILE", "RUN_FILE", "STATUSES", "Run", "lock_holder"]

RUN_FILE = "run.json"
LOCK_FILE = "run.lock"
FORMAT = "pylstm.run"
VERSION = 1
STATUSES = ("running", "complete", "interrupted", "failed")
_KEYS = {"format", "version", "task", "status", "message", "options", "seed", "threads",
         "pylstm_version", "created", "updated", "info", "files"}


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _check_seed(seed: Any, where: str, error: type[Exception] = LstmValueError) -> int:
    if not _is_int(seed) or seed < 0:
        raise error(f"{where}seed: expected an integer >= 0, got {seed!r}")
    return int(seed)


def _check_threads(threads: Any, where: str, error: type[Exception] = LstmValueError
                   ) -> int | None:
    if threads is not None and (not _is_int(threads) or threads < 1):
        raise error(f"{where}threads: expected None or an integer >= 1, got "
                             f"{threads!r}")
    return None if threads is None else int(threads)


def _check_manifest(data: Any, path: Path) -> dict[str, Any]:
    """Validate run.json completely: every key, its type and range."""
    where = f"{path}: "
    if not isinstance(data, dict):
        raise CheckpointError(f"{where}expected a JSON object, got {type(data).__name__}")
    missing = sorted(_KEYS - set(data))
    unexpected = sorted(set(data) - _KEYS - {"pending"})
    if missing or unexpected:
        raise CheckpointError(f"{where}expected the keys {sorted(_KEYS)}, got missing {missing}"
                              f" and unexpected {unexpected}")
    if data["format"] != FORMAT:
        raise CheckpointError(f"{where}format: expected {FORMAT!r}, got {data['format']!r}")
    if data["version"] != VERSION or not _is_int(data["version"]):
        raise CheckpointError(f"{where}version: expected {VERSION}, got {data['version']!r}")
    for key in ("task", "pylstm_version", "created", "updated"):
        if not isinstance(data[key], str) or not data[key]:
            raise CheckpointError(f"{where}{key}: expected a non-empty string, got "
                                  f"{data[key]!r}")
    if data["status"] not in STATUSES:
        raise CheckpointError(f"{where}status: expected one of {list(STATUSES)}, got "
                              f"{data['status']!r}")
    if data["message"] is not None and not isinstance(data["message"], str):
        raise CheckpointError(f"{where}message: expected a string or null, got "
                              f"{data['message']!r}")
    for key in ("options", "info"):
        if not isinstance(data[key], dict):
            raise CheckpointError(f"{where}{key}: expected an object, got "
                                  f"{type(data[key]).__name__}")
    _check_seed(data["seed"], where, CheckpointError)
    _check_threads(data["threads"], where, CheckpointError)
    check_files(data, str(path))
    return data


# ----------------------------------------------------------------------------- the folder lock
# This process's locks: the folder's (st_dev, st_ino) -> [fd of run.lock, holders]. flock
# treats two open() of one file as two owners even in one process, so the process keeps one
# descriptor per folder and counts the Runs that hold it.
_HELD: dict[tuple[int, int], list[int]] = {}
_COMMIT_WAIT = 10.0  # seconds a reader waits for another process's commit to finish


def _forget_locks_in_child() -> None:
    """A forked child does not hold its parent's locks: close the inherited descriptors (the
    parent's lock stays) so the child's writes ask for the lock like anyone else's."""
    for fd, _ in _HELD.values():
        with contextlib.suppress(OSError):
            os.close(fd)
    _HELD.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_locks_in_child)


def _key(folder: Path) -> tuple[int, int]:
    st = os.stat(folder)
    return st.st_dev, st.st_ino


def _read_pid(lock: Path) -> int | None:
    for _ in range(20):  # the holder writes its pid right after taking the lock
        try:
            text = lock.read_text().strip()
        except OSError:
            return None
        if text.isdigit():
            return int(text)
        time.sleep(0.005)
    return None


def _busy(folder: Path, pid: int | None) -> CheckpointError:
    who = f"process {pid}" if pid is not None else "another process"
    return CheckpointError(
        f"{folder}: the run folder is being written by {who} (it holds {LOCK_FILE}); wait "
        "for it to finish or stop it, then try again")


def _try_lock(folder: Path, *, create: bool) -> int | None:
    """The descriptor of ``folder/run.lock`` locked by this process (``None`` if the file
    does not exist and ``create`` is false); a CheckpointError naming the holder if another
    process holds it."""
    path = folder / LOCK_FILE
    flags = os.O_RDWR | (os.O_CREAT if create else 0)
    try:
        fd = os.open(path, flags, 0o644)
    except FileNotFoundError:
        if create:
            raise
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise _busy(folder, _read_pid(path)) from None
    except BaseException:
        os.close(fd)
        raise
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


def _acquire(folder: Path, *, create: bool = True) -> tuple[int, int] | None:
    """Hold ``folder``'s lock for this process once more; returns its key (``None``: no
    lock file and not ``create``, or no fcntl)."""
    if fcntl is None:  # pragma: no cover - Windows
        return None
    key = _key(folder)
    held = _HELD.get(key)
    if held is not None:
        held[1] += 1
        return key
    fd = _try_lock(folder, create=create)
    if fd is None:
        return None
    _HELD[key] = [fd, 1]
    return key


def _release(key: tuple[int, int] | None) -> None:
    held = _HELD.get(key) if key is not None else None
    if held is None:
        return
    held[1] -= 1
    if held[1] <= 0:
        del _HELD[key]  # type: ignore[arg-type]
        with contextlib.suppress(OSError):
            os.close(held[0])  # closing the only descriptor releases the flock


def lock_holder(path: str | os.PathLike[str]) -> int | None:
    """The pid of the process holding the run folder's lock (this process's own pid when it
    holds it), or ``None`` when nobody does."""
    folder = Path(path)
    if fcntl is None or not (folder / LOCK_FILE).is_file():
        return None
    if _key(folder) in _HELD:
        return os.getpid()
    try:
        fd = _try_lock(folder, create=False)
    except CheckpointError:
        return _read_pid(folder / LOCK_FILE) or -1
    if fd is not None:
        os.close(fd)
    return None


def _check_name(name: Any) -> str:
    """A file name inside the run folder: relative, no '..', not run.json itself."""
    if not isinstance(name, str) or not name:
        raise LstmValueError(f"name: expected a non-empty relative file name, got {name!r}")
    parts = Path(name).parts
    if Path(name).is_absolute() or ".." in parts or name in (RUN_FILE, LOCK_FILE) or \
            name.endswith(".partial") or "\\" in name:
        raise LstmValueError(f"name: expected a relative file name inside the run folder "
                             f"(not {RUN_FILE} or {LOCK_FILE}, no '..'), got {name!r}")
    return Path(*parts).as_posix()


class Run:
    """A training run's folder (see the module docstring). Make one with :meth:`create`,
    open one with :meth:`open`."""

    def __init__(self, path: Path, manifest: dict[str, Any]) -> None:
        """Use :meth:`create` or :meth:`open`."""
        self._path = path
        self._manifest = manifest
        self._lock: tuple[int, int] | None = None
        self._unlock: weakref.finalize | None = None

    # ------------------------------------------------------------------ construction
    @classmethod
    def create(cls, path: str | os.PathLike[str], *, task: str, options: Mapping[str, Any],
               seed: int, threads: int | None = None, lock: bool = False) -> Run:
        """Make the run folder and write run.json with status ``"running"``.

        Refuses a folder that holds files but no run.json, and one that holds a run already
        (complete or not: an incomplete one is resumed, not recreated). With ``lock`` the
        folder's lock is taken before run.json is written and held until :meth:`close` (see
        the module docstring)."""
        path = Path(path)
        if not isinstance(task, str) or not task:
            raise LstmValueError(f"task: expected a non-empty string, got {task!r}")
        if not isinstance(options, Mapping):
            raise DTypeError(f"options: expected a dict, got {type(options).__name__}")
        options = dict(options)
        dump_json(options, "options")  # JSON-serialisable and finite, checked up front
        seed = _check_seed(seed, "")
        threads = _check_threads(threads, "")
        if path.exists() and not path.is_dir():
            raise CheckpointError(f"path: expected a folder for the run, got the file {path}")
        if (path / RUN_FILE).exists():
            status = _peek_status(path)
            if status == "complete":
                raise CheckpointError(f"path: {path} holds a complete run already; choose "
                                      "another folder")
            raise CheckpointError(f"path: {path} holds an incomplete run (status {status}); "
                                  f"resume it (pylstm train TASK --resume {path}) or choose "
                                  "another folder")
        if path.is_dir() and any(p.name != LOCK_FILE for p in path.iterdir()):
            raise CheckpointError(f"path: {path} holds files but no {RUN_FILE}, so it is not "
                                  "a run folder; choose an empty or a new folder")
        path.mkdir(parents=True, exist_ok=True)
        key = _acquire(path) if lock else None
        if lock and (path / RUN_FILE).exists():  # another process created it meanwhile
            _release(key)
            raise CheckpointError(f"path: {path} holds a run already (created while this one "
                                  "was being made); choose another folder")
        now = _now()
        manifest = {
            "format": FORMAT, "version": VERSION, "task": task, "status": "running",
            "message": None, "options": options, "seed": seed, "threads": threads,
            "pylstm_version": pylstm.__version__, "created": now, "updated": now, "info": {},
            "files": {},
        }
        run = cls(path, manifest)
        if key is not None:
            run._hold(key)
        try:
            run._commit({})
        except BaseException:
            run.close()
            raise
        return run

    @classmethod
    def open(cls, path: str | os.PathLike[str], *, require_complete: bool = True,
             lock: bool = False) -> Run:
        """Open a run folder, validating run.json completely (and finishing a save that a
        kill interrupted after its commit point). With ``require_complete`` an incomplete
        run is an error saying how to resume it. With ``lock`` (a process that will write,
        such as a resume) the folder's lock is taken first and held until :meth:`close`."""
        path = Path(path)
        file = path / RUN_FILE
        if not file.is_file():
            raise CheckpointError(f"path: expected a run folder, got {str(path)!r} (no "
                                  f"{RUN_FILE})")
        key = _acquire(path) if lock else None
        try:
            manifest = _open_manifest(path, file, held=key is not None)
            run = cls(path, manifest)
        except BaseException:
            _release(key)
            raise
        if key is not None:
            run._hold(key)
        if require_complete and run.status != "complete":
            why = f": {run.message}" if run.message else ""
            raise CheckpointError(
                f"{file}: the run is incomplete (status {run.status!r}{why}); resume it with "
                f"`pylstm train {run.task} --resume {path}` (or pylstm.train.Trainer(..., "
                f"run=Run.open(path, require_complete=False)).resume(...))")
        return run

    # ------------------------------------------------------------------ the lock
    def _hold(self, key: tuple[int, int]) -> None:
        self._lock = key
        self._unlock = weakref.finalize(self, _release, key)  # a dropped Run lets go

    @property
    def locked(self) -> bool:
        """Whether this Run holds the folder's lock (a forked child never does)."""
        return self._lock is not None and self._lock in _HELD

    def lock(self) -> None:
        """Take the folder's lock (held until :meth:`close`); a CheckpointError naming the
        holder's pid if another process holds it. A no-op when this Run holds it."""
        if not self.locked:
            self.close()
            key = _acquire(self._path)
            if key is not None:
                self._hold(key)

    def close(self) -> None:
        """Let go of the folder's lock, if this Run holds it (the Run stays readable; a
        later write takes the lock for its commit)."""
        if self._unlock is not None:
            self._unlock()  # calls _release once, and never again at garbage collection
        self._lock = self._unlock = None

    @contextlib.contextmanager
    def locked_for_writing(self) -> Iterator[Run]:
        """``with run.locked_for_writing():`` holds the lock for the block (if this Run did
        not hold it already, it lets go at the end)."""
        had = self.locked
        self.lock()
        try:
            yield self
        finally:
            if not had:
                self.close()

    def __enter__(self) -> Run:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # ------------------------------------------------------------------ properties
    @property
    def path(self) -> Path:
        """The run folder."""
        return self._path

    @property
    def task(self) -> str:
        """The task's name (the plugin that trained it)."""
        return str(self._manifest["task"])

    @property
    def status(self) -> str:
        """``"running"``, ``"complete"``, ``"interrupted"`` or ``"failed"``."""
        return str(self._manifest["status"])

    @property
    def message(self) -> str | None:
        """Why the run was interrupted or failed (``None`` otherwise)."""
        return self._manifest["message"]

    @property
    def options(self) -> dict[str, Any]:
        """The task options the run was created with (a copy)."""
        return _copy(self._manifest["options"])

    @property
    def seed(self) -> int:
        """The run's random seed."""
        return int(self._manifest["seed"])

    @property
    def threads(self) -> int | None:
        """The engine thread count the run was trained with (``None``: the default)."""
        return self._manifest["threads"]

    @property
    def info(self) -> dict[str, Any]:
        """Extra JSON facts recorded with :meth:`set_info` (a copy)."""
        return _copy(self._manifest["info"])

    @property
    def files(self) -> dict[str, dict[str, Any]]:
        """Recorded files: name -> ``{"sha256", "size"}`` (a copy)."""
        return _copy(self._manifest["files"])

    @property
    def pylstm_version(self) -> str:
        """The pylstm version that created the run."""
        return str(self._manifest["pylstm_version"])

    def __repr__(self) -> str:
        return f"Run({str(self._path)!r}, task={self.task!r}, status={self.status!r})"

    # ------------------------------------------------------------------ files
    def file(self, name: str) -> Path:
        """The path of file ``name`` inside the run folder (it need not exist)."""
        return self._path / _check_name(name)

    def has_file(self, name: str) -> bool:
        """Whether ``name`` is recorded in run.json."""
        return _check_name(name) in self._manifest["files"]

    def read_bytes(self, name: str) -> bytes:
        """The bytes of a recorded file, after checking its size and sha256."""
        return read_verified(self._path, _check_name(name), self._manifest["files"],
                             str(self._path / RUN_FILE))

    def verified_path(self, name: str) -> Path:
        """The path of a recorded file after checking its digest (for readers that take a
        path, such as a tokenizer's ``load``)."""
        self.read_bytes(name)
        return self.file(name)

    def write_files(self, writes: Mapping[str, Callable[[Path], object]]) -> None:
        """Write several files as one commit (name -> ``write(tmp_path)``): after a kill
        either all of them are new or none."""
        self._commit({_check_name(n): w for n, w in writes.items()})

    def add_file(self, name: str, write: Callable[[Path], object]) -> Path:
        """Write a file with ``write(tmp_path)`` (e.g. ``tokenizer.save``) and record its
        digest; returns its final path."""
        self.write_files({name: write})
        return self.file(name)

    def write_json(self, name: str, data: Any) -> None:
        """Write ``data`` as JSON file ``name`` (atomic; digest recorded)."""
        raw = dump_json(data, str(self.file(name)))
        self.write_files({name: lambda p: p.write_bytes(raw)})

    def read_json(self, name: str) -> Any:
        """Read a recorded JSON file (digest checked; errors name the file and position)."""
        return parse_json(self.read_bytes(name), str(self.file(name)))

    def save_tensors(self, name: str, tensors: Mapping[str, np.ndarray],
                     config: Mapping[str, Any] | None = None) -> None:
        """``<name>.safetensors`` (+ ``config`` as ``<name>.json``), one atomic commit."""
        base = _check_name(name)
        writes: dict[str, Callable[[Path], object]] = {
            f"{base}.safetensors": tensors_writer(tensors, str(self.file(base + ".safetensors")))
        }
        if config is not None:
            if not isinstance(config, Mapping):
                raise DTypeError(f"config: expected a dict or None, got "
                                 f"{type(config).__name__}")
            raw = dump_json(dict(config), str(self.file(base + ".json")))
            writes[f"{base}.json"] = lambda p: p.write_bytes(raw)
        self.write_files(writes)

    def load_tensors(self, name: str) -> tuple[dict[str, np.ndarray], dict[str, Any] | None]:
        """``(tensors, config or None)`` saved by :meth:`save_tensors`, digests checked
        first."""
        base = _check_name(name)
        tensors = parse_tensors(self.read_bytes(base + ".safetensors"),
                                str(self.file(base + ".safetensors")))
        config = None
        if self.has_file(base + ".json"):
            config = self.read_json(base + ".json")
            if not isinstance(config, dict):
                raise CheckpointError(f"{self.file(base + '.json')}: expected a JSON object, "
                                      f"got {type(config).__name__}")
        return tensors, config

    # ------------------------------------------------------------------ status
    def set_info(self, **items: Any) -> None:
        """Record JSON facts in run.json's ``info`` (merged into what is there)."""
        info = {**self._manifest["info"], **items}
        dump_json(info, "info")
        self._commit({}, info=info)

    def mark_running(self) -> None:
        """Status ``"running"`` again (a resumed run)."""
        self._set_status("running", None)

    def finish(self, metrics: Mapping[str, Any]) -> None:
        """Write ``metrics.json`` and mark the run complete, in one commit."""
        if not isinstance(metrics, Mapping):
            raise DTypeError(f"metrics: expected a dict, got {type(metrics).__name__}")
        raw = dump_json(dict(metrics), str(self.file("metrics.json")))
        self._commit({"metrics.json": lambda p: p.write_bytes(raw)}, status="complete",
                     message=None)

    def interrupt(self, message: str) -> None:
        """Mark the run interrupted (by the user), saying why."""
        self._set_status("interrupted", message)

    def fail(self, message: str) -> None:
        """Mark the run failed, with the error message."""
        self._set_status("failed", message)

    def _set_status(self, status: str, message: str | None) -> None:
        if message is not None and not isinstance(message, str):
            raise DTypeError(f"message: expected a string, got {type(message).__name__}")
        self._commit({}, status=status, message=message)

    def _commit(self, writes: Mapping[str, Callable[[Path], object]], **changes: Any) -> None:
        # Without the lock, take it for this commit: refused while another process holds it.
        # (No lock file: nobody ever locked the folder, and none is made for one commit.)
        key = None if self.locked else _acquire(self._path, create=False)
        try:
            manifest = {**self._manifest, **changes, "updated": _now()}
            self._manifest = commit_files(self._path, RUN_FILE, manifest, writes)
        finally:
            _release(key)


def _open_manifest(path: Path, file: Path, *, held: bool) -> dict[str, Any]:
    """run.json validated, with a commit that a kill interrupted finished. A commit that
    another process is making right now (it holds the lock) is waited for, not finished."""
    deadline = time.monotonic() + _COMMIT_WAIT
    while True:
        manifest = _check_manifest(read_json(file), file)
        if not manifest.get("pending"):
            return manifest
        if held:
            return recover_files(path, RUN_FILE, manifest)
        try:
            key = _acquire(path, create=False)
        except CheckpointError as busy:
            if time.monotonic() > deadline:
                raise CheckpointError(f"{file}: a save is still in progress after "
                                      f"{_COMMIT_WAIT:.0f} s ({busy})") from None
            time.sleep(0.02)
            continue
        try:  # nobody is writing: the writer was killed mid-commit; finish its renames
            return recover_files(path, RUN_FILE, _check_manifest(read_json(file), file))
        finally:
            _release(key)


def _peek_status(path: Path) -> str:
    data = read_json(path / RUN_FILE)
    status = data.get("status") if isinstance(data, dict) else None
    return status if isinstance(status, str) else "unknown"


def _copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value
