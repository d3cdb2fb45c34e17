//! The recurrent product of one time step for small batches: `out[r, c] (+)= Σ_k lhs[r, k] ·
//! W[k, c]` over a thread's own columns, with `W` packed once per call into column tiles that
//! the thread streams from its own cache every step ("persistent" weights). A general GEMM
//! re-packs its right-hand side on every call, which at batch 1-8 costs as much as the product.
//! The micro-kernel is generic code compiled per instruction set, like the point-wise pass.

use crate::kernel::KernelPath;
use crate::real::Real;

/// Bytes per column tile (two AVX-512 registers, four AVX2 registers).
const TILE_BYTES: usize = 128;
/// Rows handled together: each weight load is reused this many times.
const ROW_BLOCK: usize = 8;

/// A run of output columns and where its tiles start in the panel.
#[derive(Debug, Clone, Copy)]
struct Segment {
    out_col: usize,
    width: usize,
    offset: usize,
}

/// Weights for one thread's output columns, packed as `[segment][tile][k][tile_width]`.
#[derive(Debug, Clone, Default)]
pub(crate) struct Panel<F> {
    data: Vec<F>,
    k: usize,
    segments: Vec<Segment>,
}

fn tile_width<F>() -> usize {
    TILE_BYTES / std::mem::size_of::<F>()
}

impl<F: Real> Panel<F> {
    /// Packs `segments` of `(out_col, width)` columns with `k` rows each; `src(s, kk, j)` is
    /// the weight at row `kk` of column `j` of segment `s`. Columns past a segment's width are
    /// zero-padded to a whole tile.
    pub(crate) fn pack(k: usize, segs: &[(usize, usize)], src: impl Fn(usize, usize, usize) -> F) -> Self {
        let tw = tile_width::<F>();
        let mut segments = Vec::with_capacity(segs.len());
        let mut total = 0;
        for &(out_col, width) in segs {
            segments.push(Segment { out_col, width, offset: total });
            total += width.div_ceil(tw) * k * tw;
        }
        let mut data = vec![F::ZERO; total];
        for (s, seg) in segments.iter().enumerate() {
            for tile in 0..seg.width.div_ceil(tw) {
                let base = seg.offset + tile * k * tw;
                let cols = (seg.width - tile * tw).min(tw);
                for kk in 0..k {
                    let row = &mut data[base + kk * tw..][..tw];
                    for (j, v) in row.iter_mut().take(cols).enumerate() {
                        *v = src(s, kk, tile * tw + j);
                    }
                }
            }
        }
        Panel { data, k, segments }
    }
}

/// Multiplies `rows` rows of `lhs` (row stride `lhs_rs`, `panel.k` columns) by the panel into
/// `out` (row stride `out_rs`), adding to what `out` holds when `accumulate`.
///
/// # Safety
/// `lhs` and `out` must be valid for `rows` rows at their strides, covering `panel.k` and every
/// segment's output columns; `path` must be supported by this CPU.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn multiply<F: Real>(
    path: KernelPath,
    panel: &Panel<F>,
    rows: usize,
    lhs: *const F,
    lhs_rs: usize,
    out: *mut F,
    out_rs: usize,
    accumulate: bool,
) {
    let tw = tile_width::<F>();
    let k = panel.k;
    let mut r0 = 0;
    while r0 < rows {
        let nr = (rows - r0).min(ROW_BLOCK);
        let lhs_rows: [*const F; ROW_BLOCK] = std::array::from_fn(|r| lhs.add((r0 + r.min(nr - 1)) * lhs_rs));
        for seg in &panel.segments {
            for tile in 0..seg.width.div_ceil(tw) {
                let cols = (seg.width - tile * tw).min(tw);
                let w = panel.data.as_ptr().add(seg.offset + tile * k * tw);
                // The tile's accumulators go through a small buffer so partial tiles need no
                // masked loads.
                let mut acc = [[F::ZERO; 32]; ROW_BLOCK];
                for (r, row) in acc.iter_mut().enumerate().take(nr) {
                    if accumulate {
                        let o = out.add((r0 + r) * out_rs + seg.out_col + tile * tw);
                        std::ptr::copy_nonoverlapping(o, row.as_mut_ptr(), cols);
                    }
                }
                tile_product(path, nr, k, &lhs_rows, w, &mut acc);
                for (r, row) in acc.iter().enumerate().take(nr) {
                    let o = out.add((r0 + r) * out_rs + seg.out_col + tile * tw);
                    std::ptr::copy_nonoverlapping(row.as_ptr(), o, cols);
                }
            }
        }
        r0 += nr;
    }
}

