//! Borrowing numpy arrays as typed, contiguous slices, with errors that name the argument.

use numpy::{Element, PyReadonlyArrayDyn, PyUntypedArrayMethods};
use pyo3::prelude::*;

use crate::errors::{DTypeError, ShapeError};

/// Borrows `obj` as a read-only array of `F`; the error names `name`, the expected and the
/// actual dtype or layout.
pub fn borrow<'py, F: Element>(name: &str, obj: &Bound<'py, PyAny>) -> PyResult<PyReadonlyArrayDyn<'py, F>> {
    match obj.extract::<PyReadonlyArrayDyn<'py, F>>() {
        Ok(a) => {
            if !a.is_c_contiguous() {
                return Err(ShapeError::new_err(format!("{name}: expected a C-contiguous array, got a strided view")));
            }
            Ok(a)
        }
        Err(_) => {
            let want = F::get_dtype(obj.py()).str().map(|s| s.to_string()).unwrap_or_default();
            let got = obj
                .getattr("dtype")
                .and_then(|d| d.str())
                .map(|s| s.to_string())
                .unwrap_or_else(|_| obj.get_type().name().map(|n| n.to_string()).unwrap_or_default());
            Err(DTypeError::new_err(format!("{name}: expected a numpy array of dtype {want}, got {got}")))
        }
    }
}

/// Borrows an optional array (`None` stays `None`).
pub fn borrow_opt<'py, F: Element>(
    name: &str,
    obj: Option<&Bound<'py, PyAny>>,
) -> PyResult<Option<PyReadonlyArrayDyn<'py, F>>> {
    match obj {
        Some(o) if !o.is_none() => borrow(name, o).map(Some),
        _ => Ok(None),
    }
}

/// The contiguous data of a borrowed array.
pub fn data<'a, F: Element>(a: &'a PyReadonlyArrayDyn<'_, F>) -> &'a [F] {
    // Contiguity was checked in `borrow`.
    a.as_slice().unwrap_or(&[])
}
