"""A plain numpy forward pass of the folded Lite0 network, in float64: slow, but with nothing
shared with the ONNX graph except the folded weights, so the two can check each other."""

from __future__ import annotations

import numpy as np

from .architecture import Conv, Lite0

__all__ = ["reference_forward", "same_padding"]


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow "same" padding of one axis: (before, after), the odd one after."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def _conv(x: np.ndarray, conv: Conv) -> np.ndarray:
    n, c, h, w = x.shape
    k, s = conv.kernel, conv.stride
    (top, bottom), (left, right) = same_padding(h, k, s), same_padding(w, k, s)
    xp = np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)))
    ho, wo = -(-h // s), -(-w // s)
    weight = conv.weight.astype(np.float64)
    if conv.groups == c and weight.shape[1] == 1:  # depthwise: one k x k filter per channel
        out = np.zeros((n, c, ho, wo))
        for i in range(k):
            for j in range(k):
                patch = xp[:, :, i:i + s * ho:s, j:j + s * wo:s]
                out += patch * weight[None, :, 0, i, j, None, None]
    elif conv.groups == 1:
        out = np.zeros((n, weight.shape[0], ho, wo))
        for i in range(k):
            for j in range(k):
                patch = xp[:, :, i:i + s * ho:s, j:j + s * wo:s]
                out += np.einsum("nchw,oc->nohw", patch, weight[:, :, i, j], optimize=True)
    else:
        raise ValueError("the reference has only dense and depthwise convolutions")
    out += conv.bias.astype(np.float64)[None, :, None, None]
    return np.clip(out, 0.0, 6.0) if conv.relu6 else out


def reference_forward(net: Lite0, images: np.ndarray) -> dict[str, np.ndarray]:
    """Run ``net`` on normalised images [N, 3, H, W]; float64 ``grid`` [N, h*w, 1280] (h, w =
    ceil(H/32), ceil(W/32), rows first), ``mean`` [N, 1280] and ``logits`` [N, 1000]."""
    x = _conv(np.asarray(images, dtype=np.float64), net.stem)
    for block in net.blocks:
        y = _conv(x, block.expand) if block.expand is not None else x
        y = _conv(_conv(y, block.depthwise), block.project)
        x = x + y if block.residual else y
    x = _conv(x, net.head)
    n, c = x.shape[:2]
    grid = x.reshape(n, c, -1).transpose(0, 2, 1)
    mean = grid.mean(axis=1)
    logits = mean @ net.fc_weight.astype(np.float64).T + net.fc_bias.astype(np.float64)
    return {"grid": grid, "mean": mean, "logits": logits}
