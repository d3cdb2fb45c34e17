//! Fallible allocation for every buffer whose size comes from the caller's dimensions.
//!
//! A zero-width input (`input_size = 0`) makes `X` an empty array whatever its sequence
//! length and batch, so nothing on the way in bounds those two: the outputs and tapes they
//! size can be far beyond any machine. Rust's infallible allocation aborts the process when
//! the allocator refuses; here every such size is multiplied with overflow checks, checked
//! against the machine's memory before the call starts, and allocated with `try_reserve` /
//! `alloc_zeroed`, so an impossible size is an [`LstmError::Memory`] instead.

use crate::error::{LstmError, Result};
use crate::real::Real;

/// `a * b * ...`, or a memory error naming `what` when the product overflows `usize`.
pub(crate) fn product(what: &str, dims: &[usize]) -> Result<usize> {
    if dims.contains(&0) {
        return Ok(0);
    }
    dims.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d)).ok_or_else(|| {
        LstmError::Memory(format!("{what}: {dims:?} elements do not fit in the address space of this machine"))
    })
}

/// A human-readable byte count.
pub(crate) fn human(bytes: usize) -> String {
    const UNITS: [&str; 6] = ["bytes", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes} bytes")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

fn refused(what: &str, n: usize, size: usize) -> LstmError {
    let bytes = n.saturating_mul(size);
    LstmError::Memory(format!("{what}: cannot allocate {n} values ({}): the allocator refused", human(bytes)))
}

/// `n` zeros, allocated with `alloc_zeroed` (pages the kernel zeroes on first touch, as `vec!`
/// does), or a memory error naming `what`.
pub(crate) fn zeroed<F: Real>(what: &str, n: usize) -> Result<Vec<F>> {
    if n == 0 {
        return Ok(Vec::new());
    }
    let layout = std::alloc::Layout::array::<F>(n).map_err(|_| refused(what, n, std::mem::size_of::<F>()))?;
    // SAFETY: the layout has a non-zero size (n > 0 and F is f32 or f64).
    let ptr = unsafe { std::alloc::alloc_zeroed(layout) } as *mut F;
    if ptr.is_null() {
        return Err(refused(what, n, std::mem::size_of::<F>()));
    }
    // SAFETY: `ptr` was allocated by the global allocator with the layout of `n` values of F;
    // all-zero bits are 0.0 for both f32 and f64, the only `Real` types.
    Ok(unsafe { Vec::from_raw_parts(ptr, n, n) })
}

/// An empty vector with room for `n` values, or a memory error naming `what`.
pub(crate) fn with_capacity<T>(what: &str, n: usize) -> Result<Vec<T>> {
    let mut v = Vec::new();
    v.try_reserve_exact(n).map_err(|_| refused(what, n, std::mem::size_of::<T>()))?;
    Ok(v)
}

/// `n` copies of `value`, or a memory error naming `what`.
pub(crate) fn filled<T: Clone>(what: &str, n: usize, value: T) -> Result<Vec<T>> {
    let mut v = with_capacity(what, n)?;
    v.resize(n, value);
    Ok(v)
}

/// A copy of `src`, or a memory error naming `what`.
pub(crate) fn copy_of<T: Copy>(what: &str, src: &[T]) -> Result<Vec<T>> {
    let mut v = with_capacity(what, src.len())?;
    v.extend_from_slice(src);
    Ok(v)
}

/// Physical memory plus swap, in bytes (where the platform says; read once): no call that
/// must hold more at once can finish.
pub fn machine_memory() -> Option<usize> {
    static TOTAL: std::sync::OnceLock<Option<usize>> = std::sync::OnceLock::new();
    *TOTAL.get_or_init(read_machine_memory)
}

#[cfg(target_os = "linux")]
fn read_machine_memory() -> Option<usize> {
    // SAFETY: a zeroed sysinfo is a valid out-parameter; the call only fills it.
    unsafe {
        let mut info: libc::sysinfo = std::mem::zeroed();
        if libc::sysinfo(&mut info) != 0 {
            return None;
        }
        let unit = (info.mem_unit as usize).max(1);
        (info.totalram as usize).checked_add(info.totalswap as usize)?.checked_mul(unit)
    }
}

#[cfg(not(target_os = "linux"))]
fn read_machine_memory() -> Option<usize> {
    None
}

/// Refuses a call that must write `bytes` at once (a lower bound, counting only buffers it
/// fills completely) when that exceeds the machine's memory and swap: such a call could
/// only end with the process killed by the out-of-memory handler. `what` names the argument.
pub(crate) fn check_fits(what: &str, bytes: usize) -> Result<()> {
    // Every machine this runs on holds a GiB: small calls (single steps) skip the lookup.
    if bytes <= 1 << 30 {
        return Ok(());
    }
    match machine_memory() {
        Some(total) if bytes > total => Err(LstmError::Memory(format!(
            "{what}: needs at least {} at once, more than this machine's {} of memory and swap",
            human(bytes),
            human(total)
        ))),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn impossible_sizes_are_errors_not_aborts() {
        let e = zeroed::<f32>("Y", 1 << 60).unwrap_err();
        assert!(matches!(e, LstmError::Memory(_)) && e.to_string().contains("Y"), "{e}");
        assert!(matches!(zeroed::<f64>("gates", 1 << 59), Err(LstmError::Memory(_))));
        assert!(matches!(filled("perm", 1usize << 58, 0usize), Err(LstmError::Memory(_))));
        assert!(matches!(product("X", &[1 << 40, 1 << 40]), Err(LstmError::Memory(_))));
        assert!(matches!(check_fits("X", usize::MAX), Err(LstmError::Memory(_))) || machine_memory().is_none());
    }

    #[test]
    fn possible_sizes_allocate_what_was_asked() {
        let z = zeroed::<f64>("z", 1000).unwrap();
        assert!(z.len() == 1000 && z.iter().all(|&v| v == 0.0));
        assert!(zeroed::<f32>("z", 0).unwrap().is_empty());
        assert_eq!(filled("f", 3, 7u8).unwrap(), vec![7, 7, 7]);
        assert_eq!(copy_of("c", &[1, 2]).unwrap(), vec![1, 2]);
        assert_eq!(product("p", &[1 << 62, 1 << 62, 0]).unwrap(), 0);
        check_fits("small", 1 << 20).unwrap();
        assert_eq!(human(3 << 30), "3.0 GiB");
    }
}
