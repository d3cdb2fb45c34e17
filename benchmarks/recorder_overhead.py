"""What the recorder adds per recorded layer call: an LSTMCell step and a Linear call, recorded
(``with pylstm.record()``) against the explicit ``forward(..., requires_grad=True)`` they wrap.

    python benchmarks/recorder_overhead.py
"""

from __future__ import annotations

import time

import numpy as np

import pylstm
from pylstm import nn


def _best(fn, repeat: int = 2000) -> float:
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(repeat):
            fn()
        best = min(best, (time.perf_counter() - t0) / repeat)
    return best


def main() -> None:
    x = np.random.default_rng(0).standard_normal((8, 64)).astype(np.float32)
    rows = []
    for name, layer in (("LSTMCell h64-b8", pylstm.LSTMCell(64, 64, seed=0)),
                        ("Linear 64->64 b8", nn.Linear(64, 64, seed=0))):
        explicit = _best(lambda layer=layer: layer.forward(x, requires_grad=True))

        def recorded(layer=layer):
            with pylstm.record():
                layer(x)

        rec = _best(recorded)
        rows.append((name, explicit * 1e6, rec * 1e6, (rec - explicit) * 1e6))
    print(f"{'call':<20}{'explicit us':>12}{'recorded us':>13}{'overhead us':>13}")
    for name, e, r, o in rows:
        print(f"{name:<20}{e:>12.1f}{r:>13.1f}{o:>13.1f}")


if __name__ == "__main__":
    main()
