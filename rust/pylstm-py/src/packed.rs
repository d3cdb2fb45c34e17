//! `pack_bf16`: recurrent weights rounded to bfloat16 and packed once, for modules that run
//! many inference calls on the same weights.

use lstm_core::PackedBf16;
use numpy::{PyReadonlyArrayDyn, PyUntypedArrayMethods};
use pyo3::prelude::*;

use crate::arrays::data;
use crate::errors::{to_py, DTypeError, ShapeError};

/// Recurrent weights `R` (`[4H, P]`) rounded to bfloat16 and packed for the step kernel.
/// Opaque; pass to `network_forward(..., bf16_weights=[[packed per direction] per layer])`.
#[pyclass(module = "pylstm._core", frozen)]
pub struct PackedRecurrent {
    pub(crate) inner: PackedBf16,
}

#[pymethods]
impl PackedRecurrent {
    /// `(hidden_size, columns of R)`.
    #[getter]
    fn dims(&self) -> (usize, usize) {
        self.inner.dims()
    }

    /// Bytes held.
    #[getter]
    fn nbytes(&self) -> usize {
        self.inner.nbytes()
    }
}

/// Rounds `r` (float32 `[4 * hidden_size, P]`) to bfloat16 and packs it.
#[pyfunction]
pub fn pack_bf16(py: Python<'_>, r: &Bound<'_, PyAny>, hidden_size: usize) -> PyResult<PackedRecurrent> {
    let arr: PyReadonlyArrayDyn<'_, f32> = r.extract().map_err(|_| {
        let got = r.getattr("dtype").and_then(|d| d.str().map(|s| s.to_string())).unwrap_or_else(|_| "?".into());
        DTypeError::new_err(format!("R: expected a float32 array for bfloat16 packing, got dtype {got}"))
    })?;
    let shape = arr.shape().to_vec();
    if shape.len() != 2 || shape[0] != 4 * hidden_size {
        return Err(ShapeError::new_err(format!(
            "R: expected shape [4*hidden_size, P] = [{}, P], got {shape:?}",
            4 * hidden_size
        )));
    }
    if !arr.is_c_contiguous() {
        return Err(ShapeError::new_err("R: expected a C-contiguous array"));
    }
    let values = data(&arr);
    let depth = shape[1];
    let inner = py.detach(|| PackedBf16::new(values, hidden_size, depth)).map_err(to_py)?;
    Ok(PackedRecurrent { inner })
}
