//! Register-blocked tile kernels: `NV` vectors per row (a 128-byte tile, or 64 bytes for the
//! half-width ones), `R` rows, and the k loop unrolled `U` times with separate accumulators so
//! FMA latency is hidden even at batch 1.

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
            out: &[*mut $t],
            accumulate: bool,
        ) {
            // SAFETY: the caller upholds this function's contract: the CPU has the target features it is compiled for, and every pointer is valid for the lengths it is given.
            unsafe {
                let mut acc: [[[$v; $nv]; R]; U] = [[[$zero(); $nv]; R]; U];
                for r in 0..R {
                    for q in 0..$nv {
                        if accumulate {
                            acc[0][r][q] = $loadu(out[r].add(q * $lanes));
                        }
                    }
                }
                let step = w_rs;
                let strided = w_rs * std::mem::size_of::<$t>() != 128;
                let mut kk = 0;
                while kk + U <= k {
                    for u in 0..U {
                        let wk = w.add((kk + u) * step);
                        // Strided tiles cross a page every row: prefetch a few rows ahead
                        // (a packed panel streams in order, which the hardware follows).
                        if strided {
                            _mm_prefetch::<_MM_HINT_T0>(wk.wrapping_add(8 * step) as *const i8);
                            _mm_prefetch::<_MM_HINT_T0>(
                                wk.wrapping_add(8 * step + 64 / std::mem::size_of::<$t>()) as *const i8
                            );
                        }
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
                        $storeu(out[r].add(q * $lanes), acc[0][r][q]);
                    }
                }
            }
        }

        /// Dispatches on the row count: blocks of at most `$maxr` rows (what the register
        /// file holds), the k loop unrolled so eight to sixteen accumulators stay live.
        #[target_feature(enable = $feat)]
        pub(crate) unsafe fn $entry(
            nr: usize,
            k: usize,
            lhs: &[*const $t; 8],
            w: *const $t,
            w_rs: usize,
            out: &[*mut $t; 8],
            accumulate: bool,
        ) {
            // SAFETY: the caller upholds this function's contract: the CPU has the target features it is compiled for, and every pointer is valid for the lengths it is given.
            unsafe {
                let mut r0 = 0;
                while r0 < nr {
                    let n = (nr - r0).min($maxr);
                    let (l, o) = (&lhs[r0..], &out[r0..]);
                    match n {
                        1 => block::<1, { 8 / $nv }>(k, l, w, w_rs, o, accumulate),
                        2 => block::<2, { 8 / (2 * $nv) + (2 * $nv > 8) as usize }>(k, l, w, w_rs, o, accumulate),
                        3 => block::<3, 2>(k, l, w, w_rs, o, accumulate),
                        4 => block::<4, 2>(k, l, w, w_rs, o, accumulate),
                        5 => block::<5, 1>(k, l, w, w_rs, o, accumulate),
                        6 => block::<6, 1>(k, l, w, w_rs, o, accumulate),
                        7 => block::<7, 1>(k, l, w, w_rs, o, accumulate),
                        _ => block::<8, 1>(k, l, w, w_rs, o, accumulate),
                    }
                    r0 += n;
                }
            }
        }
    };
}

/// A full-width (`NV` vectors, 128 bytes) and a half-width (64 bytes, the last tile of
/// `weight_rows_product` when at most half its lanes hold input rows) instantiation of
/// `tile_kernels!`, each in its own module.
macro_rules! tile_kernel_pair {
    ($full:ident, $half:ident, $feat:literal, $t:ty, $v:ty, $lanes:literal, $nv:literal,
     $maxr:literal, $half_nv:literal, $half_maxr:literal, $($ops:ident),+) => {
        mod $full {
            use super::*;
            tile_kernels!(run, $feat, $t, $v, $lanes, $nv, $maxr, $($ops),+);
        }
        mod $half {
            use super::*;
            tile_kernels!(run, $feat, $t, $v, $lanes, $half_nv, $half_maxr, $($ops),+);
        }
    };
}

