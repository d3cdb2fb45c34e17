"""Toolkit wrappers around the Rust engine modules :class:`pylstm.LSTM` and
:class:`pylstm.LSTMCell`.

The wrappers hold the engine module in ``.engine`` and expose its ``parameters`` and ``grads``
dicts (looked up live: the very same objects), so optimisers updating ``wrapper.parameters`` in
place update what the engine reads, and ``named_parameters()`` of a parent yields names such as
``"encoder.weight_ih_l0"``. Forward and backward are the engine's own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ._errors import LstmValueError
from ._validate import as_float_dtype
from .module import Module, _check_tape

__all__ = ["LSTM", "LSTMCell"]


def _engine_seed(seed: int | np.random.Generator | None) -> int | None:
    if isinstance(seed, np.random.Generator):
        return int(seed.integers(0, 2**63 - 1))
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer))):
        raise TypeError(f"seed: expected an int, a numpy.random.Generator or None, got {seed!r}")
    return None if seed is None else int(seed)


def _import_engine() -> Any:
    try:
        import pylstm

        return pylstm.LSTM, pylstm.LSTMCell
    except (ImportError, AttributeError) as exc:  # pragma: no cover - engine not built
        raise ImportError(
            "pylstm.nn.LSTM needs the compiled engine (pylstm.LSTM / pylstm._core); "
            "build it with `maturin develop`"
        ) from exc


class _EngineWrapper(Module):
    """Delegates ``parameters``/``grads`` to the engine module, looked up live on every access
    (the engine may replace its ``grads`` dict in ``zero_grad``)."""

    engine: Any

    @property  # type: ignore[override]
    def parameters(self) -> dict[str, np.ndarray]:  # type: ignore[override]
        return self.engine.parameters

    @parameters.setter
    def parameters(self, value: dict[str, np.ndarray]) -> None:
        if value or "engine" in self.__dict__:  # Module.__init__ assigns {} before the engine
            raise AttributeError("parameters: owned by the engine module; update it in place")

    @property  # type: ignore[override]
    def grads(self) -> dict[str, np.ndarray]:  # type: ignore[override]
        return self.engine.grads

    @grads.setter
    def grads(self, value: dict[str, np.ndarray]) -> None:
        if value or "engine" in self.__dict__:
            raise AttributeError("grads: owned by the engine module")

    @property
    def rng(self) -> np.random.Generator | None:
        """The engine's dropout generator (saved by checkpoints), if it exposes one."""
        rng = getattr(self.engine, "rng", None)
        if rng is None:
            rng = getattr(self.engine, "_rng", None)
        return rng if isinstance(rng, np.random.Generator) else None

    def _adopt(self, engine: Any) -> None:
        for attr in ("parameters", "grads", "forward", "backward"):
            if not hasattr(engine, attr):
                raise TypeError(f"engine: {type(engine).__name__} has no attribute {attr!r}")
        object.__setattr__(self, "engine", engine)
        self.training = bool(getattr(engine, "training", True))
        self.dtype = np.dtype(next(iter(engine.parameters.values())).dtype)

    def _on_train(self, mode: bool) -> None:
        if hasattr(self.engine, "train"):
            self.engine.train(mode)

    def mark_updated(self) -> None:
        """Tell the engine its arrays changed in place (cached backends rebuild)."""
        if hasattr(self.engine, "mark_updated"):
            self.engine.mark_updated()

    @staticmethod
    def _split(result: Any) -> tuple[Any, Any, Any]:
        # The engine returns (y, (h_n, c_n), tape) with requires_grad=True; without it either
        # (y, (h_n, c_n)) or (y, (h_n, c_n), None).
        if len(result) == 3:
            return result[0], result[1], result[2]
        return result[0], result[1], None


@dataclass
class _LSTMTape:
    engine_tape: Any
    y_shape: tuple[int, ...]
    y_dtype: np.dtype


