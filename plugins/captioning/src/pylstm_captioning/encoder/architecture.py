"""EfficientNet-Lite0 (Tan & Le 2019; the "lite" variant of the TensorFlow TPU repository): the
block configuration, checked against the weights' names and shapes, and the network with each
batch norm folded into the convolution before it.

Lite0 is EfficientNet-B0 without squeeze-and-excitation, with ReLU6 for swish and the stem
(32) and head (1280) not scaled. Every convolution uses TensorFlow's "same" padding (the extra
row/column, when the total is odd, goes at the end: ONNX ``SAME_UPPER``). Only the strides are
not visible in the weights; the 7x7 grid at 224x224 and the ImageNet accuracy check them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["BN_EPSILON", "FEATURES", "STAGES", "Block", "Conv", "Lite0", "build_network"]

# TensorFlow's batch-norm epsilon, kept by the PyTorch port of these weights
BN_EPSILON = 1e-3
STEM = 32
FEATURES = 1280
# (repeats, kernel, stride of the first block, expansion, output channels) per stage
STAGES: tuple[tuple[int, int, int, int, int], ...] = (
    (1, 3, 1, 1, 16),
    (2, 3, 2, 6, 24),
    (2, 5, 2, 6, 40),
    (3, 3, 2, 6, 80),
    (3, 5, 1, 6, 112),
    (4, 5, 2, 6, 192),
    (1, 3, 1, 6, 320),
)


@dataclass(frozen=True)
class Conv:
    """A convolution with its batch norm folded in: ``weight`` [out, in/groups, k, k] and
    ``bias`` [out] float32, then ReLU6 when ``relu6``."""

    weight: np.ndarray
    bias: np.ndarray
    stride: int
    groups: int
    relu6: bool

    @property
    def kernel(self) -> int:
        """The (square) kernel size."""
        return int(self.weight.shape[-1])


@dataclass(frozen=True)
class Block:
    """An MBConv block: 1x1 expansion (absent at expansion 1), depthwise conv, 1x1 linear
    projection, plus the input when ``residual`` (stride 1 and as many channels out as in)."""

    expand: Conv | None
    depthwise: Conv
    project: Conv
    residual: bool


@dataclass(frozen=True)
class Lite0:
    """The folded network: stem, 16 blocks, head (the feature grid), then mean and classifier
    (``fc_weight`` [1000, 1280], ``fc_bias`` [1000])."""

    stem: Conv
    blocks: tuple[Block, ...]
    head: Conv
    fc_weight: np.ndarray
    fc_bias: np.ndarray


def _get(weights: dict[str, np.ndarray], key: str, shape: tuple[int, ...]) -> np.ndarray:
    if key not in weights:
        raise ValueError(f"EfficientNet-Lite0 weights: {key} is missing")
    value = weights[key]
    if tuple(value.shape) != shape:
        raise ValueError(f"EfficientNet-Lite0 weights: {key} has shape {tuple(value.shape)}, "
                         f"the Lite0 configuration needs {shape}")
    return np.asarray(value, dtype=np.float64)


def _folded(weights: dict[str, np.ndarray], conv: str, bn: str, shape: tuple[int, ...],
            stride: int, groups: int, relu6: bool) -> Conv:
    w = _get(weights, conv + ".weight", shape)
    n = shape[0]
    gamma, beta, mean, var = (_get(weights, f"{bn}.{p}", (n,))
                              for p in ("weight", "bias", "running_mean", "running_var"))
    scale = gamma / np.sqrt(var + BN_EPSILON)
    # folded in float64 and rounded once, so graph and reference start from the same float32s
    return Conv(weight=(w * scale[:, None, None, None]).astype(np.float32),
                bias=(beta - mean * scale).astype(np.float32),
                stride=stride, groups=groups, relu6=relu6)


def build_network(weights: dict[str, np.ndarray]) -> Lite0:
    """The folded Lite0 network from a PyTorch-named state dict (``_conv_stem``, ``_bn0``,
    ``_blocks.{i}._expand_conv`` / ``_depthwise_conv`` / ``_project_conv`` with ``_bn0..2``,
    ``_conv_head``, ``_bn1``, ``_fc``).

    Raises ``ValueError`` naming the first key that is missing or whose shape disagrees with
    :data:`STAGES`, or an unexpected extra block.
    """
    stem = _folded(weights, "_conv_stem", "_bn0", (STEM, 3, 3, 3), 2, 1, True)
    blocks: list[Block] = []
    cin = STEM
    for repeats, k, first_stride, expansion, cout in STAGES:
        for r in range(repeats):
            i = len(blocks)
            p = f"_blocks.{i}."
            stride = first_stride if r == 0 else 1
            mid = cin * expansion
            expand = None
            if expansion != 1:
                expand = _folded(weights, p + "_expand_conv", p + "_bn0", (mid, cin, 1, 1),
                                 1, 1, True)
            elif p + "_expand_conv.weight" in weights:
                raise ValueError(f"EfficientNet-Lite0 weights: block {i} has an expansion conv "
                                 "the configuration does not expect")
            depthwise = _folded(weights, p + "_depthwise_conv", p + "_bn1", (mid, 1, k, k),
                                stride, mid, True)
            project = _folded(weights, p + "_project_conv", p + "_bn2", (cout, mid, 1, 1),
                              1, 1, False)
            blocks.append(Block(expand, depthwise, project,
                                residual=stride == 1 and cin == cout))
            cin = cout
    extra = f"_blocks.{len(blocks)}."
    if any(key.startswith(extra) for key in weights):
        raise ValueError(f"EfficientNet-Lite0 weights: more blocks than the {len(blocks)} of "
                         "the configuration")
    head = _folded(weights, "_conv_head", "_bn1", (FEATURES, cin, 1, 1), 1, 1, True)
    fc_w = _get(weights, "_fc.weight", (1000, FEATURES)).astype(np.float32)
    fc_b = _get(weights, "_fc.bias", (1000,)).astype(np.float32)
    return Lite0(stem, tuple(blocks), head, fc_w, fc_b)
