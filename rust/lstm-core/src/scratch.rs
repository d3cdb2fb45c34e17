//! Per-thread reuse of the big per-call buffers: the packed weight panels.
//!
//! A fresh multi-megabyte allocation is handed out by the kernel a page at a time on first
//! touch, each page zeroed first: for hidden 2048 that page-fault work was 12% of a forward
//! call. Each engine thread therefore keeps the panels it used last (a few, up to
//! [`KEPT_BYTES`] each) and hands them out again to its next call.

use std::any::Any;
use std::cell::RefCell;

/// The largest buffer a thread keeps between calls.
const KEPT_BYTES: usize = 48 << 20;
/// Buffers a thread keeps.
const KEPT: usize = 3;

thread_local! {
    static KEPT_BUFFERS: RefCell<Vec<Box<dyn Any>>> = const { RefCell::new(Vec::new()) };
}

/// An empty vector with room for `n` values: one this thread kept ([`recycle`]) if one is big
/// enough (the smallest such), else a new one.
pub(crate) fn take<F: 'static>(n: usize) -> Vec<F> {
    let kept = KEPT_BUFFERS.with(|k| {
        let mut k = k.borrow_mut();
        let best = k
            .iter()
            .enumerate()
            .filter_map(|(i, b)| b.downcast_ref::<Vec<F>>().filter(|v| v.capacity() >= n).map(|v| (v.capacity(), i)))
            .min()
            .map(|(_, i)| i);
        best.map(|i| k.swap_remove(i))
    });
    match kept.and_then(|b| b.downcast::<Vec<F>>().ok()) {
        Some(mut v) => {
            v.clear();
            *v
        }
        None => Vec::with_capacity(n),
    }
}

/// Gives `v` back to this thread for a later [`take`] (dropping the smallest kept buffer when
/// there are already [`KEPT`]); buffers over [`KEPT_BYTES`] are freed.
pub(crate) fn recycle<F: 'static>(v: Vec<F>) {
    if v.capacity() * std::mem::size_of::<F>() > KEPT_BYTES || v.capacity() == 0 {
        return;
    }
    KEPT_BUFFERS.with(|k| {
        let mut k = k.borrow_mut();
        k.push(Box::new(v));
        if k.len() > KEPT {
            // Keep the biggest: they serve every smaller request too.
            let size = |b: &Box<dyn Any>| {
                b.downcast_ref::<Vec<f32>>()
                    .map(|v| v.capacity() * 4)
                    .or_else(|| b.downcast_ref::<Vec<f64>>().map(|v| v.capacity() * 8))
                    .unwrap_or(0)
            };
            let smallest = (0..k.len()).min_by_key(|&i| size(&k[i])).unwrap_or(0);
            k.swap_remove(smallest);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_come_back_empty_and_big_enough() {
        let mut v: Vec<f32> = take(1000);
        v.extend(std::iter::repeat_n(1.0, 1000));
        let ptr = v.as_ptr();
        recycle(v);
        let again: Vec<f32> = take(500);
        assert!(again.is_empty() && again.capacity() >= 1000);
        assert_eq!(again.as_ptr(), ptr, "the kept buffer is reused");
        // Another element type never gets it.
        let other: Vec<f64> = take(10);
        assert!(other.capacity() >= 10);
        recycle(again);
        let bigger: Vec<f32> = take(5000);
        assert!(bigger.capacity() >= 5000);
    }
}