/// `acc[r][..tw] += Σ_k lhs[r][k] · w[k][..tw]` for `nr` rows, on the fastest path.
#[inline]
unsafe fn tile_product<F: Real>(
    path: KernelPath,
    nr: usize,
    k: usize,
    lhs: &[*const F; ROW_BLOCK],
    w: *const F,
    acc: &mut [[F; 32]; ROW_BLOCK],
) {
    #[cfg(target_arch = "x86_64")]
    {
        let simd = match path {
            KernelPath::Avx512 => Some(true),
            KernelPath::Avx2 => Some(false),
            _ => None,
        };
        if let Some(wide) = simd {
            // SAFETY: `Real` is sealed to f32 and f64, so the casts reinterpret the same type.
            if F::IS_F32 {
                let (l, w, a) = (
                    lhs.map(|p| p as *const f32),
                    w as *const f32,
                    &mut *(acc as *mut _ as *mut [[f32; 32]; ROW_BLOCK]),
                );
                if wide {
                    x86::f32_avx512(nr, k, &l, w, a)
                } else {
                    x86::f32_avx2(nr, k, &l, w, a)
                }
            } else {
                let (l, w, a) = (
                    lhs.map(|p| p as *const f64),
                    w as *const f64,
                    &mut *(acc as *mut _ as *mut [[f64; 32]; ROW_BLOCK]),
                );
                if wide {
                    x86::f64_avx512(nr, k, &l, w, a)
                } else {
                    x86::f64_avx2(nr, k, &l, w, a)
                }
            }
            return;
        }
    }
    let _ = path;
    let tw = tile_width::<F>();
    for kk in 0..k {
        for r in 0..nr {
            let hv = *lhs[r].add(kk);
            for j in 0..tw {
                acc[r][j] += hv * *w.add(kk * tw + j);
            }
        }
    }
}

