//! # lstm-core
//!
//! A complete LSTM for the CPU, forward and backward (BPTT), with the semantics of both the
//! ONNX `LSTM` operator (gate order i, o, f, c; peepholes; clip; input-forget coupling; eleven
//! activation functions; per-sequence lengths; forward, reverse and bidirectional) and PyTorch's
//! `nn.LSTM` (gate order i, f, g, o; several layers; projections; inter-layer dropout).
//!
//! The time loop runs on a persistent team of threads with one barrier per step; the
//! point-wise gate and cell update is one fused pass compiled per instruction set and chosen at
//! run time ([`kernel::KernelPath`]). The per-step products and most input projections run on
//! register-blocked kernels over weights packed into panels per call; large products go to the
//! `gemm` crate.
#![deny(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn, clippy::undocumented_unsafe_blocks)]

pub mod activation;
mod alloc;
pub mod amx;
pub mod bf16;
pub mod error;
mod fused;
pub mod kernel;
pub mod layer;
pub mod network;
pub mod packed;
pub mod peak;
pub mod real;
mod recurrent;
pub mod schedule;
mod scratch;
mod simd;
pub mod threads;

pub use activation::Activation;
pub use alloc::machine_memory;
pub use amx::{amx_status, PackedTiles, TileWeights};
pub use bf16::PackedBf16;
pub use error::{LstmError, Result};
pub use kernel::{active_kernel, set_kernel, CellOps, KernelPath};
pub use layer::{
    layer_backward, layer_forward, DirGrads, DirParams, GateOrder, LayerGrads, LayerOutput, LayerShape, LayerTape,
};
pub use network::{network_backward, network_forward, NetworkGrads, NetworkOutput, NetworkTape, TAPE_USED};
pub use packed::PackedPanel;
pub use peak::fma_peak_gflops;
pub use real::Real;
pub use schedule::Schedule;
pub use threads::{debug_panic, num_threads, reset_after_fork, set_inline_work, set_num_threads};

#[cfg(test)]
mod tests;
