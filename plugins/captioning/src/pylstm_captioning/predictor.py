"""The trained captioner as an application uses it: ``pylstm.load(run).caption(images)``.

:class:`ImageCaptioner` holds the decoder in evaluation mode, its vocabulary, and the image
encoder (made on first use; onnxruntime's CUDA provider when present). Captioning never
changes any state, so any number of threads may call it at once.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pylstm.plugins import TaskError
from pylstm.runs import Run

from .encoder import ImageEncoder, ImageLike, load_rgb
from .encoder.images import as_batch
from .evaluation import plot_attention_map
from .model import CaptionerConfig, ShowAttendTell
from .search import Decoded, decode_arrays
from .vocab import Vocabulary

__all__ = ["BASELINE", "MODEL", "VOCAB", "ImageCaptioner"]

MODEL = "model"
"""The run's weights and config: ``model.safetensors`` and ``model.json``."""
BASELINE = "baseline"
"""The decoder without attention, when trained: ``baseline.safetensors`` + ``.json``."""
VOCAB = "vocab.json"


def _check_beam(beam: Any) -> int:
    if isinstance(beam, bool) or not isinstance(beam, int) or beam < 1:
        raise TaskError(f"beam: expected an integer >= 1, got {beam!r}")
    return beam


class ImageCaptioner:
    """A trained show-attend-tell decoder with its vocabulary (what ``pylstm.load`` returns
    for a captioning run).

    Attributes:
        net: the :class:`ShowAttendTell` decoder (evaluation mode).
        vocab: the :class:`Vocabulary`.
        options: the options the run was trained with (``None`` for a bare model).
    """

    def __init__(self, net: ShowAttendTell, vocab: Vocabulary, options: Any = None,
                 encoder: ImageEncoder | None = None,
                 cache_dir: str | os.PathLike[str] | None = None) -> None:
        if len(vocab) != net.cfg.vocab:
            raise TaskError(f"vocab: expected {net.cfg.vocab} words for this model, got "
                            f"{len(vocab)}")
        self.net = net.eval()
        self.vocab = vocab
        self.options = options
        self._encoder = encoder
        self._cache_dir = cache_dir if cache_dir is not None else getattr(options, "cache_dir",
                                                                          None)
        self._lock = threading.Lock()

    @property
    def config(self) -> CaptionerConfig:
        """The decoder's sizes and switches."""
        return self.net.cfg

    @property
    def encoder(self) -> ImageEncoder:
        """The EfficientNet-Lite0 encoder (made on first use)."""
        with self._lock:
            if self._encoder is None:
                self._encoder = ImageEncoder(self._cache_dir)
            return self._encoder

    # ------------------------------------------------------------------ captioning
    def caption_features(self, grid: np.ndarray, mean: np.ndarray, *, beam: int = 3,
                         length_penalty: float = 0.0, batch_size: int = 64
                         ) -> list[tuple[str, Decoded]]:
        """``(caption, Decoded)`` for encoder features ``grid [N, 49, 1280]``, ``mean``."""
        beam = _check_beam(beam)
        grid = np.asarray(grid, np.float32)
        mean = np.asarray(mean, np.float32)
        if grid.ndim != 3 or grid.shape[1:] != (self.config.cells, self.config.features) \
                or mean.shape != (grid.shape[0], self.config.features):
            raise TaskError(f"grid/mean: expected [N, {self.config.cells}, "
                            f"{self.config.features}] and [N, {self.config.features}], got "
                            f"{list(grid.shape)} and {list(mean.shape)}")
        out: list[tuple[str, Decoded]] = []
        for s in range(0, grid.shape[0], batch_size):
            for d in decode_arrays(self.net, grid[s:s + batch_size], mean[s:s + batch_size],
                                   beam=beam, length_penalty=float(length_penalty)):
                out.append((self.vocab.decode(d.ids), d))
        return out

    def caption_detailed(self, images: ImageLike | Sequence[ImageLike], *, beam: int = 3,
                         length_penalty: float = 0.0) -> list[tuple[str, Decoded]]:
        """``(caption, Decoded)`` per image (word ids, score, attention ``[len + 1, 49]``)."""
        beam = _check_beam(beam)
        grid, mean = self.encoder.features(images)
        return self.caption_features(grid, mean, beam=beam, length_penalty=length_penalty)

    def caption(self, images: ImageLike | Sequence[ImageLike], *, beam: int = 3,
                length_penalty: float = 0.0) -> list[str]:
        """The caption of each image: paths, PIL images or arrays (one or a list)."""
        return [c for c, _ in self.caption_detailed(images, beam=beam,
                                                    length_penalty=length_penalty)]

    def attention_map(self, image: ImageLike, path: str | os.PathLike[str], *, beam: int = 3,
                      length_penalty: float = 0.0) -> str:
        """Caption one image and draw each word's attention over it into the PNG ``path``;
        returns the caption."""
        items = as_batch(image)
        if len(items) != 1:
            raise TaskError(f"image: expected one image, got {len(items)}")
        caption, d = self.caption_detailed(items, beam=beam, length_penalty=length_penalty)[0]
        words = self.vocab.tokens(d.ids)
        note = None if self.config.attention else "no attention: uniform weights"
        plot_attention_map(load_rgb(items[0]), words, d.attention, Path(path), title=note)
        return caption

    # ------------------------------------------------------------------ run folder
    def save(self, run: Run, name: str = MODEL) -> None:
        """Weights and config (as ``name``) and the vocabulary into ``run``."""
        run.save_tensors(name, self.net.state_dict(), config=self.config.to_json())
        if name == MODEL:
            run.add_file(VOCAB, self.vocab.save)

    @classmethod
    def load(cls, run: Run, options: Any = None, name: str = MODEL) -> ImageCaptioner:
        """Rebuild from ``run``: digests checked, the config validated, then the weights."""
        tensors, config = run.load_tensors(name)
        cfg = CaptionerConfig.from_json(config, str(run.file(name + ".json")))
        net = ShowAttendTell(cfg)
        net.load_state_dict(tensors)
        vocab = Vocabulary.load(run.verified_path(VOCAB))
        if len(vocab) != cfg.vocab:
            raise TaskError(f"{run.path}: the vocabulary has {len(vocab)} words, the model "
                            f"expects {cfg.vocab}")
        return cls(net, vocab, options)
