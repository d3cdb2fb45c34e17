//! This machine's float32 arithmetic peak, measured: every pool thread runs a loop of
//! independent fused multiply-adds on registers only, all at once, with AVX-512 or AVX2 where
//! the kernel path is one of those (elsewhere a scalar loop, which understates the peak).
//! Nothing that multiplies matrices (an LSTM step, a GEMM) can go faster, so benchmarks report
//! their speed against it next to the GEMM peak.

use std::time::{Duration, Instant};

use crate::error::Result;
use crate::kernel::{active_kernel, KernelPath};
use crate::threads::{broadcast, with_pool};

/// Independent accumulator chains: enough to cover the FMA latency times its throughput.
const CHAINS: usize = 12;
/// Loop iterations between clock reads.
const BATCH: usize = 1 << 16;

/// Float32 GFLOP/s of all the engine's threads running FMAs from registers for about
/// `duration` (counted as two operations per multiply-add and lane).
pub fn fma_peak_gflops(duration: Duration) -> Result<f64> {
    let path = active_kernel();
    with_pool(usize::MAX, |n| {
        let flops: Vec<std::sync::atomic::AtomicU64> = (0..n).map(|_| Default::default()).collect();
        let start = Instant::now();
        broadcast(n, |m| {
            let mut done = 0u64;
            let mut sink = 0f32;
            while start.elapsed() < duration {
                let (v, per_iter) = fma_batch(path);
                sink += v;
                done += (BATCH * per_iter) as u64;
            }
            std::hint::black_box(sink);
            flops[m].store(done, std::sync::atomic::Ordering::Relaxed);
        });
        let secs = start.elapsed().as_secs_f64();
        flops.iter().map(|f| f.load(std::sync::atomic::Ordering::Relaxed)).sum::<u64>() as f64 / secs / 1e9
    })
}

/// Runs [`BATCH`] iterations on `path`; returns a value depending on every result (so the
/// loop is not optimised away) and the floating-point operations per iteration.
fn fma_batch(path: KernelPath) -> (f32, usize) {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: `active_kernel` only reports paths this CPU supports.
        match path {
            // SAFETY: the path is supported (above).
            KernelPath::Avx512 => return (unsafe { x86::avx512(BATCH) }, CHAINS * 16 * 2),
            // SAFETY: the path is supported (above).
            KernelPath::Avx2 => return (unsafe { x86::avx2(BATCH) }, CHAINS * 8 * 2),
            _ => {}
        }
    }
    let _ = path;
    let mut acc = [0f32; CHAINS];
    let (a, b) = std::hint::black_box((1.000_001f32, 1e-7f32));
    for _ in 0..BATCH {
        for v in acc.iter_mut() {
            *v = v.mul_add(a, b);
        }
    }
    (acc.iter().sum(), CHAINS * 2)
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::CHAINS;
    use std::arch::x86_64::*;

    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn avx512(iters: usize) -> f32 {
        let (a, b) = (_mm512_set1_ps(std::hint::black_box(1.000_001)), _mm512_set1_ps(1e-7));
        let mut acc = [_mm512_setzero_ps(); CHAINS];
        for _ in 0..iters {
            for v in acc.iter_mut() {
                *v = _mm512_fmadd_ps(*v, a, b);
            }
        }
        _mm512_reduce_add_ps(acc.iter().fold(_mm512_setzero_ps(), |s, &v| _mm512_add_ps(s, v)))
    }

    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn avx2(iters: usize) -> f32 {
        // SAFETY: the caller upholds this function's contract: the CPU has the target features it is compiled for (the intrinsics have no other precondition).
        unsafe {
            let (a, b) = (_mm256_set1_ps(std::hint::black_box(1.000_001)), _mm256_set1_ps(1e-7));
            let mut acc = [_mm256_setzero_ps(); CHAINS];
            for _ in 0..iters {
                for v in acc.iter_mut() {
                    *v = _mm256_fmadd_ps(*v, a, b);
                }
            }
            let mut out = [0f32; 8];
            _mm256_storeu_ps(out.as_mut_ptr(), acc.iter().fold(_mm256_setzero_ps(), |s, &v| _mm256_add_ps(s, v)));
            out.iter().sum()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peak_is_positive_and_finite() {
        let g = fma_peak_gflops(Duration::from_millis(20)).unwrap();
        assert!(g.is_finite() && g > 0.1, "{g}");
    }
}
