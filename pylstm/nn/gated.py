""":class:`GatedLSTM`: an LSTM whose every step is scaled by a gate given from outside.

The attention LSTM of a dynamic memory network (DMN+'s attention GRU, on an LSTM cell): step
``t`` computes the ordinary cell update ``(h~, c~)`` from ``x_t`` and the previous state, and
the gate ``g_t`` in ``[0, 1]`` decides how much of it is taken::

    h_t = h_{t-1} + g_t (h~_t - h_{t-1})        c_t = c_{t-1} + g_t (c~_t - c_{t-1})

so a step with gate 0 leaves the state untouched. One module call runs the whole sequence
(the input projection of every step as one product, the time loop in numpy, BPTT by hand),
instead of one recorded cell call and six recorded element-wise ops per step.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from pylstm.errors import ShapeError

from ._validate import as_float_dtype, check_float, check_shape, make_rng, positive_int
from .module import Module, Parameter, check_tape

__all__ = ["GatedLSTM"]


def _sigmoid(x: np.ndarray) -> np.ndarray:
    """``1 / (1 + e^-x)`` as ``(1 + tanh(x/2)) / 2``: one ufunc, no overflow."""
    return 0.5 * (1.0 + np.tanh(0.5 * x))


@dataclass
class _GatedTape:
    x: np.ndarray          # [B, T, I]
    gates: np.ndarray      # [B, T]
    h: np.ndarray          # [T + 1, B, H]: the state before each step, then the last
    c: np.ndarray          # [T + 1, B, H]
    acts: np.ndarray       # [T, B, 4H]: sigmoid(i), sigmoid(f), tanh(g), sigmoid(o)
    c_new: np.ndarray      # [T, B, H]: c~
    tanh_c: np.ndarray     # [T, B, H]: tanh(c~)


class GatedLSTM(Module):
    """``h_T = GatedLSTM(input_size, hidden_size)(x, gates)``: ``x`` ``[B, T, input_size]``,
    ``gates`` ``[B, T]`` -> the last hidden state ``[B, hidden_size]`` (zero initial state).

    Parameters as ``torch.nn.LSTMCell`` (and :class:`pylstm.LSTMCell`, same names, gate order
    i, f, g, o, the same initialisation for the same ``seed``): ``weight_ih`` ``[4H, I]``,
    ``weight_hh`` ``[4H, H]``, ``bias_ih``, ``bias_hh`` ``[4H]``. ``gates`` is not clipped:
    values outside ``[0, 1]`` extrapolate the update.
    """

    def __init__(self, input_size: int, hidden_size: int, *, dtype: Any = np.float32,
                 seed: int | np.random.Generator | None = None) -> None:
        super().__init__()
        self.input_size = positive_int(input_size, "input_size")
        self.hidden_size = positive_int(hidden_size, "hidden_size")
        self.dtype = as_float_dtype(dtype)
        rng = make_rng(seed)
        h = self.hidden_size
        bound = 1.0 / np.sqrt(h)
        for name, shape in (("weight_ih", (4 * h, self.input_size)),
                            ("weight_hh", (4 * h, h)), ("bias_ih", (4 * h,)),
                            ("bias_hh", (4 * h,))):
            setattr(self, name, Parameter(rng.uniform(-bound, bound, shape).astype(self.dtype)))

    def extra_repr(self) -> str:
        return f"{self.input_size}, {self.hidden_size}, dtype={self.dtype}"

    def forward(self, x: np.ndarray, gates: np.ndarray,  # type: ignore[override]
                requires_grad: bool = False) -> Any:
        """The last hidden state ``[B, H]`` (and the tape with ``requires_grad``)."""
        x = check_float(x, "x", self.dtype)
        gates = check_float(gates, "gates", self.dtype)
        if x.ndim != 3 or x.shape[2] != self.input_size:
            raise ShapeError(f"x: expected shape [batch, steps, {self.input_size}], got "
                             f"{list(x.shape)}")
        b, t, _ = x.shape
        check_shape(gates, "gates", (b, t))
        hs = self.hidden_size
        xz = (x.reshape(-1, self.input_size) @ self.weight_ih.data.T).reshape(b, t, 4 * hs)
        xz += self.bias_ih.data + self.bias_hh.data
        h = np.zeros((t + 1, b, hs), self.dtype)
        c = np.zeros((t + 1, b, hs), self.dtype)
        acts = np.empty((t, b, 4 * hs), self.dtype) if requires_grad else None
        c_new = np.empty((t, b, hs), self.dtype) if requires_grad else None
        tanh_c = np.empty((t, b, hs), self.dtype) if requires_grad else None
        r_t = self.weight_hh.data.T
        for s in range(t):
            z = xz[:, s] + h[s] @ r_t
            sig = _sigmoid(z)  # all four, the third discarded: one call beats three
            i, f, o = sig[:, :hs], sig[:, hs:2 * hs], sig[:, 3 * hs:]
            gg = np.tanh(z[:, 2 * hs:3 * hs])
            cn = f * c[s] + i * gg
            tc = np.tanh(cn)
            hn = o * tc
            g = gates[:, s:s + 1]
            h[s + 1] = h[s] + g * (hn - h[s])
            c[s + 1] = c[s] + g * (cn - c[s])
            if requires_grad:
                acts[s] = np.concatenate([i, f, gg, o], axis=1)
                c_new[s], tanh_c[s] = cn, tc
        last = h[t].copy()
        if not requires_grad:
            return last
        return last, _GatedTape(x, gates, h, c, acts, c_new, tanh_c)

    def backward(self, tape: _GatedTape, dout: np.ndarray  # type: ignore[override]
                 ) -> tuple[np.ndarray, np.ndarray]:
        """``(dx, dgates)`` for ``dout`` ``[B, H]`` (the last state's gradient); the
        parameter gradients are added into each ``p.grad``."""
        check_tape(tape, _GatedTape, "GatedLSTM")
        x, gates = tape.x, tape.gates
        b, t, _ = x.shape
        hs = self.hidden_size
        dout = check_float(dout, "dout", self.dtype)
        check_shape(dout, "dout", (b, hs))
        dh = dout.astype(self.dtype, copy=True)
        dc = np.zeros((b, hs), self.dtype)
        dz = np.empty((t, b, 4 * hs), self.dtype)
        dgates = np.empty((b, t), self.dtype)
        w_hh = self.weight_hh.data
        for s in range(t - 1, -1, -1):
            g = gates[:, s:s + 1]
            i, f, gg, o = (tape.acts[s][:, k * hs:(k + 1) * hs] for k in range(4))
            cn, tc, h_prev, c_prev = tape.c_new[s], tape.tanh_c[s], tape.h[s], tape.c[s]
            hn = o * tc
            dgates[:, s] = ((dh * (hn - h_prev)).sum(axis=1) +
                            (dc * (cn - c_prev)).sum(axis=1))
            dhn, dcn = g * dh, g * dc
            dcn = dcn + dhn * o * (1 - tc * tc)
            dz[s, :, :hs] = dcn * gg * i * (1 - i)
            dz[s, :, hs:2 * hs] = dcn * c_prev * f * (1 - f)
            dz[s, :, 2 * hs:3 * hs] = dcn * i * (1 - gg * gg)
            dz[s, :, 3 * hs:] = dhn * tc * o * (1 - o)
            dh = (1 - g) * dh + dz[s] @ w_hh
            dc = (1 - g) * dc + dcn * f
        flat = dz.transpose(1, 0, 2).reshape(-1, 4 * hs)     # [B*T, 4H], rows as x's
        self.weight_ih.grad += flat.T @ x.reshape(-1, self.input_size)
        self.weight_hh.grad += dz.reshape(-1, 4 * hs).T @ tape.h[:t].reshape(-1, hs)
        db = flat.sum(axis=0)
        self.bias_ih.grad += db
        self.bias_hh.grad += db
        dx = (flat @ self.weight_ih.data).reshape(x.shape)
        return dx, dgates
