//! The small matrix products of one time step, reading the weights where they lie (no
//! packing, so nothing to re-pack per call or to go stale when weights change in place):
//!
//! - [`dot_rows`]: `out[r, c] (+)= Σ_k lhs[r, k] · W[row(c), k]` — rows of a row-major weight
//!   matrix against a few input rows (the forward recurrent and small input projections);
//! - [`axpy_cols`]: `out[r, c] (+)= Σ_k lhs[r, k] · W[k, col(c)]` — a column slice of a
//!   row-major matrix (the backward recurrent product).
//!
//! Both are register-blocked with explicit AVX-512 / AVX2 intrinsics for f32 and f64, chosen
//! at run time; the scalar path is the reference they are tested against.

use crate::kernel::KernelPath;
use crate::real::Real;

/// Bytes per column tile of [`axpy_cols`] (two AVX-512 registers, four AVX2 registers).
const TILE_BYTES: usize = 128;
/// Input rows handled together: each weight load is reused this many times.
const ROW_BLOCK: usize = 8;

fn tile_width<F>() -> usize {
    TILE_BYTES / std::mem::size_of::<F>()
}

/// A run of output columns: `width` columns starting at `out_col`, computed from weight rows
/// (for [`dot_rows`]) or weight columns (for [`axpy_cols`]) starting at `w_start`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Segment {
    /// First output column.
    pub out_col: usize,
    /// Number of columns.
    pub width: usize,
    /// First weight row (dot form) or column (axpy form).
    pub w_start: usize,
}

/// `out[r, s.out_col + j] (+)= Σ_k lhs[r, k] · w[(s.w_start + j) * w_rs + k]` for every
/// segment `s`, `r < rows`, `k < depth`.
///
/// # Safety
/// Pointers and strides must describe valid matrices covering every index above; `path` must be
/// supported by this CPU.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn dot_rows<F: Real>(
    path: KernelPath,
    rows: usize,
    depth: usize,
    lhs: *const F,
    lhs_rs: usize,
    w: *const F,
    w_rs: usize,
    segments: &[Segment],
    out: *mut F,
    out_rs: usize,
    accumulate: bool,
) {
    // Weight rows outermost: each group of eight is read from memory once and stays in L1
    // while every input row block passes over it.
    for seg in segments {
        let mut j = 0;
        while j < seg.width {
            let nj = (seg.width - j).min(8);
            let wr: [*const F; 8] = std::array::from_fn(|q| w.add((seg.w_start + j + q.min(nj - 1)) * w_rs));
            let mut r0 = 0;
            while r0 < rows {
                let nr = (rows - r0).min(ROW_BLOCK);
                let l: [*const F; ROW_BLOCK] = std::array::from_fn(|r| lhs.add((r0 + r.min(nr - 1)) * lhs_rs));
                let mut sums = [[F::ZERO; 8]; ROW_BLOCK];
                dot_block(path, nr, nj, depth, &l, &wr, &mut sums);
                for (r, row) in sums.iter().enumerate().take(nr) {
                    let o = out.add((r0 + r) * out_rs + seg.out_col + j);
                    for (q, &v) in row.iter().enumerate().take(nj) {
                        *o.add(q) = if accumulate { *o.add(q) + v } else { v };
                    }
                }
                r0 += nr;
            }
            j += nj;
        }
    }
}

/// `sums[r][q] = Σ_k lhs[r][k] · w[q][k]` for `nr` input rows and `nj` weight rows.
#[inline]
unsafe fn dot_block<F: Real>(
    path: KernelPath,
    nr: usize,
    nj: usize,
    depth: usize,
    lhs: &[*const F; ROW_BLOCK],
    w: &[*const F; 8],
    sums: &mut [[F; 8]; ROW_BLOCK],
) {
    #[cfg(target_arch = "x86_64")]
    {
        let wide = match path {
            KernelPath::Avx512 => Some(true),
            KernelPath::Avx2 => Some(false),
            _ => None,
        };
        if let Some(wide) = wide {
            // SAFETY: `Real` is sealed to f32 and f64, so the casts reinterpret the same type.
            if F::IS_F32 {
                let (l, wv, s) = (
                    lhs.map(|p| p as *const f32),
                    w.map(|p| p as *const f32),
                    &mut *(sums as *mut _ as *mut [[f32; 8]; ROW_BLOCK]),
                );
                if wide {
                    x86::dot_f32_avx512(nr, nj, depth, &l, &wv, s)
                } else {
                    x86::dot_f32_avx2(nr, nj, depth, &l, &wv, s)
                }
            } else {
                let (l, wv, s) = (
                    lhs.map(|p| p as *const f64),
                    w.map(|p| p as *const f64),
                    &mut *(sums as *mut _ as *mut [[f64; 8]; ROW_BLOCK]),
                );
                if wide {
                    x86::dot_f64_avx512(nr, nj, depth, &l, &wv, s)
                } else {
                    x86::dot_f64_avx2(nr, nj, depth, &l, &wv, s)
                }
            }
            return;
        }
    }
    let _ = path;
    for r in 0..nr {
        for q in 0..nj {
            let mut acc = F::ZERO;
            for kk in 0..depth {
                acc += *lhs[r].add(kk) * *w[q].add(kk);
            }
            sums[r][q] = acc;
        }
    }
}

