//! Errors returned by the engine. Every variant carries a message that names the argument,
//! the expected and the actual value, so the binding can pass it to the user unchanged.

use std::fmt;

/// An error from the LSTM engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LstmError {
    /// An array has the wrong rank or a dimension that disagrees with another argument.
    Shape(String),
    /// An attribute or argument has a value outside its domain (unknown activation name,
    /// a sequence length of zero or past the sequence, a negative clip, ...).
    Value(String),
    /// A tape was used with arrays that do not match the forward pass that made it, or a
    /// second time by a backward pass after one that did not retain it.
    Tape(String),
    /// A size is impossible: its byte count overflows, exceeds the machine's memory, or the
    /// allocator refused it. Nothing was computed.
    Memory(String),
    /// A worker thread panicked; the computation was abandoned and no result is returned.
    Internal(String),
}

impl fmt::Display for LstmError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LstmError::Shape(m) | LstmError::Value(m) | LstmError::Tape(m) | LstmError::Memory(m) => f.write_str(m),
            LstmError::Internal(m) => write!(f, "internal error in the LSTM engine: {m}"),
        }
    }
}

impl std::error::Error for LstmError {}

/// Result alias used across the engine.
pub type Result<T> = std::result::Result<T, LstmError>;

/// Checks that `actual` has `expected` elements, naming the argument in the error.
pub(crate) fn check_len(name: &str, expected: usize, actual: usize) -> Result<()> {
    if expected == actual {
        Ok(())
    } else {
        Err(LstmError::Shape(format!("{name}: expected {expected} elements, got {actual}")))
    }
}
