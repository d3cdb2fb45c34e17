"""onnx's own LSTM node test cases, run through ``pylstm.functional.lstm``."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from pylstm import functional as F

onnx = pytest.importorskip("onnx")
from onnx import helper, numpy_helper  # noqa: E402
from onnx.backend.test.case import node as onnx_node_cases  # noqa: E402

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # other operators' case generators warn on overflow
    CASES = onnx_node_cases.collect_testcases("LSTM")

_INPUTS = ["X", "W", "R", "B", "sequence_lens", "initial_h", "initial_c", "P"]
_OUTPUTS = ["Y", "Y_h", "Y_c"]


def test_cases_were_collected():
    names = {c.name for c in CASES}
    # The cases onnx ships for LSTM (at least these; more are run if a newer onnx adds them).
    assert {"test_lstm_defaults", "test_lstm_with_initial_bias", "test_lstm_with_peepholes",
            "test_lstm_batchwise"} <= names


def _as_array(value):
    return numpy_helper.to_array(value) if not isinstance(value, np.ndarray) else value


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_onnx_node_case(case):
    graph = case.model.graph
    (node,) = [n for n in graph.node if n.op_type == "LSTM"]
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    for key in ("activations",):
        if key in attrs:
            attrs[key] = [v.decode() if isinstance(v, bytes) else v for v in attrs[key]]
    if "direction" in attrs and isinstance(attrs["direction"], bytes):
        attrs["direction"] = attrs["direction"].decode()
    graph_inputs = [i.name for i in graph.input]
    graph_outputs = [o.name for o in graph.output]
    assert case.data_sets, case.name
    for inputs, expected in case.data_sets:
        values = dict(zip(graph_inputs, (_as_array(v) for v in inputs), strict=True))
        kwargs = {}
        for slot, name in zip(_INPUTS, node.input, strict=False):
            if name:  # an empty name is an omitted optional input
                kwargs[slot] = values[name]
        for k in ("activation_alpha", "activation_beta", "activations"):
            if k in attrs:
                kwargs[k] = list(attrs[k])
        for k in ("hidden_size", "direction", "clip", "input_forget", "layout"):
            if k in attrs:
                kwargs[k] = attrs[k]
        X = kwargs.pop("X")
        W = kwargs.pop("W")
        R = kwargs.pop("R")
        got = dict(zip(_OUTPUTS, F.lstm(X, W, R, **kwargs), strict=True))
        want = dict(zip(graph_outputs, (_as_array(v) for v in expected), strict=True))
        checked = 0
        for slot, name in zip(_OUTPUTS, node.output, strict=False):
            if name and name in want:
                assert got[slot].shape == want[name].shape, (case.name, slot)
                assert got[slot].dtype == want[name].dtype, (case.name, slot)
                np.testing.assert_allclose(got[slot], want[name], rtol=case.rtol,
                                           atol=max(case.atol, 1e-6), err_msg=f"{case.name} {slot}")
                checked += 1
        assert checked == len(want), case.name