tile_kernel_pair!(
    avx512_f32,
    avx512_f32_half,
    "avx512f",
    f32,
    __m512,
    16,
    2,
    8,
    1,
    8,
    _mm512_setzero_ps,
    _mm512_loadu_ps,
    _mm512_storeu_ps,
    _mm512_set1_ps,
    _mm512_fmadd_ps,
    _mm512_add_ps
);
tile_kernel_pair!(
    avx512_f64,
    avx512_f64_half,
    "avx512f",
    f64,
    __m512d,
    8,
    2,
    8,
    1,
    8,
    _mm512_setzero_pd,
    _mm512_loadu_pd,
    _mm512_storeu_pd,
    _mm512_set1_pd,
    _mm512_fmadd_pd,
    _mm512_add_pd
);
tile_kernel_pair!(
    avx2_f32,
    avx2_f32_half,
    "avx2,fma",
    f32,
    __m256,
    8,
    4,
    2,
    2,
    3,
    _mm256_setzero_ps,
    _mm256_loadu_ps,
    _mm256_storeu_ps,
    _mm256_set1_ps,
    _mm256_fmadd_ps,
    _mm256_add_ps
);
tile_kernel_pair!(
    avx2_f64,
    avx2_f64_half,
    "avx2,fma",
    f64,
    __m256d,
    4,
    4,
    2,
    2,
    3,
    _mm256_setzero_pd,
    _mm256_loadu_pd,
    _mm256_storeu_pd,
    _mm256_set1_pd,
    _mm256_fmadd_pd,
    _mm256_add_pd
);

macro_rules! dot_kernels {
    ($entry:ident, $feat:literal, $t:ty, $v:ty, $lanes:literal, $maxr:literal, $acc:literal,
     $zero:ident, $loadu:ident, $fmadd:ident, $hsum:path, $full:literal, $reduce_all:path, $lane_of:path) => {
        /// `sums[r][q] = Σ_k lhs[r][k] · w[q][k]` for `R` input rows and `J` weight rows:
        /// `R·J` independent accumulators; at the end one shuffle tree reduces a full register
        /// file of them at once (`R·J == $full`), else one horizontal sum each.
        // `$full` is 0 for kernels without a reduction tree: that branch is then dead.
        #[allow(clippy::reversed_empty_ranges)]
        #[target_feature(enable = $feat)]
        unsafe fn block<const R: usize, const J: usize>(
            k: usize,
            lhs: &[*const $t],
            w: &[*const $t],
            sums: &mut [[$t; 16]],
        ) {
            // SAFETY: the caller upholds this function's contract: the CPU has the target features it is compiled for, and every pointer is valid for the lengths it is given.
            unsafe {
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
                let tail = |r: usize, q: usize| {
                    let mut t = 0.0 as $t;
                    for k2 in kk..k {
                        t += *lhs[r].add(k2) * *w[q].add(k2);
                    }
                    t
                };
                if R * J == $full {
                    let flat: [$v; $full] = std::array::from_fn(|a| acc[a / J][a % J]);
                    let mut out = [0.0 as $t; $lanes];
                    $reduce_all(&flat, &mut out);
                    for a in 0..$full {
                        let (r, q) = (a / J, a % J);
                        sums[r][q] = out[$lane_of(a)] + tail(r, q);
                    }
                } else {
                    for r in 0..R {
                        for q in 0..J {
                            sums[r][q] = $hsum(acc[r][q]) + tail(r, q);
                        }
                    }
                }
            }
        }

        /// All weight rows against `R` input rows: groups of `J` weight rows, then single
        /// rows for the remainder.
        #[target_feature(enable = $feat)]
        unsafe fn rows<const R: usize, const J: usize>(
            nj: usize,
            k: usize,
            lhs: &[*const $t],
            w: &[*const $t; 16],
            sums: &mut [[$t; 16]],
        ) {
            // SAFETY: the caller upholds this function's contract: the CPU has the target features it is compiled for, and every pointer is valid for the lengths it is given.
            unsafe {
                let mut part = [[0.0 as $t; 16]; R];
                let mut q0 = 0;
                while q0 + J <= nj {
                    block::<R, J>(k, lhs, &w[q0..], &mut part);
                    for r in 0..R {
                        sums[r][q0..q0 + J].copy_from_slice(&part[r][..J]);
                    }
                    q0 += J;
                }
                while q0 < nj {
                    block::<R, 1>(k, lhs, &w[q0..], &mut part);
                    for r in 0..R {
                        sums[r][q0] = part[r][0];
                    }
                    q0 += 1;
                }
            }
        }

        /// Input rows in blocks of at most `$maxr`; each block takes as many weight rows at
        /// once as its accumulators allow (`R·J <= $acc`): many input rows per weight load
        /// keeps the weights' cache traffic low, many weight rows keep FMAs in flight.
        #[target_feature(enable = $feat)]
        pub(crate) unsafe fn $entry(
            nr: usize,
            nj: usize,
            k: usize,
            lhs: &[*const $t; 8],
            w: &[*const $t; 16],
            sums: &mut [[$t; 16]; 8],
        ) {
            // SAFETY: the caller upholds this function's contract: the CPU has the target features it is compiled for, and every pointer is valid for the lengths it is given.
            unsafe {
                let mut r0 = 0;
                while r0 < nr {
                    let n = (nr - r0).min($maxr);
                    let (l, s) = (&lhs[r0..], &mut sums[r0..]);
                    match n {
                        1 => rows::<1, { $acc }>(nj, k, l, w, s),
                        2 => rows::<2, { $acc / 2 }>(nj, k, l, w, s),
                        3 => rows::<3, { $acc / 3 }>(nj, k, l, w, s),
                        4 => rows::<4, { $acc / 4 }>(nj, k, l, w, s),
                        5 => rows::<5, { $acc / 5 }>(nj, k, l, w, s),
                        6 => rows::<6, { $acc / 6 }>(nj, k, l, w, s),
                        7 => rows::<7, { $acc / 7 }>(nj, k, l, w, s),
                        _ => rows::<8, { $acc / 8 }>(nj, k, l, w, s),
                    }
                    r0 += n;
                }
            }
        }
    };
}

