"""The folded Lite0 network as an ONNX graph (``onnx.helper``): input ``image`` [N, 3, H, W]
(normalised), outputs ``grid`` [N, h*w, 1280] (the head's ReLU6 output, rows first),
``mean`` [N, 1280] and ``logits`` [N, 1000]; batch, height and width are dynamic."""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from .architecture import FEATURES, Conv, Lite0

__all__ = ["IR_VERSION", "OPSET", "build_graph"]

OPSET = 17
# onnx 1.23 stamps a newer IR version than onnxruntime accepts; opset 17 needs IR 8
IR_VERSION = 8


class _Builder:
    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []

    def const(self, name: str, value: np.ndarray) -> str:
        self.inits.append(numpy_helper.from_array(value, name))
        return name

    def node(self, op: str, inputs: list[str], name: str, **attrs: Any) -> str:
        self.nodes.append(helper.make_node(op, inputs, [name], name=name, **attrs))
        return name

    def conv(self, x: str, conv: Conv, name: str) -> str:
        w = self.const(name + ".w", conv.weight)
        b = self.const(name + ".b", conv.bias)
        # SAME_UPPER is TensorFlow's "same": the odd padding row/column at the end
        y = self.node("Conv", [x, w, b], name, kernel_shape=[conv.kernel] * 2,
                      strides=[conv.stride] * 2, group=conv.groups, auto_pad="SAME_UPPER")
        if conv.relu6:
            y = self.node("Clip", [y, "zero", "six"], name + ".relu6")
        return y


def build_graph(net: Lite0) -> onnx.ModelProto:
    """The ONNX model of ``net`` (opset :data:`OPSET`, IR :data:`IR_VERSION`), checked."""
    g = _Builder()
    g.const("zero", np.array(0.0, dtype=np.float32))
    g.const("six", np.array(6.0, dtype=np.float32))
    x = g.conv("image", net.stem, "stem")
    for i, block in enumerate(net.blocks):
        y = g.conv(x, block.expand, f"b{i}.expand") if block.expand is not None else x
        y = g.conv(y, block.depthwise, f"b{i}.dw")
        y = g.conv(y, block.project, f"b{i}.project")
        x = g.node("Add", [x, y], f"b{i}.add") if block.residual else y
    x = g.conv(x, net.head, "head")
    nhwc = g.node("Transpose", [x], "head.nhwc", perm=[0, 2, 3, 1])
    shape = g.const("grid.shape", np.array([0, -1, FEATURES], dtype=np.int64))
    grid = g.node("Reshape", [nhwc, shape], "grid")
    mean = g.node("ReduceMean", [grid], "mean", axes=[1], keepdims=0)
    g.const("fc.w", net.fc_weight)
    g.const("fc.b", net.fc_bias)
    g.node("Gemm", [mean, "fc.w", "fc.b"], "logits", transB=1)

    f32 = TensorProto.FLOAT
    graph = helper.make_graph(
        g.nodes, "efficientnet_lite0",
        inputs=[helper.make_tensor_value_info("image", f32, ["batch", 3, "height", "width"])],
        outputs=[helper.make_tensor_value_info("grid", f32, ["batch", "cells", FEATURES]),
                 helper.make_tensor_value_info("mean", f32, ["batch", FEATURES]),
                 helper.make_tensor_value_info("logits", f32, ["batch", 1000])],
        initializer=g.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="pylstm-captioning")
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model)
    return model
