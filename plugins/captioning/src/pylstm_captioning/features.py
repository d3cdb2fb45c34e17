"""Encoder features of a dataset, computed once in batches and cached on disk.

The cache key is a SHA-256 over the encoder's version (:data:`ENCODER_VERSION` and the
weights checkpoint's name and size), the input image size, and every item's id and image file
(path, size and modification time, so an edited image is encoded again; a rendered emoji's
path only, as its folder is already keyed by the font and the Unicode data). One folder per key
under ``<cache>/features/<key>/`` holds ``grid.npy`` (float16 ``[N, 49, 1280]``: the ReLU6
activations lose nothing a captioner notices, at half the memory), ``mean.npy`` (float32
``[N, 1280]``) and ``ids.json``; each is written to a temporary name and renamed, ``ids.json``
last, so a half-written folder is never read.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pylstm.plugins import TaskError

from .datasets import CaptionItem, EmojiItem
from .encoder import IMAGE_SIZE, ImageEncoder, find_checkpoint

__all__ = ["ENCODER_VERSION", "Features", "dataset_key", "encode_items"]

ENCODER_VERSION = "efficientnet-lite0/onnx/1"
"""Bumped whenever the encoder graph or its preprocessing changes what features it gives."""


@dataclass
class Features:
    """Features of a list of items, in the items' order.

    Attributes:
        ids: the items' ``image_id``.
        grid: ``[N, 49, 1280]`` float16 (memory-mapped when read from the cache).
        mean: ``[N, 1280]`` float32, the grid's mean over cells.
    """

    ids: list[str]
    grid: np.ndarray
    mean: np.ndarray

    def take(self, index: Sequence[int] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(grid float32 [n, 49, 1280], mean [n, 1280])`` of the rows ``index``."""
        idx = np.asarray(index, dtype=np.int64)
        return np.asarray(self.grid[idx], dtype=np.float32), np.asarray(self.mean[idx])

    def __len__(self) -> int:
        return len(self.ids)


def _file_part(item: CaptionItem) -> str:
    if item.path is None:
        return "-"
    if isinstance(item, EmojiItem):  # drawn on first load into a folder keyed by font + data
        return str(item.path)
    try:
        st = os.stat(item.path)
        return f"{item.path}|{st.st_size}|{st.st_mtime_ns}"
    except OSError:  # a rendered dataset draws its images on first load
        return str(item.path)


def _encoder_part() -> str:
    try:
        ckpt = find_checkpoint()
        return f"{ENCODER_VERSION}|{ckpt.name}|{ckpt.stat().st_size}"
    except (TaskError, OSError):
        return ENCODER_VERSION


def dataset_key(items: Sequence[CaptionItem], image_size: int = IMAGE_SIZE) -> str:
    """The cache key of ``items``' features (see the module docstring)."""
    h = hashlib.sha256()
    h.update(f"{_encoder_part()}\n{image_size}\n".encode())
    for it in items:
        h.update(f"{it.image_id}\0{_file_part(it)}\n".encode())
    return h.hexdigest()[:24]


def _save_npy(path: Path, array: np.ndarray) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            np.save(f, array)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _read(folder: Path, ids: list[str]) -> Features | None:
    try:
        stored = json.loads((folder / "ids.json").read_text(encoding="utf-8"))
        grid = np.load(folder / "grid.npy", mmap_mode="r")
        mean = np.load(folder / "mean.npy")
    except (OSError, ValueError):
        return None
    if stored != ids or grid.shape[0] != len(ids) or mean.shape[0] != len(ids):
        return None
    return Features(ids, grid, mean)


def encode_items(items: Sequence[CaptionItem], encoder: ImageEncoder | Callable[[], ImageEncoder],
                 cache_dir: str | os.PathLike[str] | None, *, batch_size: int = 32,
                 log: Callable[[str], None] | None = None) -> Features:
    """Features of ``items`` from the cache, or computed in batches of ``batch_size`` with
    ``encoder`` (an :class:`ImageEncoder` or a function making one, called only on a miss) and
    cached. ``cache_dir`` ``None`` computes without caching."""
    if not items:
        raise TaskError("items: expected at least one image, got none")
    ids = [it.image_id for it in items]
    folder = Path(cache_dir) / "features" / dataset_key(items) if cache_dir is not None else None
    if folder is not None:
        found = _read(folder, ids)
        if found is not None:
            return found
    enc = encoder if isinstance(encoder, ImageEncoder) else encoder()
    grids: list[np.ndarray] = []
    means: list[np.ndarray] = []
    for start in range(0, len(items), batch_size):
        chunk = items[start:start + batch_size]
        g, m = enc.features([it.load() for it in chunk], batch_size=batch_size)
        grids.append(g.astype(np.float16))
        means.append(m.astype(np.float32))
        if log is not None and (start // batch_size) % 20 == 19:
            log(f"  encoded {start + len(chunk)}/{len(items)} images")
    grid = np.concatenate(grids)
    mean = np.concatenate(means)
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
        _save_npy(folder / "grid.npy", grid)
        _save_npy(folder / "mean.npy", mean)
        fd, tmp = tempfile.mkstemp(prefix=".ids.json.", suffix=".tmp", dir=folder)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(ids, f)
        os.replace(tmp, folder / "ids.json")
    return Features(ids, grid, mean)