/// Sums each of 16 registers into one register: lane `4·(a % 4) + a / 4` holds the sum of
/// `v[a]`. Four levels of shuffles and adds instead of 16 separate horizontal sums.
#[target_feature(enable = "avx512f")]
unsafe fn reduce16_ps(v: &[__m512; 16], out: &mut [f32; 16]) {
    // SAFETY: the caller upholds this function's contract: the CPU has the target features it is compiled for (the intrinsics have no other precondition).
    unsafe {
        let w: [__m512; 8] = std::array::from_fn(|i| {
            let (a, b) = (v[2 * i], v[2 * i + 1]);
            _mm512_add_ps(_mm512_shuffle_f32x4::<0x44>(a, b), _mm512_shuffle_f32x4::<0xEE>(a, b))
        });
        let x: [__m512; 4] = std::array::from_fn(|i| {
            let (a, b) = (w[2 * i], w[2 * i + 1]);
            _mm512_add_ps(_mm512_shuffle_f32x4::<0x88>(a, b), _mm512_shuffle_f32x4::<0xDD>(a, b))
        });
        let y0 = _mm512_add_ps(_mm512_unpacklo_ps(x[0], x[1]), _mm512_unpackhi_ps(x[0], x[1]));
        let y1 = _mm512_add_ps(_mm512_unpacklo_ps(x[2], x[3]), _mm512_unpackhi_ps(x[2], x[3]));
        let z = _mm512_add_ps(_mm512_shuffle_ps::<0x44>(y0, y1), _mm512_shuffle_ps::<0xEE>(y0, y1));
        _mm512_storeu_ps(out.as_mut_ptr(), z);
    }
}
fn lane16(a: usize) -> usize {
    4 * (a % 4) + a / 4
}

/// Sums each of 8 registers into one register: lane `2·(a % 4) + a / 4` holds `Σ v[a]`.
#[target_feature(enable = "avx512f")]
unsafe fn reduce8_pd(v: &[__m512d; 8], out: &mut [f64; 8]) {
    // SAFETY: the caller upholds this function's contract: the CPU has the target features it is compiled for (the intrinsics have no other precondition).
    unsafe {
        let w: [__m512d; 4] = std::array::from_fn(|i| {
            let (a, b) = (v[2 * i], v[2 * i + 1]);
            _mm512_add_pd(_mm512_shuffle_f64x2::<0x44>(a, b), _mm512_shuffle_f64x2::<0xEE>(a, b))
        });
        let x: [__m512d; 2] = std::array::from_fn(|i| {
            let (a, b) = (w[2 * i], w[2 * i + 1]);
            _mm512_add_pd(_mm512_shuffle_f64x2::<0x88>(a, b), _mm512_shuffle_f64x2::<0xDD>(a, b))
        });
        let z = _mm512_add_pd(_mm512_unpacklo_pd(x[0], x[1]), _mm512_unpackhi_pd(x[0], x[1]));
        _mm512_storeu_pd(out.as_mut_ptr(), z);
    }
}
fn lane8(a: usize) -> usize {
    2 * (a % 4) + a / 4
}

