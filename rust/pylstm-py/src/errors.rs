//! Python exceptions for each engine error, subclassing the matching built-in so ordinary
//! `except ValueError` clauses keep working.

use lstm_core::LstmError;
use pyo3::exceptions::{PyRuntimeError, PyTypeError, PyValueError};
use pyo3::PyErr;

pyo3::create_exception!(
    pylstm._core,
    ShapeError,
    PyValueError,
    "An array has the wrong rank or a dimension that disagrees with another argument."
);
pyo3::create_exception!(
    pylstm._core,
    LstmValueError,
    PyValueError,
    "An attribute or argument has a value outside its domain."
);
pyo3::create_exception!(
    pylstm._core,
    TapeError,
    PyValueError,
    "A tape was used with a model or arrays it was not made for."
);
pyo3::create_exception!(pylstm._core, DTypeError, PyTypeError, "An array has an unsupported or mismatched dtype.");
pyo3::create_exception!(
    pylstm._core,
    EngineError,
    PyRuntimeError,
    "The engine failed internally (a bug: please report it)."
);

/// Maps an engine error to its Python exception.
pub fn to_py(e: LstmError) -> PyErr {
    match e {
        LstmError::Shape(m) => ShapeError::new_err(m),
        LstmError::Value(m) => LstmValueError::new_err(m),
        LstmError::Tape(m) => TapeError::new_err(m),
        LstmError::Internal(_) => EngineError::new_err(e.to_string()),
    }
}
