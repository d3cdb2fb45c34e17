""":class:`ImageEncoder`: the pretrained EfficientNet-Lite0 on onnxruntime, giving the feature
grid a captioner attends over, its mean, and the ImageNet logits."""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort

from pylstm.plugins import TaskError

from .architecture import FEATURES, Lite0, build_network
from .graph import build_graph
from .images import IMAGE_SIZE, ImageLike, as_batch, preprocess
from .weights import load_weights

__all__ = ["GRID_CELLS", "ImageEncoder", "default_providers"]

GRID_CELLS = (IMAGE_SIZE // 32) ** 2  # 7x7 at 224x224


def default_providers() -> list[str]:
    """CUDA first when this onnxruntime has it, then CPU."""
    available = ort.get_available_providers()
    if "CUDAExecutionProvider" in available:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


class ImageEncoder:
    """EfficientNet-Lite0 (ImageNet) as an image encoder.

    >>> enc = ImageEncoder()
    >>> grid, mean = enc.features(["cat.jpg", pil_image, uint8_array])
    >>> grid.shape, mean.shape          # (3, 49, 1280), (3, 1280)

    ``cache_dir`` holds the weights converted to safetensors (default
    ``$PYLSTM_CACHE/captioning`` or ``~/.cache/pylstm/captioning``); ``providers`` is
    onnxruntime's list (default: CUDA when available, then CPU). Images are resized and
    centre-cropped to 224x224; see :func:`~pylstm_captioning.encoder.images.preprocess`.
    Safe to call from several threads (onnxruntime's ``run`` is).
    """

    def __init__(self, cache_dir: str | os.PathLike[str] | None = None,
                 providers: Sequence[str | tuple[str, dict[str, Any]]] | None = None) -> None:
        try:
            self.network: Lite0 = build_network(load_weights(cache_dir))
        except ValueError as e:
            raise TaskError(str(e)) from None
        self.model: onnx.ModelProto = build_graph(self.network)
        options = ort.SessionOptions()
        options.log_severity_level = 3  # CUDA's fallback to CPU is reported by .providers
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # onnxruntime warns when a provider is missing
            self._session = ort.InferenceSession(
                self.model.SerializeToString(), sess_options=options,
                providers=list(providers) if providers is not None else default_providers())

    @property
    def session(self) -> ort.InferenceSession:
        """The onnxruntime session: input ``image`` [N, 3, H, W] already preprocessed, outputs
        ``grid``, ``mean`` and ``logits``."""
        return self._session

    @property
    def providers(self) -> list[str]:
        """The execution providers the session really uses (CUDA may have fallen back)."""
        return list(self._session.get_providers())

    def _run(self, images: ImageLike | Sequence[ImageLike], outputs: list[str],
             batch_size: int) -> list[np.ndarray]:
        if not isinstance(batch_size, int) or batch_size < 1:
            raise TaskError(f"batch_size must be a positive integer, got {batch_size!r}")
        items = as_batch(images)
        chunks: list[list[np.ndarray]] = [[] for _ in outputs]
        for start in range(0, len(items), batch_size):
            # preprocess per chunk: memory stays at one batch of 224x224 inputs
            x = np.stack([preprocess(im) for im in items[start:start + batch_size]])
            for acc, y in zip(chunks, self._session.run(outputs, {"image": x}), strict=True):
                acc.append(y)
        empty = {"grid": (0, GRID_CELLS, FEATURES), "mean": (0, FEATURES), "logits": (0, 1000)}
        return [np.concatenate(acc) if acc else np.zeros(empty[name], np.float32)
                for name, acc in zip(outputs, chunks, strict=True)]

    def features(self, images: ImageLike | Sequence[ImageLike],
                 batch_size: int = 32) -> tuple[np.ndarray, np.ndarray]:
        """``(grid, mean)`` for the images: float32 [N, 49, 1280] (the head's ReLU6 output on
        the 7x7 grid, rows first: cell ``r * 7 + c``) and its mean over cells [N, 1280].

        ``images``: a path, PIL image or array, or a sequence of them (a 4-D array is a batch).
        Raises :class:`pylstm.plugins.TaskError` for an image that cannot be read.
        """
        grid, mean = self._run(images, ["grid", "mean"], batch_size)
        return grid, mean

    def classify(self, images: ImageLike | Sequence[ImageLike],
                 batch_size: int = 32) -> np.ndarray:
        """ImageNet-1k logits, float32 [N, 1000] (softmax for probabilities; class indices
        follow the usual ILSVRC-2012 order, e.g. 281-285 are domestic cats)."""
        (logits,) = self._run(images, ["logits"], batch_size)
        return logits