/// AVX2 kernels reduce register by register (`$full` = 0 never matches).
unsafe fn reduce_none<T, V>(_v: &[V; 0], _out: &mut [T]) {}
fn lane_none(a: usize) -> usize {
    a
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
    #[rustfmt::skip]
    dot_kernels!(run, "avx512f", f32, __m512, 16, 8, 16, _mm512_setzero_ps, _mm512_loadu_ps, _mm512_fmadd_ps,
        hsum512_ps, 16, reduce16_ps, lane16);
}
mod dot_avx512_f64 {
    use super::*;
    #[rustfmt::skip]
    dot_kernels!(run, "avx512f", f64, __m512d, 8, 8, 8, _mm512_setzero_pd, _mm512_loadu_pd, _mm512_fmadd_pd,
        hsum512_pd, 8, reduce8_pd, lane8);
}
mod dot_avx2_f32 {
    use super::*;
    #[rustfmt::skip]
    dot_kernels!(run, "avx2,fma", f32, __m256, 8, 4, 8, _mm256_setzero_ps, _mm256_loadu_ps, _mm256_fmadd_ps,
        hsum256_ps, 0, reduce_none, lane_none);
}
mod dot_avx2_f64 {
    use super::*;
    #[rustfmt::skip]
    dot_kernels!(run, "avx2,fma", f64, __m256d, 4, 4, 8, _mm256_setzero_pd, _mm256_loadu_pd, _mm256_fmadd_pd,
        hsum256_pd, 0, reduce_none, lane_none);
}
pub(crate) use dot_avx2_f32::run as dot_f32_avx2;
pub(crate) use dot_avx2_f64::run as dot_f64_avx2;
pub(crate) use dot_avx512_f32::run as dot_f32_avx512;
pub(crate) use dot_avx512_f64::run as dot_f64_avx512;

/// How far ahead (in f32 values) [`transpose16`] prefetches each source row.
const PREFETCH_AHEAD: usize = 64;

/// `dst[k * dst_rs + j] = src[j][k]` for a 16 x 16 block: four rounds of shuffles
/// (32-bit pairs, 64-bit pairs, then 128-bit lanes twice).
#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn transpose16(src: &[*const f32; 16], dst: *mut f32, dst_rs: usize) {
    // SAFETY: the caller upholds this function's contract: the CPU has the target features it is compiled for, and every pointer is valid for the lengths it is given.
    unsafe {
        // Sixteen rows a page apart defeat the hardware prefetcher: fetch a few lines ahead.
        for &row in src {
            _mm_prefetch::<_MM_HINT_T0>(row.wrapping_add(PREFETCH_AHEAD) as *const i8);
        }
        let r: [__m512; 16] = std::array::from_fn(|j| _mm512_loadu_ps(src[j]));
        // t[2p] / t[2p+1]: rows 2p and 2p+1 interleaved (columns 0,1 / 2,3 of each lane).
        let t: [__m512d; 16] = std::array::from_fn(|i| {
            let (a, b) = (r[i & !1], r[i | 1]);
            _mm512_castps_pd(if i % 2 == 0 { _mm512_unpacklo_ps(a, b) } else { _mm512_unpackhi_ps(a, b) })
        });
        // u[4q + c]: column c (+4, +8, +12 per lane) of rows 4q..4q+4.
        let u: [__m512; 16] = std::array::from_fn(|i| {
            let (q, c) = (i / 4, i % 4);
            let (a, b) = (t[4 * q + c / 2], t[4 * q + 2 + c / 2]);
            _mm512_castpd_ps(if c % 2 == 0 { _mm512_unpacklo_pd(a, b) } else { _mm512_unpackhi_pd(a, b) })
        });
        // v[8h + c']: lanes of columns (c', c'+8) for rows 8h..8h+8, c' < 8.
        let v: [__m512; 16] = std::array::from_fn(|i| {
            let (h, c) = (i / 8, i % 8);
            let (a, b) = (u[8 * h + c % 4], u[8 * h + 4 + c % 4]);
            if c < 4 {
                _mm512_shuffle_f32x4::<0x88>(a, b)
            } else {
                _mm512_shuffle_f32x4::<0xdd>(a, b)
            }
        });
        for c in 0..8 {
            let (a, b) = (v[c], v[8 + c]);
            // Column order inside v: c < 4 holds columns (c, c+8); c >= 4 holds (c, c+8) too.
            _mm512_storeu_ps(dst.add(c * dst_rs), _mm512_shuffle_f32x4::<0x88>(a, b));
            _mm512_storeu_ps(dst.add((c + 8) * dst_rs), _mm512_shuffle_f32x4::<0xdd>(a, b));
        }
    }
}

pub(crate) use avx2_f32::run as f32_avx2;
pub(crate) use avx2_f32_half::run as f32_avx2_half;
pub(crate) use avx2_f64::run as f64_avx2;
pub(crate) use avx2_f64_half::run as f64_avx2_half;
pub(crate) use avx512_f32::run as f32_avx512;
pub(crate) use avx512_f32_half::run as f32_avx512_half;
pub(crate) use avx512_f64::run as f64_avx512;
pub(crate) use avx512_f64_half::run as f64_avx512_half;