/// Register-blocked tile kernels: `NV` vectors per row (a 128-byte tile), `R` rows, and the
/// k loop unrolled `U` times with separate accumulators so FMA latency is hidden even at batch 1.
#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    macro_rules! tile_kernels {
        ($entry:ident, $feat:literal, $t:ty, $v:ty, $lanes:literal, $nv:literal, $maxr:literal,
         $zero:ident, $loadu:ident, $storeu:ident, $set1:ident, $fmadd:ident, $add:ident) => {
            #[target_feature(enable = $feat)]
            unsafe fn block<const R: usize, const U: usize>(
                k: usize,
                lhs: &[*const $t],
                w: *const $t,
                acc_io: &mut [[$t; 32]],
            ) {
                let mut acc: [[[$v; $nv]; R]; U] = [[[$zero(); $nv]; R]; U];
                for r in 0..R {
                    for q in 0..$nv {
                        acc[0][r][q] = $loadu(acc_io[r].as_ptr().add(q * $lanes));
                    }
                }
                let step = $lanes * $nv;
                let mut kk = 0;
                while kk + U <= k {
                    for u in 0..U {
                        let wk = w.add((kk + u) * step);
                        let wv: [$v; $nv] = std::array::from_fn(|q| $loadu(wk.add(q * $lanes)));
                        for r in 0..R {
                            let hv = $set1(*lhs[r].add(kk + u));
                            for q in 0..$nv {
                                acc[u][r][q] = $fmadd(hv, wv[q], acc[u][r][q]);
                            }
                        }
                    }
                    kk += U;
                }
                while kk < k {
                    let wk = w.add(kk * step);
                    let wv: [$v; $nv] = std::array::from_fn(|q| $loadu(wk.add(q * $lanes)));
                    for r in 0..R {
                        let hv = $set1(*lhs[r].add(kk));
                        for q in 0..$nv {
                            acc[0][r][q] = $fmadd(hv, wv[q], acc[0][r][q]);
                        }
                    }
                    kk += 1;
                }
                for u in 1..U {
                    for r in 0..R {
                        for q in 0..$nv {
                            acc[0][r][q] = $add(acc[0][r][q], acc[u][r][q]);
                        }
                    }
                }
                for r in 0..R {
                    for q in 0..$nv {
                        $storeu(acc_io[r].as_mut_ptr().add(q * $lanes), acc[0][r][q]);
                    }
                }
            }

            /// Dispatches on the row count: blocks of at most `$maxr` rows (what the register
            /// file holds), the k loop unrolled so about eight accumulators stay live.
            #[target_feature(enable = $feat)]
            pub(in crate::recurrent) unsafe fn $entry(
                nr: usize,
                k: usize,
                lhs: &[*const $t; 8],
                w: *const $t,
                acc: &mut [[$t; 32]; 8],
            ) {
                let mut r0 = 0;
                while r0 < nr {
                    let n = (nr - r0).min($maxr);
                    let (l, a) = (&lhs[r0..], &mut acc[r0..]);
                    match n {
                        1 => block::<1, { 8 / $nv }>(k, l, w, a),
                        2 => block::<2, { 8 / (2 * $nv) + (2 * $nv > 8) as usize }>(k, l, w, a),
                        3 => block::<3, 1>(k, l, w, a),
                        4 => block::<4, 1>(k, l, w, a),
                        5 => block::<5, 1>(k, l, w, a),
                        6 => block::<6, 1>(k, l, w, a),
                        7 => block::<7, 1>(k, l, w, a),
                        _ => block::<8, 1>(k, l, w, a),
                    }
                    r0 += n;
                }
            }
        };
    }

    mod avx512_f32 {
        use super::*;
        tile_kernels!(
            run,
            "avx512f",
            f32,
            __m512,
            16,
            2,
            8,
            _mm512_setzero_ps,
            _mm512_loadu_ps,
            _mm512_storeu_ps,
            _mm512_set1_ps,
            _mm512_fmadd_ps,
            _mm512_add_ps
        );
    }
    mod avx512_f64 {
        use super::*;
        tile_kernels!(
            run,
            "avx512f",
            f64,
            __m512d,
            8,
            2,
            8,
            _mm512_setzero_pd,
            _mm512_loadu_pd,
            _mm512_storeu_pd,
            _mm512_set1_pd,
            _mm512_fmadd_pd,
            _mm512_add_pd
        );
    }
    mod avx2_f32 {
        use super::*;
        tile_kernels!(
            run,
            "avx2,fma",
            f32,
            __m256,
            8,
            4,
            2,
            _mm256_setzero_ps,
            _mm256_loadu_ps,
            _mm256_storeu_ps,
            _mm256_set1_ps,
            _mm256_fmadd_ps,
            _mm256_add_ps
        );
    }
    mod avx2_f64 {
        use super::*;
        tile_kernels!(
            run,
            "avx2,fma",
            f64,
            __m256d,
            4,
            4,
            2,
            _mm256_setzero_pd,
            _mm256_loadu_pd,
            _mm256_storeu_pd,
            _mm256_set1_pd,
            _mm256_fmadd_pd,
            _mm256_add_pd
        );
    }

    pub(super) use avx2_f32::run as f32_avx2;
    pub(super) use avx2_f64::run as f64_avx2;
    pub(super) use avx512_f32::run as f32_avx512;
    pub(super) use avx512_f64::run as f64_avx512;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check<F: Real>(tol: f64) {
        let (k, rows) = (37, 7);
        let cols_total = 90;
        let w: Vec<F> = (0..k * cols_total).map(|i| F::from_f64(((i * 7919) % 113) as f64 / 113.0 - 0.5)).collect();
        let lhs: Vec<F> = (0..rows * k).map(|i| F::from_f64(((i * 104729) % 97) as f64 / 97.0 - 0.5)).collect();
        // Two segments: columns 0..40 into out cols 3..43, columns 40..90 into out cols 50..100.
        let segs = [(3usize, 40usize), (50, 50)];
        let panel = Panel::pack(k, &segs, |s, kk, j| {
            let c = if s == 0 { j } else { 40 + j };
            w[kk * cols_total + c]
        });
        for path in [KernelPath::Scalar, KernelPath::Avx2, KernelPath::Avx512, KernelPath::Neon] {
            if !path.supported() {
                continue;
            }
            for accumulate in [false, true] {
                let out_rs = 104;
                let mut out = vec![F::ONE; rows * out_rs];
                unsafe { multiply(path, &panel, rows, lhs.as_ptr(), k, out.as_mut_ptr(), out_rs, accumulate) };
                for r in 0..rows {
                    for c in 0..cols_total {
                        let oc = if c < 40 { 3 + c } else { 10 + c };
                        let mut want = if accumulate { 1.0 } else { 0.0 };
                        for kk in 0..k {
                            want += lhs[r * k + kk].to_f64() * w[kk * cols_total + c].to_f64();
                        }
                        let got = out[r * out_rs + oc].to_f64();
                        assert!((got - want).abs() < tol, "{path:?} r{r} c{c}: {got} vs {want}");
                    }
                    // Columns outside the segments are untouched.
                    assert_eq!(out[r * out_rs].to_f64(), 1.0);
                    assert_eq!(out[r * out_rs + 45].to_f64(), 1.0);
                }
            }
        }
    }

    #[test]
    fn packed_product_matches_naive_f32() {
        check::<f32>(1e-4);
    }

    #[test]
    fn packed_product_matches_naive_f64() {
        check::<f64>(1e-12);
    }
}