class LSTM(_EngineWrapper):
    """Multi-layer LSTM (``torch.nn.LSTM`` semantics) backed by :class:`pylstm.LSTM`.

    With ``return_state=True`` (default): ``((y, (h_n, c_n)), tape) = forward(x, hx, lengths,
    requires_grad)`` and ``dx, (dh0, dc0) = backward(tape, dy, dh_n=None, dc_n=None)`` (``dy``
    may also be given as ``(dy, (dh_n, dc_n))``, mirroring the output, or ``None``).

    With ``return_state=False`` the layer is single-input/single-output, usable in
    :class:`~pylstm.nn.Sequential`: ``y, tape = forward(x)`` and ``dx = backward(tape, dy)``.
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        proj_size: int = 0,
        *,
        dtype: Any = np.float32,
        seed: int | np.random.Generator | None = None,
        return_state: bool = True,
    ) -> None:
        super().__init__()
        engine_cls, _ = _import_engine()
        engine = engine_cls(
            input_size,
            hidden_size,
            num_layers=num_layers,
            bias=bias,
            batch_first=batch_first,
            dropout=dropout,
            bidirectional=bidirectional,
            proj_size=proj_size,
            dtype=as_float_dtype(dtype).type,
            seed=_engine_seed(seed),
        )
        self._adopt(engine)
        self.return_state = bool(return_state)

    @classmethod
    def wrap(cls, engine: Any, *, return_state: bool = True) -> LSTM:
        """Wrap an existing engine module (shares its arrays)."""
        self = cls.__new__(cls)
        Module.__init__(self)
        self._adopt(engine)
        self.return_state = bool(return_state)
        return self

    def extra_repr(self) -> str:
        return f"engine={self.engine!r}, return_state={self.return_state}"

    def forward(  # type: ignore[override]
        self,
        x: np.ndarray,
        hx: tuple[np.ndarray, np.ndarray] | None = None,
        lengths: np.ndarray | None = None,
        requires_grad: bool = False,
    ) -> tuple[Any, _LSTMTape | None]:
        if requires_grad:
            result = self.engine.forward(x, hx=hx, lengths=lengths, requires_grad=True)
        else:
            result = self.engine.forward(x, hx=hx, lengths=lengths)
        y, state, etape = self._split(result)
        tape = _LSTMTape(etape, y.shape, y.dtype) if requires_grad else None
        return ((y, state) if self.return_state else y), tape

    def backward(  # type: ignore[override]
        self,
        tape: _LSTMTape,
        dy: Any,
        dh_n: np.ndarray | None = None,
        dc_n: np.ndarray | None = None,
    ) -> Any:
        _check_tape(tape, _LSTMTape, "LSTM")
        if isinstance(dy, tuple):
            if len(dy) != 2 or not isinstance(dy[1], tuple) or len(dy[1]) != 2:
                raise LstmValueError("dy: expected an array or a tuple (dy, (dh_n, dc_n))")
            if dh_n is not None or dc_n is not None:
                raise LstmValueError("dh_n/dc_n: give them either in the tuple dy or by keyword")
            dy, (dh_n, dc_n) = dy
        if dy is None:
            dy = np.zeros(tape.y_shape, tape.y_dtype)
        dx, (dh0, dc0) = self.engine.backward(tape.engine_tape, dy, dh_n=dh_n, dc_n=dc_n)
        return (dx, (dh0, dc0)) if self.return_state else dx


@dataclass
class _CellTape:
    engine_tape: Any


class LSTMCell(_EngineWrapper):
    """One LSTM step (``torch.nn.LSTMCell`` semantics) backed by :class:`pylstm.LSTMCell`.

    ``((h, c), tape) = forward(x, hx=None, requires_grad)``;
    ``dx, (dh0, dc0) = backward(tape, dh, dc=None)`` (``dh`` may be the tuple ``(dh, dc)``).
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        *,
        dtype: Any = np.float32,
        seed: int | np.random.Generator | None = None,
    ) -> None:
        super().__init__()
        _, engine_cls = _import_engine()
        engine = engine_cls(
            input_size, hidden_size, bias=bias, dtype=as_float_dtype(dtype).type,
            seed=_engine_seed(seed),
        )
        self._adopt(engine)

    @classmethod
    def wrap(cls, engine: Any) -> LSTMCell:
        """Wrap an existing engine cell (shares its arrays)."""
        self = cls.__new__(cls)
        Module.__init__(self)
        self._adopt(engine)
        return self

    def extra_repr(self) -> str:
        return f"engine={self.engine!r}"

    def forward(  # type: ignore[override]
        self,
        x: np.ndarray,
        hx: tuple[np.ndarray, np.ndarray] | None = None,
        requires_grad: bool = False,
    ) -> tuple[tuple[np.ndarray, np.ndarray], _CellTape | None]:
        if requires_grad:
            state, etape = self.engine.forward(x, hx=hx, requires_grad=True)
            return state, _CellTape(etape)
        result = self.engine.forward(x, hx=hx)
        # Without requires_grad the engine returns (h, c) or ((h, c), None).
        if len(result) == 2 and isinstance(result[0], tuple):
            result = result[0]
        return (result[0], result[1]), None

    def backward(  # type: ignore[override]
        self, tape: _CellTape, dh: Any, dc: np.ndarray | None = None
    ) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray]]:
        _check_tape(tape, _CellTape, "LSTMCell")
        if isinstance(dh, tuple):
            if dc is not None:
                raise LstmValueError("dc: give it either in the tuple dh or by keyword")
            dh, dc = dh
        dx, (dh0, dc0) = self.engine.backward(tape.engine_tape, dh, dc)
        return dx, (dh0, dc0)
