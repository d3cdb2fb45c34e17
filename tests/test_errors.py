"""One error hierarchy: every exception class pylstm exports subclasses ``PylstmError`` and the
matching built-in, and the classes the engine raises are the very classes exported."""

from __future__ import annotations

import ast
import pathlib
import pickle

import numpy as np
import pytest

import pylstm
from pylstm import _core, errors
from pylstm import functional as F

# Each exported class and the built-in it must also subclass.
BUILTIN = {
    "PylstmError": Exception,
    "ShapeError": ValueError,
    "LstmValueError": ValueError,
    "TapeError": ValueError,
    "CheckpointError": ValueError,
    "DTypeError": TypeError,
    "EngineError": RuntimeError,
    "BackendError": RuntimeError,
    "PylstmMemoryError": MemoryError,
}


def test_every_exported_class_is_in_the_hierarchy():
    exported = {name: getattr(errors, name) for name in errors.__all__}
    assert set(exported) == set(BUILTIN), (
        "a class was added to or removed from pylstm.errors: list it in BUILTIN")
    for name, cls in exported.items():
        assert isinstance(cls, type) and issubclass(cls, BaseException), name
        assert issubclass(cls, errors.PylstmError), name
        assert issubclass(cls, BUILTIN[name]), f"{name} must subclass {BUILTIN[name].__name__}"
        assert cls.__doc__, name
    assert errors.PylstmError.__bases__ == (Exception,)


def test_the_engine_raises_the_exported_classes():
    for name in ("PylstmError", "ShapeError", "LstmValueError", "TapeError", "DTypeError",
                 "EngineError", "PylstmMemoryError"):
        assert getattr(_core, name) is getattr(errors, name), name
        assert getattr(_core, name).__module__ == "pylstm._core"
    w = np.zeros((4, 1), np.float32)
    acts = [[("Sigmoid", None, None), ("Tanh", None, None), ("Tanh", None, None)]]
    with pytest.raises(errors.DTypeError) as err:
        _core.network_forward(np.zeros((2, 1, 1), np.int32), [[(w, w, None, None, None)]],
                              hidden_size=1, proj_size=0, order="onnx", reverse=[False],
                              activations=acts)
    assert type(err.value) is errors.DTypeError
    with pytest.raises(errors.LstmValueError):
        _core.network_forward(np.zeros((2, 1, 1), np.float32), [[(w, w, None, None, None)]],
                              hidden_size=1, proj_size=0, order="sideways", reverse=[False],
                              activations=acts)


def test_top_level_exceptions_are_in_the_hierarchy():
    """Whatever exception classes ``pylstm`` itself exports belong to the hierarchy."""
    for name in pylstm.__all__:
        obj = getattr(pylstm, name)
        if isinstance(obj, type) and issubclass(obj, BaseException):
            assert obj is getattr(errors, name), name


@pytest.mark.parametrize("name", sorted(BUILTIN))
def test_exceptions_pickle_round_trip(name):
    """Exceptions cross process boundaries (multiprocessing pickles them) as themselves."""
    cls = getattr(errors, name)
    e = pickle.loads(pickle.dumps(cls("x: expected 1, got 2")))
    assert type(e) is cls and str(e) == "x: expected 1, got 2"


@pytest.mark.parametrize("call,cls", [
    (lambda: F.lstm(np.zeros((2, 1, 3)), np.zeros((1, 4, 2)), np.zeros((1, 4, 1))),
     errors.ShapeError),
    (lambda: F.lstm(np.zeros((2, 1, 3), np.float16), np.zeros((1, 4, 3)), np.zeros((1, 4, 1))),
     errors.DTypeError),
    (lambda: F.lstm(np.zeros((2, 1, 3)), np.zeros((1, 4, 3)), np.zeros((1, 4, 1)), clip=-1),
     errors.LstmValueError),
    (lambda: F.lstm_backward(None), errors.TapeError),
    (lambda: F.lstm(np.zeros((2, 1, 3)), np.zeros((1, 4, 3)), np.zeros((1, 4, 1)),
                    backend="no-such-backend"), errors.BackendError),
])
def test_except_clauses_on_the_root_and_the_builtin_both_work(call, cls):
    with pytest.raises(cls):
        call()
    with pytest.raises(errors.PylstmError):
        call()
    with pytest.raises(BUILTIN[cls.__name__]):
        call()


ENGINE_API = ["functional.py", "_checks.py", "runtime.py", "errors.py"]


@pytest.mark.parametrize("module", ENGINE_API)
def test_engine_api_raises_no_bare_builtin(module):
    """The engine API's own ``raise`` statements use the package's classes, never a bare
    ``ValueError``/``TypeError``/``RuntimeError``/``MemoryError`` the hierarchy misses."""
    path = pathlib.Path(pylstm.__file__).parent / module
    tree = ast.parse(path.read_text())
    bare = {"ValueError", "TypeError", "RuntimeError", "MemoryError", "KeyError", "IndexError",
            "Exception"}
    for node in ast.walk(tree):
        if isinstance(node, ast.Raise) and node.exc is not None:
            target = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
            if isinstance(target, ast.Name):
                assert target.id not in bare, f"{module}:{node.lineno} raises {target.id}"
