//! Per-thread reuse of the big per-call buffers: the packed weight panels.
//!
//! A fresh multi-megabyte allocation is handed out by the kernel a page at a time on first
//! touch, each page zeroed first: for hidden 2048 that page-fault work was 12% of a forward
//! call. Each thread that runs the engine therefore keeps the panels it used last (a few, up
//! to [`KEPT_BYTES`] each, [`KEPT_TOTAL_BYTES`] for the process) and hands them out again to
//! its next call. A thread's buffers are freed when it exits.

use std::any::Any;
use std::cell::RefCell;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The largest buffer a thread keeps between calls.
const KEPT_BYTES: usize = 48 << 20;
/// Buffers a thread keeps.
const KEPT: usize = 6;
/// Bytes all threads together keep at most (threads that call the engine inline keep buffers
/// too, so the per-thread limits alone would not bound the process).
const KEPT_TOTAL_BYTES: usize = 256 << 20;

/// Bytes kept by every thread together.
static KEPT_TOTAL: AtomicUsize = AtomicUsize::new(0);

fn bytes_of(b: &dyn Any) -> usize {
    b.downcast_ref::<Vec<f32>>()
        .map(|v| v.capacity() * 4)
        .or_else(|| b.downcast_ref::<Vec<f64>>().map(|v| v.capacity() * 8))
        .or_else(|| b.downcast_ref::<Vec<u16>>().map(|v| v.capacity() * 2))
        .unwrap_or(0)
}

/// One thread's kept buffers; they leave the process-wide count when the thread exits.
struct Kept(Vec<Box<dyn Any>>);

impl Drop for Kept {
    fn drop(&mut self) {
        for b in &self.0 {
            KEPT_TOTAL.fetch_sub(bytes_of(b.as_ref()), Ordering::Relaxed);
        }
    }
}

thread_local! {
    static KEPT_BUFFERS: RefCell<Kept> = const { RefCell::new(Kept(Vec::new())) };
}

/// An empty vector with room for `n` values: one this thread kept ([`recycle`]) if one is big
/// enough (the smallest such), else a new one.
pub(crate) fn take<F: 'static>(n: usize) -> Vec<F> {
    let kept = KEPT_BUFFERS.with(|k| {
        let k = &mut k.borrow_mut().0;
        let best = k
            .iter()
            .enumerate()
            .filter_map(|(i, b)| b.downcast_ref::<Vec<F>>().filter(|v| v.capacity() >= n).map(|v| (v.capacity(), i)))
            .min()
            .map(|(_, i)| i);
        best.map(|i| {
            let b = k.swap_remove(i);
            KEPT_TOTAL.fetch_sub(bytes_of(b.as_ref()), Ordering::Relaxed);
            b
        })
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
    let bytes = v.capacity() * std::mem::size_of::<F>();
    if bytes > KEPT_BYTES || bytes == 0 {
        return;
    }
    if KEPT_TOTAL.fetch_add(bytes, Ordering::Relaxed) + bytes > KEPT_TOTAL_BYTES {
        KEPT_TOTAL.fetch_sub(bytes, Ordering::Relaxed);
        return;
    }
    KEPT_BUFFERS.with(|k| {
        let k = &mut k.borrow_mut().0;
        k.push(Box::new(v));
        if k.len() > KEPT {
            // Keep the biggest: they serve every smaller request too.
            let smallest = (0..k.len()).min_by_key(|&i| bytes_of(k[i].as_ref())).unwrap_or(0);
            let dropped = k.swap_remove(smallest);
            KEPT_TOTAL.fetch_sub(bytes_of(dropped.as_ref()), Ordering::Relaxed);
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
