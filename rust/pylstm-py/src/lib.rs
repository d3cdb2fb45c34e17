//! PyO3 binding of `lstm-core`, compiled to `pylstm._core`. It only converts arrays and errors:
//! arrays are borrowed while attached to the interpreter, the work runs with the GIL released,
//! and results move into numpy without a copy.

mod arrays;
mod errors;
mod network;
mod packed;

use pyo3::prelude::*;

/// The engine's native module.
#[pymodule]
mod _core {
    use super::*;

    #[pymodule_export]
    use crate::network::{network_backward, network_forward, Tape};
    #[pymodule_export]
    use crate::packed::{pack_bf16, pack_weights, PackedRecurrent, PackedWeights};

    /// Number of threads the engine uses.
    #[pyfunction]
    fn num_threads() -> usize {
        lstm_core::num_threads()
    }

    /// Sets the number of threads the engine uses.
    #[pyfunction]
    fn set_num_threads(n: i64) -> PyResult<()> {
        if n <= 0 {
            return Err(errors::LstmValueError::new_err(format!("num_threads: expected a positive integer, got {n}")));
        }
        lstm_core::set_num_threads(n as usize).map_err(errors::to_py)
    }

    /// The point-wise kernel path in use (`scalar`, `avx2`, `avx512` or `neon`).
    #[pyfunction]
    fn kernel() -> &'static str {
        lstm_core::active_kernel().name()
    }

    /// The best kernel path this CPU supports.
    #[pyfunction]
    fn detected_kernel() -> &'static str {
        lstm_core::KernelPath::detect().name()
    }

    /// Every kernel path this CPU supports.
    #[pyfunction]
    fn supported_kernels() -> Vec<&'static str> {
        use lstm_core::KernelPath::*;
        [Scalar, Avx2, Avx512, Neon].into_iter().filter(|p| p.supported()).map(|p| p.name()).collect()
    }

    /// Pins the point-wise kernels to a path.
    #[pyfunction]
    fn set_kernel(name: &str) -> PyResult<()> {
        let p = lstm_core::KernelPath::parse(name).map_err(errors::to_py)?;
        lstm_core::set_kernel(p).map_err(errors::to_py)
    }

    /// A problem with `PYLSTM_KERNEL`, if the environment asked for something unusable.
    #[pyfunction]
    fn kernel_env_warning() -> Option<String> {
        lstm_core::kernel::kernel_env_warning()
    }

    /// Float32 GFLOP/s of the engine's threads running fused multiply-adds from registers
    /// for about `seconds`: the arithmetic peak no matrix product can beat.
    #[pyfunction]
    fn fma_peak(py: Python<'_>, seconds: f64) -> PyResult<f64> {
        if !(seconds.is_finite() && seconds > 0.0 && seconds <= 60.0) {
            return Err(errors::LstmValueError::new_err(format!(
                "seconds: expected a duration in (0, 60], got {seconds}"
            )));
        }
        let d = std::time::Duration::from_secs_f64(seconds);
        py.detach(|| lstm_core::fma_peak_gflops(d)).map_err(errors::to_py)
    }

    /// Forgets the thread pool: call in a forked child.
    #[pyfunction]
    fn reset_after_fork() {
        lstm_core::reset_after_fork()
    }

    #[pymodule_init]
    fn init(m: &Bound<'_, PyModule>) -> PyResult<()> {
        let py = m.py();
        m.add("ShapeError", py.get_type::<errors::ShapeError>())?;
        m.add("LstmValueError", py.get_type::<errors::LstmValueError>())?;
        m.add("TapeError", py.get_type::<errors::TapeError>())?;
        m.add("DTypeError", py.get_type::<errors::DTypeError>())?;
        m.add("EngineError", py.get_type::<errors::EngineError>())?;
        m.add("__version__", env!("CARGO_PKG_VERSION"))?;
        Ok(())
    }
}
