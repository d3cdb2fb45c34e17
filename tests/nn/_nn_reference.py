"""A tiny numpy LSTM that implements the engine contract of docs/ARCHITECTURE.md (one layer,
one direction, sequence-first, torch gate order i, f, g, o). The tests use it to check that the
``pylstm.nn`` wrappers compose correctly even before the Rust engine is built; it is checked
against ``torch.nn.LSTM`` itself."""

from __future__ import annotations

import numpy as np


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


class RefLSTMCell:
    def __init__(self, input_size, hidden_size, bias=True, dtype=np.float64, seed=None):
        rng = np.random.default_rng(seed)
        k = 1.0 / np.sqrt(hidden_size)
        h4 = 4 * hidden_size
        self.hidden_size = hidden_size
        self.parameters = {
            "weight_ih": rng.uniform(-k, k, (h4, input_size)).astype(dtype),
            "weight_hh": rng.uniform(-k, k, (h4, hidden_size)).astype(dtype),
        }
        if bias:
            self.parameters["bias_ih"] = rng.uniform(-k, k, h4).astype(dtype)
            self.parameters["bias_hh"] = rng.uniform(-k, k, h4).astype(dtype)
        self.grads = {n: np.zeros_like(p) for n, p in self.parameters.items()}
        self.training = True
        self.mode_calls = []

    def train(self, mode=True):
        self.training = mode
        self.mode_calls.append(mode)

    def eval(self):
        self.train(False)

    def _step(self, x, h, c, suffix=""):
        p = self.parameters
        z = x @ p["weight_ih" + suffix].T + h @ p["weight_hh" + suffix].T
        if "bias_ih" + suffix in p:
            z = z + p["bias_ih" + suffix] + p["bias_hh" + suffix]
        H = self.hidden_size
        i, f = _sigmoid(z[:, :H]), _sigmoid(z[:, H:2 * H])
        g, o = np.tanh(z[:, 2 * H:3 * H]), _sigmoid(z[:, 3 * H:])
        c2 = f * c + i * g
        tc = np.tanh(c2)
        h2 = o * tc
        return h2, c2, (x, h, c, i, f, g, o, tc)

    def _step_back(self, cache, dh, dc, suffix=""):
        x, h, c, i, f, g, o, tc = cache
        p = self.parameters
        do = dh * tc
        dc = dc + dh * o * (1 - tc * tc)
        di, df, dg = dc * g, dc * c, dc * i
        dz = np.concatenate(
            [di * i * (1 - i), df * f * (1 - f), dg * (1 - g * g), do * o * (1 - o)], axis=1
        )
        self.grads["weight_ih" + suffix] += dz.T @ x
        self.grads["weight_hh" + suffix] += dz.T @ h
        if "bias_ih" + suffix in p:
            self.grads["bias_ih" + suffix] += dz.sum(0)
            self.grads["bias_hh" + suffix] += dz.sum(0)
        return dz @ p["weight_ih" + suffix], dz @ p["weight_hh" + suffix], dc * f

    def forward(self, x, hx=None, requires_grad=False):
        b = x.shape[0]
        h, c = hx if hx is not None else (np.zeros((b, self.hidden_size), x.dtype),) * 2
        h2, c2, cache = self._step(x, h, c)
        return ((h2, c2), cache) if requires_grad else ((h2, c2), None)

    def backward(self, tape, dh, dc=None):
        dc = np.zeros_like(dh) if dc is None else dc
        dx, dh0, dc0 = self._step_back(tape, dh, dc)
        return dx, (dh0, dc0)


class RefLSTM(RefLSTMCell):
    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False,
                 dropout=0.0, bidirectional=False, proj_size=0, dtype=np.float64, seed=None):
        assert num_layers == 1 and not bidirectional and proj_size == 0 and not batch_first
        super().__init__(input_size, hidden_size, bias, dtype, seed)
        self.parameters = {k + "_l0": v for k, v in self.parameters.items()}
        self.grads = {k + "_l0": v for k, v in self.grads.items()}

    def forward(self, x, hx=None, lengths=None, requires_grad=False):
        assert lengths is None
        t, b, _ = x.shape
        if hx is None:
            h = c = np.zeros((b, self.hidden_size), x.dtype)
        else:
            h, c = hx[0][0], hx[1][0]
        ys, caches = [], []
        for s in range(t):
            h, c, cache = self._step(x[s], h, c, "_l0")
            ys.append(h)
            caches.append(cache)
        y = np.stack(ys)
        out = (y, (h[None], c[None]))
        return (*out, caches) if requires_grad else out

    def backward(self, tape, dy, dh_n=None, dc_n=None):
        t = len(tape)
        b, hs = dy.shape[1], self.hidden_size
        dh = np.zeros((b, hs), dy.dtype) if dh_n is None else dh_n[0].copy()
        dc = np.zeros((b, hs), dy.dtype) if dc_n is None else dc_n[0].copy()
        dxs = [None] * t
        for s in range(t - 1, -1, -1):
            dxs[s], dh, dc = self._step_back(tape[s], dh + dy[s], dc, "_l0")
        return np.stack(dxs), (dh[None], dc[None])


def _zero_grad(self):
    # like pylstm.modules: zero_grad *replaces* the grads dict
    self.grads = {k: np.zeros_like(v) for k, v in self.parameters.items()}


def _mark_updated(self):
    self.updates = getattr(self, "updates", 0) + 1


for _cls in (RefLSTMCell,):
    _cls.zero_grad = _zero_grad
    _cls.mark_updated = _mark_updated