/// `out[r, s.out_col + j] (+)= Σ_k lhs[r, k] · w[k * w_rs + s.w_start + j]` for every segment
/// `s`, `r < rows`, `k < depth`.
///
/// # Safety
/// As for [`dot_rows`].
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn axpy_cols<F: Real>(
    path: KernelPath,
    rows: usize,
    depth: usize,
    lhs: *const F,
    lhs_rs: usize,
    w: *const F,
    w_rs: usize,
    segments: &[Segment],
    out: *mut F,
    out_rs: usize,
    accumulate: bool,
) {
    let tw = tile_width::<F>();
    let mut r0 = 0;
    while r0 < rows {
        let nr = (rows - r0).min(ROW_BLOCK);
        let lhs_rows: [*const F; ROW_BLOCK] = std::array::from_fn(|r| lhs.add((r0 + r.min(nr - 1)) * lhs_rs));
        for seg in segments {
            for tile in 0..seg.width.div_ceil(tw) {
                let cols = (seg.width - tile * tw).min(tw);
                let wt = w.add(seg.w_start + tile * tw);
                // Accumulators go through a small buffer so partial tiles need no masked stores.
                let mut acc = [[F::ZERO; 32]; ROW_BLOCK];
                if accumulate {
                    for (r, row) in acc.iter_mut().enumerate().take(nr) {
                        let o = out.add((r0 + r) * out_rs + seg.out_col + tile * tw);
                        std::ptr::copy_nonoverlapping(o, row.as_mut_ptr(), cols);
                    }
                }
                if cols == tw {
                    tile_product(path, nr, depth, &lhs_rows, wt, w_rs, &mut acc);
                } else {
                    // A partial tile would read past the slice: plain loop.
                    for kk in 0..depth {
                        for (r, row) in acc.iter_mut().enumerate().take(nr) {
                            let hv = *lhs_rows[r].add(kk);
                            for (j, a) in row.iter_mut().enumerate().take(cols) {
                                *a += hv * *wt.add(kk * w_rs + j);
                            }
                        }
                    }
                }
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
    w_rs: usize,
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
                    x86::f32_avx512(nr, k, &l, w, w_rs, a)
                } else {
                    x86::f32_avx2(nr, k, &l, w, w_rs, a)
                }
            } else {
                let (l, w, a) = (
                    lhs.map(|p| p as *const f64),
                    w as *const f64,
                    &mut *(acc as *mut _ as *mut [[f64; 32]; ROW_BLOCK]),
                );
                if wide {
                    x86::f64_avx512(nr, k, &l, w, w_rs, a)
                } else {
                    x86::f64_avx2(nr, k, &l, w, w_rs, a)
                }
            }
            return;
        }
    }
    let _ = path;
    let tw = tile_width::<F>();
    for kk in 0..k {
        for (row, l) in acc.iter_mut().zip(lhs).take(nr) {
            let hv = *l.add(kk);
            for (j, a) in row.iter_mut().enumerate().take(tw) {
                *a += hv * *w.add(kk * w_rs + j);
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
                w_rs: usize,
                acc_io: &mut [[$t; 32]],
            ) {
                let mut acc: [[[$v; $nv]; R]; U] = [[[$zero(); $nv]; R]; U];
                for r in 0..R {
                    for q in 0..$nv {
                        acc[0][r][q] = $loadu(acc_io[r].as_ptr().add(q * $lanes));
                    }
                }
                let step = w_rs;
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
                w_rs: usize,
                acc: &mut [[$t; 32]; 8],
            ) {
                let mut r0 = 0;
                while r0 < nr {
                    let n = (nr - r0).min($maxr);
                    let (l, a) = (&lhs[r0..], &mut acc[r0..]);
                    match n {
                        1 => block::<1, { 8 / $nv }>(k, l, w, w_rs, a),
                        2 => block::<2, { 8 / (2 * $nv) + (2 * $nv > 8) as usize }>(k, l, w, w_rs, a),
                        3 => block::<3, 1>(k, l, w, w_rs, a),
                        4 => block::<4, 1>(k, l, w, w_rs, a),
                        5 => block::<5, 1>(k, l, w, w_rs, a),
                        6 => block::<6, 1>(k, l, w, w_rs, a),
                        7 => block::<7, 1>(k, l, w, w_rs, a),
                        _ => block::<8, 1>(k, l, w, w_rs, a),
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

    macro_rules! dot_kernels {
        ($entry:ident, $feat:literal, $t:ty, $v:ty, $lanes:literal, $maxr:literal,
         $zero:ident, $loadu:ident, $fmadd:ident, $hsum:path) => {
            /// `sums[r][q] = Σ_k lhs[r][k] · w[q][k]` for `R` input rows and `J` weight rows:
            /// `R·J` independent accumulators, one horizontal sum each at the end.
            #[target_feature(enable = $feat)]
            unsafe fn block<const R: usize, const J: usize>(
                k: usize,
                lhs: &[*const $t],
                w: &[*const $t],
                sums: &mut [[$t; 8]],
            ) {
                let mut acc: [[$v; J]; R] = [[$zero(); J]; R];
                let mut kk = 0;
                while kk + $lanes <= k {
                    let wv: [$v; J] = std::array::from_fn(|q| $loadu(w[q].add(kk)));
                    for r in 0..R {
                        let hv = $loadu(lhs[r].add(kk));
                        for q in 0..J {
                            acc[r][q] = $fmadd(hv, wv[q], acc[r][q]);
                        }
                    }
                    kk += $lanes;
                }
                for r in 0..R {
                    for q in 0..J {
                        let mut t = $hsum(acc[r][q]);
                        for k2 in kk..k {
                            t += *lhs[r].add(k2) * *w[q].add(k2);
                        }
                        sums[r][q] = t;
                    }
                }
            }

            #[target_feature(enable = $feat)]
            unsafe fn rows<const J: usize>(
                nr: usize,
                k: usize,
                lhs: &[*const $t; 8],
                w: &[*const $t],
                sums: &mut [[$t; 8]; 8],
                col: usize,
            ) {
                let mut r0 = 0;
                while r0 < nr {
                    let n = (nr - r0).min($maxr);
                    let l = &lhs[r0..];
                    let mut part = [[0.0 as $t; 8]; 4];
                    match n {
                        1 => block::<1, J>(k, l, w, &mut part),
                        2 => block::<2, J>(k, l, w, &mut part),
                        3 => block::<3, J>(k, l, w, &mut part),
                        _ => block::<4, J>(k, l, w, &mut part),
                    }
                    for r in 0..n {
                        sums[r0 + r][col..col + J].copy_from_slice(&part[r][..J]);
                    }
                    r0 += n;
                }
            }

            /// Weight rows in groups of four (of eight at one input row, to keep enough
            /// accumulators in flight), input rows in blocks of at most `$maxr`.
            #[target_feature(enable = $feat)]
            pub(in crate::recurrent) unsafe fn $entry(
                nr: usize,
                nj: usize,
                k: usize,
                lhs: &[*const $t; 8],
                w: &[*const $t; 8],
                sums: &mut [[$t; 8]; 8],
            ) {
                let mut q0 = 0;
                while q0 < nj {
                    let n = nj - q0;
                    if nr == 1 && n == 8 {
                        rows::<8>(nr, k, lhs, &w[q0..], sums, q0);
                        q0 += 8;
                    } else if n >= 4 {
                        rows::<4>(nr, k, lhs, &w[q0..], sums, q0);
                        q0 += 4;
                    } else if n >= 2 {
                        rows::<2>(nr, k, lhs, &w[q0..], sums, q0);
                        q0 += 2;
                    } else {
                        rows::<1>(nr, k, lhs, &w[q0..], sums, q0);
                        q0 += 1;
                    }
                }
            }
        };
    }

    #[target_feature(enable = "avx512f")]
    unsafe fn hsum512_ps(v: __m512) -> f32 {
        _mm512_reduce_add_ps(v)
    }
    #[target_feature(enable = "avx512f")]
    unsafe fn hsum512_pd(v: __m512d) -> f64 {
        _mm512_reduce_add_pd(v)
    }
    #[target_feature(enable = "avx2,fma")]
    unsafe fn hsum256_ps(v: __m256) -> f32 {
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_movehdup_ps(s));
        _mm_cvtss_f32(s)
    }
    #[target_feature(enable = "avx2,fma")]
    unsafe fn hsum256_pd(v: __m256d) -> f64 {
        let s = _mm_add_pd(_mm256_castpd256_pd128(v), _mm256_extractf128_pd(v, 1));
        _mm_cvtsd_f64(_mm_add_sd(s, _mm_unpackhi_pd(s, s)))
    }

    mod dot_avx512_f32 {
        use super::*;
        dot_kernels!(
            run,
            "avx512f",
            f32,
            __m512,
            16,
            4,
            _mm512_setzero_ps,
            _mm512_loadu_ps,
            _mm512_fmadd_ps,
            hsum512_ps
        );
    }
    mod dot_avx512_f64 {
        use super::*;
        dot_kernels!(
            run,
            "avx512f",
            f64,
            __m512d,
            8,
            4,
            _mm512_setzero_pd,
            _mm512_loadu_pd,
            _mm512_fmadd_pd,
            hsum512_pd
        );
    }
    mod dot_avx2_f32 {
        use super::*;
        dot_kernels!(
            run,
            "avx2,fma",
            f32,
            __m256,
            8,
            2,
            _mm256_setzero_ps,
            _mm256_loadu_ps,
            _mm256_fmadd_ps,
            hsum256_ps
        );
    }
    mod dot_avx2_f64 {
        use super::*;
        dot_kernels!(
            run,
            "avx2,fma",
            f64,
            __m256d,
            4,
            2,
            _mm256_setzero_pd,
            _mm256_loadu_pd,
            _mm256_fmadd_pd,
            hsum256_pd
        );
    }
    pub(super) use dot_avx2_f32::run as dot_f32_avx2;
    pub(super) use dot_avx2_f64::run as dot_f64_avx2;
    pub(super) use dot_avx512_f32::run as dot_f32_avx512;
    pub(super) use dot_avx512_f64::run as dot_f64_avx512;

    pub(super) use avx2_f32::run as f32_avx2;
    pub(super) use avx2_f64::run as f64_avx2;
    pub(super) use avx512_f32::run as f32_avx512;
    pub(super) use avx512_f64::run as f64_avx512;
}

#[cfg(test)]
mod tests {
    use super::*;

    const PATHS: [KernelPath; 4] = [KernelPath::Scalar, KernelPath::Avx2, KernelPath::Avx512, KernelPath::Neon];

    fn val<F: Real>(i: usize, m: usize) -> F {
        F::from_f64(((i * 7919) % m) as f64 / m as f64 - 0.5)
    }

    /// Both kernels against a naive sum, for every row count 1..=11 (partial row blocks),
    /// depths that are and are not multiples of the vector width, and partial tiles.
    fn check<F: Real>(tol: f64) {
        for &(depth, rows) in &[(37usize, 11usize), (64, 1), (5, 3), (130, 8)] {
            let ncols = 90;
            // Weight matrix [ncols + 3, depth] for the dot form; its transpose view for axpy.
            let w: Vec<F> = (0..(ncols + 3) * depth).map(|i| val(i, 113)).collect();
            let wt: Vec<F> = (0..depth * (ncols + 3)).map(|i| w[(i % (ncols + 3)) * depth + i / (ncols + 3)]).collect();
            let lhs: Vec<F> = (0..rows * depth).map(|i| val(i * 13 + 1, 97)).collect();
            let segs = [Segment { out_col: 3, width: 40, w_start: 0 }, Segment { out_col: 50, width: 50, w_start: 43 }];
            let want = |r: usize, wcol: usize| -> f64 {
                (0..depth).map(|kk| lhs[r * depth + kk].to_f64() * w[wcol * depth + kk].to_f64()).sum()
            };
            for path in PATHS.into_iter().filter(|p| p.supported()) {
                for accumulate in [false, true] {
                    for axpy in [false, true] {
                        let out_rs = 104;
                        let mut out = vec![F::ONE; rows * out_rs];
                        unsafe {
                            if axpy {
                                axpy_cols(
                                    path,
                                    rows,
                                    depth,
                                    lhs.as_ptr(),
                                    depth,
                                    wt.as_ptr(),
                                    ncols + 3,
                                    &segs,
                                    out.as_mut_ptr(),
                                    out_rs,
                                    accumulate,
                                );
                            } else {
                                dot_rows(
                                    path,
                                    rows,
                                    depth,
                                    lhs.as_ptr(),
                                    depth,
                                    w.as_ptr(),
                                    depth,
                                    &segs,
                                    out.as_mut_ptr(),
                                    out_rs,
                                    accumulate,
                                );
                            }
                        }
                        for r in 0..rows {
                            for seg in &segs {
                                for j in 0..seg.width {
                                    let expect = want(r, seg.w_start + j) + if accumulate { 1.0 } else { 0.0 };
                                    let got = out[r * out_rs + seg.out_col + j].to_f64();
                                    assert!(
                                        (got - expect).abs() < tol,
                                        "{path:?} axpy={axpy} depth={depth} r{r} j{j}: {got} vs {expect}"
                                    );
                                }
                            }
                            // Columns outside the segments are untouched.
                            for c in [0, 1, 2, 43, 49, 100, 103] {
                                assert_eq!(out[r * out_rs + c].to_f64(), 1.0);
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn step_products_match_naive_f32() {
        check::<f32>(1e-4);
    }

    #[test]
    fn step_products_match_naive_f64() {
        check::<f64>(1e-12);
    }
}
