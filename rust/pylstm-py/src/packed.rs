//! `pack_bf16`: recurrent weights rounded to bfloat16 and packed once, for modules that run
//! many inference calls on the same weights.

use lstm_core::{PackedBf16, PackedPanel, TileWeights};
use numpy::{PyReadonlyArrayDyn, PyUntypedArrayMethods};
use pyo3::prelude::*;

use crate::arrays::data;
use crate::errors::{engine_call, to_py, DTypeError, ShapeError};

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
    engine_call(|| {
        let arr = weights_f32("R", r, hidden_size, "P")?;
        let shape = arr.shape().to_vec();
        let values = data(&arr);
        let depth = shape[1];
        let inner = py.detach(|| PackedBf16::new(values, hidden_size, depth)).map_err(to_py)?;
        Ok(PackedRecurrent { inner })
    })
}

/// Float32 `W` and `R` of one direction packed once into the panels the engine's kernels
/// stream. Opaque; pass to `network_forward(..., packed_weights=[[packed per direction] per
/// layer])`.
#[pyclass(module = "pylstm._core", frozen)]
pub struct PackedWeights {
    pub(crate) w: PackedPanel,
    pub(crate) r: PackedPanel,
}

#[pymethods]
impl PackedWeights {
    /// `(hidden_size, input columns of W, columns of R)`.
    #[getter]
    fn dims(&self) -> (usize, usize, usize) {
        (self.w.dims().0, self.w.dims().1, self.r.dims().1)
    }

    /// Bytes held.
    #[getter]
    fn nbytes(&self) -> usize {
        self.w.nbytes() + self.r.nbytes()
    }
}

/// A float32 `[4 * hidden_size, cols]` C-contiguous matrix named `name`, checked (`cols` names
/// the second dimension in messages).
fn weights_f32<'py>(
    name: &str,
    a: &Bound<'py, PyAny>,
    hidden_size: usize,
    cols: &str,
) -> PyResult<PyReadonlyArrayDyn<'py, f32>> {
    let arr: PyReadonlyArrayDyn<'py, f32> = a.extract().map_err(|_| {
        let got = a.getattr("dtype").and_then(|d| d.str().map(|s| s.to_string())).unwrap_or_else(|_| "?".into());
        DTypeError::new_err(format!("{name}: expected a float32 array for packing, got dtype {got}"))
    })?;
    let shape = arr.shape().to_vec();
    let rows = hidden_size.checked_mul(4);
    if shape.len() != 2 || rows != Some(shape[0]) {
        let rows = rows.map_or_else(|| format!("4*{hidden_size}"), |r| r.to_string());
        return Err(ShapeError::new_err(format!(
            "{name}: expected shape [4*hidden_size, {cols}] = [{rows}, {cols}], got {shape:?}"
        )));
    }
    if !arr.is_c_contiguous() {
        return Err(ShapeError::new_err(format!("{name}: expected a C-contiguous array")));
    }
    Ok(arr)
}

/// Checks one direction's float32 `w` (`[4 * hidden_size, I]`) and `r` (`[4 * hidden_size, P]`)
/// and hands their values and widths (`I`, `P`) to `pack`.
fn with_pair<T>(
    w: &Bound<'_, PyAny>,
    r: &Bound<'_, PyAny>,
    hidden_size: usize,
    pack: impl FnOnce(&[f32], &[f32], usize, usize) -> lstm_core::Result<T>,
) -> PyResult<T> {
    engine_call(|| {
        let (wa, ra) = (weights_f32("W", w, hidden_size, "I")?, weights_f32("R", r, hidden_size, "P")?);
        let (wd, rd) = (wa.shape()[1], ra.shape()[1]);
        pack(data(&wa), data(&ra), wd, rd).map_err(to_py)
    })
}

/// Packs one direction's float32 `w` (`[4 * hidden_size, I]`) and `r` (`[4 * hidden_size, P]`).
#[pyfunction]
pub fn pack_weights(
    py: Python<'_>,
    w: &Bound<'_, PyAny>,
    r: &Bound<'_, PyAny>,
    hidden_size: usize,
) -> PyResult<PackedWeights> {
    with_pair(w, r, hidden_size, |wv, rv, wd, rd| {
        py.detach(|| {
            Ok(PackedWeights { w: PackedPanel::new(wv, hidden_size, wd)?, r: PackedPanel::new(rv, hidden_size, rd)? })
        })
    })
}

/// Float32 `W` and `R` of one direction rounded to bfloat16 and packed as AMX tiles, for the
/// bfloat16 compute path. Opaque; pass to `network_forward(..., tile_weights=[[packed per
/// direction] per layer])`.
#[pyclass(module = "pylstm._core", frozen)]
pub struct PackedTileWeights {
    pub(crate) inner: TileWeights,
}

#[pymethods]
impl PackedTileWeights {
    /// `(hidden_size, input columns of W, columns of R)`.
    #[getter]
    fn dims(&self) -> (usize, usize, usize) {
        self.inner.dims()
    }

    /// Bytes held.
    #[getter]
    fn nbytes(&self) -> usize {
        self.inner.nbytes()
    }
}

/// Rounds one direction's float32 `w` (`[4 * hidden_size, I]`) and `r` (`[4 * hidden_size, P]`)
/// to bfloat16 and packs them as AMX tiles.
#[pyfunction]
pub fn pack_tiles(
    py: Python<'_>,
    w: &Bound<'_, PyAny>,
    r: &Bound<'_, PyAny>,
    hidden_size: usize,
) -> PyResult<PackedTileWeights> {
    with_pair(w, r, hidden_size, |wv, rv, wd, rd| {
        py.detach(|| TileWeights::new(wv, rv, hidden_size, wd, rd)).map(|inner| PackedTileWeights { inner })
    })
}

/// `None` where this process can compute in bfloat16 on AMX tiles, else why it cannot.
#[pyfunction]
pub fn amx_unavailable() -> Option<String> {
    lstm_core::amx_status().err()
}
