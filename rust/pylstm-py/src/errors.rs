//! The exceptions the engine raises: one root, `PylstmError`, and one class per engine error,
//! each also subclassing the matching built-in so ordinary `except ValueError` clauses keep
//! working. `create_exception!` takes a single base, so the root is made by it and the
//! two-base classes by calling `type(name, (PylstmError, builtin), ...)` once per interpreter;
//! `pylstm._core.ShapeError` is then the very class the engine raises.
//!
//! Panics: any panic that still reaches the binding is caught and raised as `EngineError`,
//! and the panic hook stays silent for panics inside engine calls, so nothing is printed.

use std::cell::Cell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Mutex, Once};

use lstm_core::LstmError;
use pyo3::exceptions::{PyException, PyMemoryError, PyRuntimeError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyTuple, PyType};
use pyo3::PyTypeInfo;

pyo3::create_exception!(
    pylstm._core,
    PylstmError,
    PyException,
    "The root of every exception pylstm raises on purpose."
);

/// One of the engine's two-base exception classes: name, built-in base and docstring.
struct ClassSpec {
    name: &'static str,
    doc: &'static str,
}

/// Declares a class made at first use and a `new_err` constructor for it.
macro_rules! engine_exception {
    ($name:ident, $builtin:ty, $doc:literal) => {
        #[doc = $doc]
        pub struct $name;

        impl $name {
            const SPEC: ClassSpec = ClassSpec { name: stringify!($name), doc: $doc };

            /// The class (created on first use).
            pub fn type_object(py: Python<'_>) -> PyResult<Bound<'_, PyType>> {
                static CELL: PyOnceLock<Py<PyType>> = PyOnceLock::new();
                let cls = CELL.get_or_try_init(py, || make_class(py, &Self::SPEC, <$builtin>::type_object(py)))?;
                Ok(cls.bind(py).clone())
            }

            /// An error of this class with message `msg`.
            pub fn new_err(msg: impl Into<String>) -> PyErr {
                let msg = msg.into();
                Python::attach(|py| match Self::type_object(py) {
                    Ok(cls) => PyErr::from_type(cls, msg),
                    Err(e) => e,
                })
            }
        }
    };
}

engine_exception!(
    ShapeError,
    PyValueError,
    "An array has the wrong rank or a dimension that disagrees with another argument."
);
engine_exception!(LstmValueError, PyValueError, "An attribute or argument has a value outside its domain.");
engine_exception!(
    TapeError,
    PyValueError,
    "A tape was used with a model or arrays it was not made for, or after a backward pass used it up."
);
engine_exception!(
    DTypeError,
    PyTypeError,
    "An array has an unsupported or mismatched dtype, or an argument has the wrong type."
);
engine_exception!(EngineError, PyRuntimeError, "The engine failed internally (a bug: please report it).");
engine_exception!(
    PylstmMemoryError,
    PyMemoryError,
    "A size is impossible: it overflows, exceeds the machine's memory, or the allocator refused it."
);

/// `type(name, (PylstmError, builtin), {"__doc__": doc, "__module__": "pylstm._core"})`.
fn make_class<'py>(py: Python<'py>, spec: &ClassSpec, builtin: Bound<'py, PyType>) -> PyResult<Py<PyType>> {
    let bases = PyTuple::new(py, [PylstmError::type_object(py).into_any(), builtin.into_any()])?;
    let ns = PyDict::new(py);
    ns.set_item("__doc__", spec.doc)?;
    ns.set_item("__module__", "pylstm._core")?;
    let cls = PyType::type_object(py).call1((spec.name, bases, ns))?;
    Ok(cls.cast_into::<PyType>()?.unbind())
}

/// Adds the root and every engine exception class to the module.
pub fn add_classes(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("PylstmError", PylstmError::type_object(py))?;
    m.add("ShapeError", ShapeError::type_object(py)?)?;
    m.add("LstmValueError", LstmValueError::type_object(py)?)?;
    m.add("TapeError", TapeError::type_object(py)?)?;
    m.add("DTypeError", DTypeError::type_object(py)?)?;
    m.add("EngineError", EngineError::type_object(py)?)?;
    m.add("PylstmMemoryError", PylstmMemoryError::type_object(py)?)?;
    Ok(())
}

/// Maps an engine error to its Python exception.
pub fn to_py(e: LstmError) -> PyErr {
    match e {
        LstmError::Shape(m) => ShapeError::new_err(m),
        LstmError::Value(m) => LstmValueError::new_err(m),
        LstmError::Tape(m) => TapeError::new_err(m),
        LstmError::Memory(m) => PylstmMemoryError::new_err(m),
        LstmError::Internal(_) => EngineError::new_err(with_location(e.to_string())),
    }
}

thread_local! {
    /// Engine calls in progress on this thread (the hook is silent while it is non-zero).
    static IN_ENGINE_CALL: Cell<usize> = const { Cell::new(0) };
}

/// Where the last silenced panic happened, for the `EngineError` message.
static LAST_PANIC: Mutex<Option<String>> = Mutex::new(None);

fn with_location(msg: String) -> String {
    match LAST_PANIC.lock().map(|mut l| l.take()) {
        Ok(Some(at)) => format!("{msg} ({at}; a bug: please report it)"),
        _ => format!("{msg} (a bug: please report it)"),
    }
}

/// Whether a panic on the current thread belongs to an engine call: the calling thread inside
/// [`engine_call`], or one of the engine's pool threads (named `pylstm-N`).
fn in_engine() -> bool {
    IN_ENGINE_CALL.with(Cell::get) > 0 || std::thread::current().name().is_some_and(|n| n.starts_with("pylstm-"))
}

/// Installs, once, a panic hook that records panics inside engine calls instead of printing
/// them (they come back as `EngineError`), and defers to the previous hook for all others.
pub fn install_panic_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if in_engine() {
                if let Ok(mut last) = LAST_PANIC.lock() {
                    *last = info.location().map(|l| format!("panicked at {}:{}", l.file(), l.line()));
                }
            } else {
                previous(info);
            }
        }));
    });
}

/// Runs the body of an engine entry point: a panic inside becomes `EngineError` (silently, see
/// [`install_panic_hook`]) instead of PyO3's `PanicException`.
pub fn engine_call<T>(f: impl FnOnce() -> PyResult<T>) -> PyResult<T> {
    IN_ENGINE_CALL.with(|c| c.set(c.get() + 1));
    let out = catch_unwind(AssertUnwindSafe(f));
    IN_ENGINE_CALL.with(|c| c.set(c.get() - 1));
    out.unwrap_or_else(|payload| {
        let msg = if let Some(s) = payload.downcast_ref::<&str>() {
            (*s).to_string()
        } else if let Some(s) = payload.downcast_ref::<String>() {
            s.clone()
        } else {
            "a panic".to_string()
        };
        Err(EngineError::new_err(with_location(format!("internal error in the LSTM engine: {msg}"))))
    })
}
