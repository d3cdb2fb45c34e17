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
    use crate::packed::{
        amx_unavailable, pack_bf16, pack_tiles, pack_weights, PackedRecurrent, PackedTileWeights, PackedWeights,
    };

    /// Number of threads the engine uses.
    #[pyfunction]
    fn num_threads() -> usize {
        lstm_core::num_threads()
    }

    /// Sets the number of threads the engine uses.
    #[pyfunction]
    fn set_num_threads(n: &Bound<'_, PyAny>) -> PyResult<()> {
        let got = || format!("{} {}", n.get_type().name().map(|s| s.to_string()).unwrap_or_default(), n);
        if n.is_instance_of::<pyo3::types::PyBool>() {
            return Err(errors::DTypeError::new_err(format!("n: expected a positive int, got {}", got())));
        }
        let n: i64 = n
            .extract()
            .map_err(|_| errors::DTypeError::new_err(format!("n: expected a positive int, got {}", got())))?;
        if n <= 0 {
            return Err(errors::LstmValueError::new_err(format!("n: expected a positive int, got {n}")));
        }
        errors::engine_call(|| lstm_core::set_num_threads(n as usize).map_err(errors::to_py))
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
    fn set_kernel(name: &Bound<'_, PyAny>) -> PyResult<()> {
        let name: String = name.extract().map_err(|_| {
            errors::DTypeError::new_err(format!(
                "name: expected a str, got {}",
                name.get_type().name().map(|s| s.to_string()).unwrap_or_default()
            ))
        })?;
        let p = lstm_core::KernelPath::parse(&name).map_err(errors::to_py)?;
        errors::engine_call(|| lstm_core::set_kernel(p).map_err(errors::to_py))
    }

    /// A problem with `PYLSTM_KERNEL`, if the environment asked for something unusable.
    #[pyfunction]
    fn kernel_env_warning() -> Option<String> {
        lstm_core::kernel::kernel_env_warning()
    }

    /// Float32 GFLOP/s of the engine's threads running fused multiply-adds from registers
    /// for about `seconds`: the arithmetic peak no matrix product can beat.
    #[pyfunction]
    fn fma_peak(py: Python<'_>, seconds: &Bound<'_, PyAny>) -> PyResult<f64> {
        if seconds.is_instance_of::<pyo3::types::PyBool>() {
            return Err(errors::DTypeError::new_err("seconds: expected a number, got bool"));
        }
        let seconds: f64 = seconds.extract().map_err(|_| {
            errors::DTypeError::new_err(format!(
                "seconds: expected a number, got {}",
                seconds.get_type().name().map(|s| s.to_string()).unwrap_or_default()
            ))
        })?;
        if !(seconds.is_finite() && seconds > 0.0 && seconds <= 60.0) {
            return Err(errors::LstmValueError::new_err(format!(
                "seconds: expected a duration in (0, 60], got {seconds}"
            )));
        }
        let d = std::time::Duration::from_secs_f64(seconds);
        errors::engine_call(|| py.detach(|| lstm_core::fma_peak_gflops(d)).map_err(errors::to_py))
    }

    /// Physical memory plus swap in bytes, as the engine's size checks read it (None where
    /// the platform does not say).
    #[pyfunction]
    fn machine_memory() -> Option<usize> {
        lstm_core::machine_memory()
    }

    /// For the tests only: panics inside an engine call, on the calling thread or in a pool
    /// worker, which must come back as `EngineError` with nothing printed.
    #[pyfunction]
    #[pyo3(name = "_debug_panic")]
    fn debug_panic(in_pool: bool, in_binding: bool) -> PyResult<()> {
        errors::engine_call(|| {
            if in_binding {
                panic!("debug panic in the binding");
            }
            lstm_core::debug_panic(in_pool).map_err(errors::to_py)
        })
    }

    /// Forgets the thread pool: call in a forked child.
    #[pyfunction]
    fn reset_after_fork() {
        lstm_core::reset_after_fork()
    }

    #[pymodule_init]
    fn init(m: &Bound<'_, PyModule>) -> PyResult<()> {
        errors::install_panic_hook();
        errors::add_classes(m)?;
        m.add("__version__", env!("CARGO_PKG_VERSION"))?;
        Ok(())
    }
}
