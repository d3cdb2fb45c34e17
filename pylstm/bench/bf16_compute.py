"""The ``bf16c`` group: the opt-in bfloat16 compute path (``LSTM(...,
compute_dtype="bfloat16")``, AMX tiles) against PyTorch's bfloat16 LSTM (oneDNN, on AMX where
the CPU has it) and against our own float32, on the DeepBench shapes; each row states the
error of both bfloat16 runs against their float32 runs of the same weights and inputs.

Only where this CPU has AMX (``pylstm.info()["amx"]``); elsewhere the group is empty and the
suite's metadata says why.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

import pylstm

from . import anchors
from .timing import lstm_flops, measure

Row = dict[str, Any]

# DeepBench inference shapes (input = hidden) at batch >= 4, where the target counts, and
# batch 1 beside them.
BF16C_SHAPES = [(256, 32, 150), (512, 16, 25), (1024, 32, 25), (2048, 16, 25), (1536, 8, 50),
                (512, 4, 25), (1024, 4, 25), (256, 4, 150), (1024, 1, 25)]
BF16C_QUICK = [(128, 4, 10)]


def bf16c_case(hidden: int, batch: int, steps: int) -> Callable[[Any], Row]:
    """One row: ours in bfloat16 vs PyTorch in bfloat16 and ours in float32."""
    from .cases import _maxdiff, _row, _torch

    def run(ctx: Any) -> Row:
        rng = np.random.default_rng(ctx.seed)
        m = pylstm.LSTM(hidden, hidden, seed=ctx.seed, compute_dtype="bfloat16")
        m32 = pylstm.LSTM(hidden, hidden, seed=ctx.seed)
        x = rng.standard_normal((steps, batch, hidden)).astype(np.float32)
        y16, y32 = m(x)[0], m32(x)[0]
        scale = float(np.abs(y32).max())
        err: dict[str, float] = {"ours_vs_float32": _maxdiff(y16, y32)}
        err["ours_vs_float32_rel"] = err["ours_vs_float32"] / scale
        fns: dict[str, Callable[[], Any]] = {"ours": lambda: m(x), "ours_float32": lambda: m32(x)}
        notes: dict[str, str | None] = {"ours_float32": "the same module in float32"}
        missing = anchors.torch_missing()
        if missing:
            notes["torch_bfloat16"] = f"missing: {missing}"
        else:
            torch = _torch(ctx.threads)
            tm32 = anchors.torch_lstm_from(m32)
            tm = anchors.torch_lstm_from(m32).to(torch.bfloat16)
            xt = torch.from_numpy(x)
            xb = xt.to(torch.bfloat16)

            def theirs() -> None:
                with torch.no_grad():
                    tm(xb)

            with torch.no_grad():
                yt16 = tm(xb)[0].float()
                yt32 = tm32(xt)[0]
            err["torch_bfloat16_vs_float32"] = _maxdiff(yt16, yt32)
            err["torch_bfloat16_vs_float32_rel"] = err["torch_bfloat16_vs_float32"] / float(
                yt32.abs().max())
            err["torch_float32_vs_ours_float32"] = _maxdiff(yt32, y32)
            fns["torch_bfloat16"] = theirs
            notes["torch_bfloat16"] = None
        times = measure(fns, ctx.timing)
        return _row(ctx, f"bf16c/h{hidden}-b{batch}-t{steps}", "bf16c",
                    "forward, bfloat16 compute", lstm_flops(hidden, hidden, batch, steps), times,
                    notes, hidden=hidden, input_size=hidden, batch=batch, steps=steps,
                    max_abs_diff=err)
    return run
