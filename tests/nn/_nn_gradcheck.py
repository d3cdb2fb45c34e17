"""Central finite-difference gradient checks shared by the nn tests (float64)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

EPS = 1e-6
RTOL = 1e-5
ATOL = 1e-7


def numeric_grad(f: Callable[[], float], x: np.ndarray, eps: float = EPS) -> np.ndarray:
    """d f / d x by central differences, perturbing ``x`` in place."""
    g = np.zeros_like(x, dtype=np.float64)
    for idx in np.ndindex(x.shape):
        old = x[idx]
        x[idx] = old + eps
        fp = f()
        x[idx] = old - eps
        fm = f()
        x[idx] = old
        g[idx] = (fp - fm) / (2 * eps)
    return g


def assert_close(analytic: np.ndarray, numeric: np.ndarray, what: str) -> None:
    assert analytic.shape == numeric.shape, f"{what}: shape {analytic.shape} != {numeric.shape}"
    np.testing.assert_allclose(analytic, numeric, rtol=RTOL, atol=ATOL, err_msg=what)


def check_grads(
    run: Callable[[bool], tuple[Sequence[np.ndarray], object]],
    backward: Callable[[object, list[np.ndarray]], Sequence[np.ndarray | None]],
    inputs: Sequence[np.ndarray],
    module=None,
    seed: int = 0,
) -> None:
    """Check input and parameter gradients.

    ``run(requires_grad) -> (outputs, tape)``; ``backward(tape, douts) -> grads`` aligned with
    ``inputs``. The scalar checked is ``sum_k <outputs[k], R_k>`` with fixed random ``R_k``,
    differentiated numerically through ``run(False)`` (the inference path), so the analytic
    gradients of the recorded forward also prove the two paths compute the same function.
    ``module``: its parameters (``named_parameters``/``named_grads``) are checked too.
    """
    outs, tape = run(True)
    rng = np.random.default_rng(seed)
    weights = [rng.standard_normal(np.shape(o)) for o in outs]

    def scalar() -> float:
        o, _ = run(False)
        return float(sum(np.sum(a * w) for a, w in zip(o, weights, strict=True)))

    if module is not None:
        module.zero_grad()
    dins = backward(tape, [w.astype(o.dtype) for w, o in zip(weights, outs, strict=True)])
    assert len(dins) == len(inputs)
    for i, (x, dx) in enumerate(zip(inputs, dins, strict=True)):
        assert dx is not None, f"input {i} has no gradient"
        assert_close(dx, numeric_grad(scalar, x), f"input {i}")
    if module is not None:
        params = list(module.named_parameters())
        assert params, "module has no parameters to check"
        for name, p in params:
            assert_close(p.grad.copy(), numeric_grad(scalar, p.data), f"parameter {name}")


def layer_run(call: Callable[..., object]) -> Callable[[bool], tuple[list, object]]:
    """``run`` for :func:`check_grads` from ``call(**kw)`` (a layer's ``forward`` with its
    inputs bound): ``call(requires_grad=True)`` gives ``(out, tape)``, ``call()`` the output
    alone; ``out`` is one array or a tuple of arrays."""

    def run(requires_grad: bool) -> tuple[list, object]:
        if requires_grad:
            out, tape = call(requires_grad=True)
        else:
            out, tape = call(), None
        return (list(out) if isinstance(out, tuple) else [out]), tape

    return run


def check_recorded(fn: Callable[..., object], inputs: Sequence[np.ndarray], module=None,
                   seed: int = 0) -> None:
    """Check the recorder's gradients of ``fn(*inputs)`` (tensors in, a tensor out) for the
    inputs and ``module``'s parameters against central differences."""
    import pylstm

    leaves = [pylstm.tensor(x, requires_grad=True) for x in inputs]
    out = fn(*leaves)
    weights = np.random.default_rng(seed).standard_normal(out.shape)
    if module is not None:
        module.zero_grad()
    (out * weights).sum().backward()

    def scalar() -> float:
        return float(np.sum(fn(*[pylstm.tensor(x) for x in inputs]).data * weights))

    for i, (x, leaf) in enumerate(zip(inputs, leaves, strict=True)):
        assert leaf.grad is not None, f"input {i} has no gradient"
        assert_close(leaf.grad, numeric_grad(scalar, x), f"input {i}")
    if module is not None:
        params = list(module.named_parameters())
        assert params, "module has no parameters to check"
        for name, p in params:
            assert_close(p.grad.copy(), numeric_grad(scalar, p.data), f"parameter {name}")
