"""Durable files: atomic writes, digests, and the commit journal of a folder's manifest.

:func:`commit_files` writes each file to ``<name>.partial`` (flushed and fsynced), records
every new file's sha256 and size in a JSON *manifest* together with a ``pending`` list, renames
the partial files over the old ones, then rewrites the manifest without ``pending``. A kill at
any moment leaves the old files with the old manifest, or a manifest whose ``pending`` files
:func:`recover_files` can finish renaming: never a file whose digest disagrees with its
manifest. :func:`read_verified` checks size and sha256 before anything is parsed (safetensors
has no checksum of its own). Used by :mod:`pylstm.nn.checkpoint` and :mod:`pylstm.runs`.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pylstm.errors import CheckpointError

from .checkpoint_io import Writer, dump_json, short

__all__ = ["PARTIAL", "check_files", "commit_files", "file_digest", "read_verified",
           "recover_files", "write_atomic"]

PARTIAL = ".partial"


def _fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable (POSIX; a no-op where directories cannot be opened)."""
    if not hasattr(os, "O_DIRECTORY"):  # pragma: no cover - Windows
        return
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_partial(path: Path, write: Writer) -> Path:
    """``write`` into ``<path>.partial``, flushed and fsynced; removed again on failure."""
    part = path.with_name(path.name + PARTIAL)
    try:
        write(part)
        with open(part, "rb+") as f:  # the writer may be a library call: sync what it wrote
            os.fsync(f.fileno())
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    return part


def write_atomic(path: str | os.PathLike[str], write: Writer) -> None:
    """Replace ``path`` by what ``write(tmp_path)`` writes, atomically and durably."""
    path = Path(path)
    os.replace(_write_partial(path, write), path)
    _fsync_dir(path.parent)


def file_digest(path: Path) -> dict[str, Any]:
    """``{"sha256": hex, "size": bytes}`` of a file."""
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
            size += len(chunk)
    return {"sha256": h.hexdigest(), "size": size}


def _check_entry(name: Any, entry: Any, where: str) -> None:
    if not isinstance(name, str) or not name or Path(name).is_absolute() or ".." in \
            Path(name).parts or name.endswith(PARTIAL):
        raise CheckpointError(f"{where}: files: expected relative file names, got {name!r}")
    ok = (isinstance(entry, dict) and set(entry) == {"sha256", "size"}
          and isinstance(entry["sha256"], str) and len(entry["sha256"]) == 64
          and all(c in "0123456789abcdef" for c in entry["sha256"])
          and isinstance(entry["size"], int) and not isinstance(entry["size"], bool)
          and entry["size"] >= 0)
    if not ok:
        raise CheckpointError(f"{where}: files[{name!r}]: expected {{\"sha256\": 64 hex digits, "
                              f"\"size\": integer >= 0}}, got {short(entry)}")


def check_files(manifest: Mapping[str, Any], where: str) -> None:
    """Validate a manifest's ``files`` (name -> digest) and optional ``pending`` list."""
    files = manifest.get("files")
    if not isinstance(files, dict):
        raise CheckpointError(f"{where}: files: expected an object of file digests, got "
                              f"{short(files)}")
    for name, entry in files.items():
        _check_entry(name, entry, where)
    pending = manifest.get("pending", [])
    if not isinstance(pending, list) or not all(isinstance(n, str) and n in files
                                                for n in pending):
        raise CheckpointError(f"{where}: pending: expected a list of names in files, got "
                              f"{short(pending)}")


def commit_files(folder: Path, manifest_name: str, manifest: dict[str, Any],
                 writes: Mapping[str, Writer], *, allow_nan: bool = False) -> dict[str, Any]:
    """Write ``writes`` (relative name -> writer) and then ``manifest`` recording their
    digests in its ``files``, so that a kill at any moment leaves a consistent folder.

    Partial files a kill left before an earlier commit point are removed first (call this
    only on a manifest without ``pending``, i.e. after :func:`recover_files`). Returns the
    manifest as written (``manifest`` itself is not modified)."""
    target = folder / manifest_name
    for parent in {folder} | {(folder / name).parent for name in writes}:
        for stale in parent.glob("*" + PARTIAL):  # left by a kill before a commit point
            stale.unlink()
    digests: dict[str, dict[str, Any]] = {}
    parts: dict[str, Path] = {}
    try:
        for name, write in writes.items():
            final = folder / name
            final.parent.mkdir(parents=True, exist_ok=True)
            parts[name] = _write_partial(final, write)
            digests[name] = file_digest(parts[name])
    except BaseException:
        for part in parts.values():
            part.unlink(missing_ok=True)
        raise
    new = {k: v for k, v in manifest.items() if k != "pending"}
    new["files"] = {**manifest.get("files", {}), **digests}
    if digests:
        # The commit point: from here on recover_files() can finish the renames.
        journal = dump_json({**new, "pending": sorted(digests)}, str(target), allow_nan=allow_nan)
        write_atomic(target, lambda p: p.write_bytes(journal))
        for name, part in parts.items():
            os.replace(part, folder / name)
        for parent in {(folder / name).parent for name in parts}:
            _fsync_dir(parent)
    text = dump_json(new, str(target), allow_nan=allow_nan)
    write_atomic(target, lambda p: p.write_bytes(text))
    return new


def recover_files(folder: Path, manifest_name: str, manifest: dict[str, Any], *,
                  allow_nan: bool = False) -> dict[str, Any]:
    """Finish a :func:`commit_files` that was killed after its commit point (the manifest
    lists ``pending`` files); returns the manifest without ``pending``. A no-op otherwise."""
    pending = manifest.get("pending")
    if not pending:
        return manifest
    target = folder / manifest_name
    check_files(manifest, str(target))
    for name in pending:
        final = folder / name
        part = final.with_name(final.name + PARTIAL)
        expected = manifest["files"][name]
        if part.is_file() and file_digest(part) == expected:
            os.replace(part, final)
        elif not (final.is_file() and file_digest(final) == expected):
            raise CheckpointError(
                f"{final}: an interrupted save left neither this file nor {part.name} with "
                f"the recorded sha256 {expected['sha256']}: the folder is damaged")
    for parent in {(folder / name).parent for name in pending}:
        _fsync_dir(parent)
    new = {k: v for k, v in manifest.items() if k != "pending"}
    text = dump_json(new, str(target), allow_nan=allow_nan)
    write_atomic(target, lambda p: p.write_bytes(text))
    return new


def read_verified(folder: Path, name: str, files: Mapping[str, Any], manifest: str) -> bytes:
    """The bytes of ``folder/name`` after checking its size and sha256 against ``files``
    (the digests of the manifest file named ``manifest``)."""
    path = folder / name
    entry = files.get(name)
    if entry is None:
        raise CheckpointError(f"{manifest}: files: expected an entry for {name!r}, got none "
                              f"(recorded: {sorted(files)})")
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise CheckpointError(f"{path}: file not found (it is recorded in {manifest})") from None
    actual = hashlib.sha256(raw).hexdigest()
    if actual != entry["sha256"] or len(raw) != entry["size"]:
        raise CheckpointError(
            f"{path}: sha256 mismatch: expected {entry['sha256']} ({entry['size']} bytes, "
            f"recorded in {manifest}), got {actual} ({len(raw)} bytes): the file is corrupt "
            "or was changed")
    return raw

