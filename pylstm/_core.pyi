"""Type stubs for the Rust extension ``pylstm._core`` (checked with ``mypy.stubtest``)."""

from collections.abc import Sequence
from typing import Any, final

import numpy as np
import numpy.typing as npt

__version__: str
__all__ = [
    "DTypeError",
    "EngineError",
    "LstmValueError",
    "PackedRecurrent",
    "PackedTileWeights",
    "PackedWeights",
    "PylstmError",
    "PylstmMemoryError",
    "ShapeError",
    "Tape",
    "TapeError",
    "__version__",
    "_debug_panic",
    "amx_unavailable",
    "detected_kernel",
    "fma_peak",
    "kernel",
    "kernel_env_warning",
    "machine_memory",
    "network_backward",
    "network_forward",
    "num_threads",
    "pack_bf16",
    "pack_tiles",
    "pack_weights",
    "reset_after_fork",
    "set_kernel",
    "set_num_threads",
    "supported_kernels",
]

class PylstmError(Exception): ...
class ShapeError(PylstmError, ValueError): ...
class LstmValueError(PylstmError, ValueError): ...
class TapeError(PylstmError, ValueError): ...
class DTypeError(PylstmError, TypeError): ...
class EngineError(PylstmError, RuntimeError): ...
class PylstmMemoryError(PylstmError, MemoryError): ...

@final
class Tape:
    @property
    def nbytes(self) -> int: ...
    @property
    def dtype(self) -> str: ...
    @property
    def used(self) -> bool: ...

@final
class PackedRecurrent:
    @property
    def dims(self) -> tuple[int, int]: ...
    @property
    def nbytes(self) -> int: ...

def pack_bf16(r: npt.NDArray[np.float32], hidden_size: int) -> PackedRecurrent: ...

@final
class PackedWeights:
    @property
    def dims(self) -> tuple[int, int, int]: ...
    @property
    def nbytes(self) -> int: ...

def pack_weights(
    w: npt.NDArray[np.float32], r: npt.NDArray[np.float32], hidden_size: int
) -> PackedWeights: ...

@final
class PackedTileWeights:
    @property
    def dims(self) -> tuple[int, int, int]: ...
    @property
    def nbytes(self) -> int: ...

def pack_tiles(
    w: npt.NDArray[np.float32], r: npt.NDArray[np.float32], hidden_size: int
) -> PackedTileWeights: ...
def amx_unavailable() -> str | None: ...

_Activation = tuple[str, float | None, float | None]
_Layer = Sequence[Sequence[Any]]

def network_forward(
    x: npt.NDArray[np.floating[Any]],
    layers: _Layer,
    *,
    hidden_size: int,
    proj_size: int,
    order: str,
    reverse: Sequence[bool],
    activations: Sequence[Sequence[_Activation]],
    clip: float | None = None,
    input_forget: bool = False,
    h0: npt.NDArray[np.floating[Any]] | None = None,
    c0: npt.NDArray[np.floating[Any]] | None = None,
    lengths: Sequence[int] | None = None,
    masks: Sequence[npt.NDArray[np.floating[Any]] | None] | None = None,
    keep_tape: bool = False,
    bf16_weights: bool | Sequence[Sequence[PackedRecurrent]] | None = None,
    packed_weights: Sequence[Sequence[PackedWeights]] | None = None,
    tile_weights: bool | Sequence[Sequence[PackedTileWeights]] | None = None,
) -> tuple[Any, Any, Any, Tape | None]: ...
def network_backward(
    tape: Tape,
    layers: _Layer,
    dy: npt.NDArray[np.floating[Any]] | None = None,
    dh_n: npt.NDArray[np.floating[Any]] | None = None,
    dc_n: npt.NDArray[np.floating[Any]] | None = None,
    *,
    retain: bool | None = None,
) -> tuple[Any, Any, Any, list[list[dict[str, Any]]]]: ...
def num_threads() -> int: ...
def set_num_threads(n: int) -> None: ...
def kernel() -> str: ...
def detected_kernel() -> str: ...
def supported_kernels() -> list[str]: ...
def set_kernel(name: str) -> None: ...
def kernel_env_warning() -> str | None: ...
def fma_peak(seconds: float) -> float: ...
def reset_after_fork() -> None: ...
def machine_memory() -> int | None: ...
def _debug_panic(in_pool: bool, in_binding: bool) -> None: ...
