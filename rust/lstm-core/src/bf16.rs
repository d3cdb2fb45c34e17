//! Opt-in bfloat16 recurrent weights for float32 inference.
//!
//! At small batch the time loop is bound by reading `R` once per step, not by arithmetic:
//! storing `R` as bfloat16 (8 significant bits, float32's range) halves that traffic and, for
//! hidden sizes around 512, lets each thread's slice stay in its own L2. Hidden states, gate
//! sums and the cell stay float32; only the weights are rounded (relative error at most 2^-9).
//! The kernels widen each weight back to float32 (a 16-bit shift) before a float32 FMA, so no
//! BF16 instructions are needed and every x86-64 or AArch64 CPU gets the saving.

use crate::error::{check_len, Result};
use crate::kernel::KernelPath;

use crate::threads::{broadcast, split_range, with_pool};

/// Rounds one float32 to bfloat16, to nearest with ties to even; NaN stays NaN. Branch-free,
/// so loops over it vectorise.
#[inline(always)]
pub fn f32_to_bf16(v: f32) -> u16 {
    let bits = v.to_bits();
    let rounded = bits.wrapping_add(0x7fff + ((bits >> 16) & 1)) >> 16;
    // A NaN becomes a quiet NaN with its sign: rounding could otherwise carry into infinity.
    let quiet = (bits >> 16) | 0x0040;
    (if (bits & 0x7fff_ffff) > 0x7f80_0000 { quiet } else { rounded }) as u16
}

/// Widens a bfloat16 to float32 (exact).
#[inline(always)]
pub fn bf16_to_f32(v: u16) -> f32 {
    f32::from_bits((v as u32) << 16)
}

#[inline(always)]
fn convert_impl(src: &[f32], dst: &mut [u16]) {
    for (d, &s) in dst.iter_mut().zip(src) {
        *d = f32_to_bf16(s);
    }
}

/// The AVX-512 build of the rounding (for the kernel table).
///
/// # Safety
/// The CPU must support [`KernelPath::Avx512`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512vl,avx512bw,avx2")]
pub(crate) unsafe fn convert_avx512(src: &[f32], dst: &mut [u16]) {
    convert_impl(src, dst)
}

/// The AVX2 build of the rounding (for the kernel table).
///
/// # Safety
/// The CPU must support [`KernelPath::Avx2`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
pub(crate) unsafe fn convert_avx2(src: &[f32], dst: &mut [u16]) {
    convert_impl(src, dst)
}

/// Rounds `src` into `dst` (see [`f32_to_bf16`]), vectorised for `path`.
pub(crate) fn convert(path: KernelPath, src: &[f32], dst: &mut [u16]) {
    match crate::simd::f32_kernels(path).bf16_round {
        // SAFETY: `path` is only ever a path this CPU supports, and the table is its own.
        Some(round) => unsafe { round(src, dst) },
        None => convert_impl(src, dst),
    }
}

/// Rounds `src` to bfloat16 (see [`f32_to_bf16`]), vectorised for `path`.
pub fn to_bf16(path: KernelPath, src: &[f32]) -> Vec<u16> {
    let mut dst = vec![0u16; src.len()];
    convert(path, src, &mut dst);
    dst
}

/// Lanes of the partial sums: one AVX-512 register, two AVX2 ones.
const LANES: usize = 16;
/// Weight rows per block: each input load is reused this many times.
const WROWS: usize = 4;
/// Input rows per pass: each widened weight vector is reused this many times.
const XROWS: usize = 4;

/// A recurrent weight matrix `R` (`[4H, P]`, four gate groups of `H` rows) in bfloat16, laid
/// out in the order the step kernel reads it: blocks of four rows, and within a block sixteen
/// values of each row in turn, so a block (and a thread's run of blocks) is one forward
/// stream for the hardware prefetcher. The depth is padded with zeros to a multiple of
/// sixteen. Blocks never straddle two gates, so any split of the hidden units at multiples of
/// four gives each thread whole blocks. Built once (e.g. per module) and reused across calls.
#[derive(Debug, Clone)]
pub struct PackedBf16 {
    data: Vec<u16>,
    /// Rows per gate group (the hidden size).
    group: usize,
    /// Columns of `R` (the projection size, or the hidden size).
    depth: usize,
    chunks: usize,
}

impl PackedBf16 {
    /// Rounds `w` (`[4 * hidden, depth]`, row-major) to bfloat16 and packs it, on the active
    /// kernel path and all threads.
    pub fn new(w: &[f32], hidden: usize, depth: usize) -> Result<Self> {
        check_len("R", 4 * hidden * depth, w.len())?;
        let path = crate::kernel::active_kernel();
        let chunks = depth.div_ceil(LANES);
        let per_group = hidden.div_ceil(WROWS);
        let block_len = chunks * WROWS * LANES;
        let mut data = vec![0u16; 4 * per_group * block_len];
        let nblocks = 4 * per_group;
        let dst = SendPtr(data.as_mut_ptr());
        with_pool(w.len(), |threads| {
            let parts = threads.min(nblocks).max(1);
            broadcast(parts, |m| {
                let (b0, b1) = split_range(nblocks, parts, m, 1);
                for bi in b0..b1 {
                    let (gi, b) = (bi / per_group, bi % per_group);
                    let n = (hidden - b * WROWS).min(WROWS);
                    // SAFETY: each part writes its own blocks.
                    let block = unsafe { std::slice::from_raw_parts_mut(dst.at(bi * block_len), block_len) };
                    for j in 0..WROWS {
                        // Rows past the group repeat its last row: their sums are never stored.
                        let row = gi * hidden + b * WROWS + j.min(n - 1);
                        let src = &w[row * depth..][..depth];
                        for (c, part) in src.chunks(LANES).enumerate() {
                            let at = (c * WROWS + j) * LANES;
                            convert(path, part, &mut block[at..at + part.len()]);
                        }
                    }
                }
            });
        })?;
        Ok(PackedBf16 { data, group: hidden, depth, chunks })
    }

    /// The hidden size and depth (columns of `R`) this matrix was packed for.
    pub fn dims(&self) -> (usize, usize) {
        (self.group, self.depth)
    }

    /// Bytes held.
    pub fn nbytes(&self) -> usize {
        self.data.len() * 2
    }

    /// Input rows must be padded with zeros to this many values.
    pub(crate) fn padded_depth(&self) -> usize {
        self.chunks * LANES
    }

    /// `out[r, c] += Σ_k lhs[r, k] · R[c, k]` for the rows `c` of hidden units `u0..u1` in all
    /// four gates (column `c` of `out` is row `c` of `R`) and `r < rows`, the blocks visited
    /// last first when `backwards` (see `recurrent::reversed_blocks`).
    ///
    /// # Safety
    /// `u0` is a multiple of four and `u1 <= hidden`; `lhs` holds `rows` rows of
    /// [`Self::padded_depth`] values `lhs_rs` apart; `out` covers those columns of `rows` rows
    /// `out_rs` apart; `path` is supported by this CPU.
    #[allow(clippy::too_many_arguments)]
    pub(crate) unsafe fn accumulate(
        &self,
        path: KernelPath,
        units: (usize, usize),
        rows: usize,
        lhs: *const f32,
        lhs_rs: usize,
        out: *mut f32,
        out_rs: usize,
        backwards: bool,
    ) {
        // SAFETY: the caller upholds this function's contract: every pointer is valid for the rows and lengths it is given, and written ranges are not shared.
        unsafe {
            let args = (units, rows, lhs, lhs_rs, out, out_rs, backwards);
            match crate::simd::f32_kernels(path).bf16_product {
                Some(product) => product(self, args),
                None => self.run(args),
            }
        }
    }

    /// The AVX-512 build of the product (for the kernel table).
    ///
    /// # Safety
    /// As for [`Self::accumulate`], on a CPU that supports [`KernelPath::Avx512`].
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,avx512vl,avx512bw,avx2,fma")]
    pub(crate) unsafe fn run_avx512(&self, args: WalkArgs) {
        // SAFETY: the caller upholds this function's contract: the CPU has the target features it is compiled for (the intrinsics have no other precondition).
        unsafe {
            self.walk(args, |nr, chunks, l, wb| match nr {
                1 => x86::block::<1>(chunks, l, wb),
                2 => x86::block::<2>(chunks, l, wb),
                3 => x86::block::<3>(chunks, l, wb),
                _ => x86::block::<4>(chunks, l, wb),
            })
        }
    }

    /// The AVX2 build of the product (for the kernel table).
    ///
    /// # Safety
    /// As for [`Self::accumulate`], on a CPU that supports [`KernelPath::Avx2`].
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    pub(crate) unsafe fn run_avx2(&self, args: WalkArgs) {
        // SAFETY: the caller checked the CPU has AVX2 and FMA and passes valid pointers.
        unsafe { self.run(args) }
    }

    #[inline(always)]
    unsafe fn run(&self, args: WalkArgs) {
        // SAFETY: the caller upholds this function's `# Safety` contract (see its docs).
        unsafe {
            self.walk(args, |nr, chunks, l, wb| match nr {
                1 => pad(block::<1>(chunks, l, wb)),
                2 => pad(block::<2>(chunks, l, wb)),
                3 => pad(block::<3>(chunks, l, wb)),
                _ => block::<4>(chunks, l, wb),
            })
        }
    }

    /// Visits this thread's blocks against every group of up to [`XROWS`] input rows, adding
    /// what `kernel(rows, chunks, lhs rows, block)` returns into `out`.
    #[inline(always)]
    unsafe fn walk(
        &self,
        (units, rows, lhs, lhs_rs, out, out_rs, backwards): WalkArgs,
        kernel: impl Fn(usize, usize, &[*const f32; XROWS], *const u16) -> [[f32; WROWS]; XROWS],
    ) {
        // SAFETY: the caller upholds this function's contract: every pointer is valid for the rows and lengths it is given, and written ranges are not shared.
        unsafe {
            let block_len = self.chunks * WROWS * LANES;
            let per_group = self.group.div_ceil(WROWS);
            let (b0, b1) = (units.0 / WROWS, units.1.div_ceil(WROWS));
            let nb = 4 * (b1 - b0);
            for i in 0..nb {
                let k = if backwards { nb - 1 - i } else { i };
                let (gi, b) = (k / (b1 - b0), b0 + k % (b1 - b0));
                let col = gi * self.group + b * WROWS;
                let nj = (self.group - b * WROWS).min(WROWS);
                let wb = self.data.as_ptr().add((gi * per_group + b) * block_len);
                let mut r0 = 0;
                while r0 < rows {
                    let nr = (rows - r0).min(XROWS);
                    let l: [*const f32; XROWS] = std::array::from_fn(|r| lhs.add((r0 + r.min(nr - 1)) * lhs_rs));
                    let sums = kernel(nr, self.chunks, &l, wb);
                    for (r, row) in sums.iter().enumerate().take(nr) {
                        let o = out.add((r0 + r) * out_rs + col);
                        for (q, &v) in row.iter().enumerate().take(nj) {
                            *o.add(q) += v;
                        }
                    }
                    r0 += nr;
                }
            }
        }
    }
}

/// Units, input rows, `lhs` and its row stride, `out` and its row stride, direction.
/// `(units, rows, lhs, lhs_rs, out, out_rs, backwards)` of [`PackedBf16::accumulate`].
pub(crate) type WalkArgs = ((usize, usize), usize, *const f32, usize, *mut f32, usize, bool);

#[derive(Clone, Copy)]
struct SendPtr(*mut u16);
// SAFETY: the packing threads write disjoint blocks.
unsafe impl Send for SendPtr {}
// SAFETY: as for `Send`: shared only among threads that write disjoint blocks.
unsafe impl Sync for SendPtr {}

impl SendPtr {
    /// # Safety
    /// `i` is within the allocation.
    unsafe fn at(self, i: usize) -> *mut u16 {
        // SAFETY: the caller keeps `i` inside the allocation.
        unsafe { self.0.add(i) }
    }
}

fn pad<const R: usize>(sums: [[f32; WROWS]; R]) -> [[f32; WROWS]; XROWS] {
    std::array::from_fn(|r| if r < R { sums[r] } else { [0.0; WROWS] })
}

#[allow(clippy::needless_range_loop)] // r and j index several arrays at once
/// `sums[r][j] = Σ_k lhs[r][k] · w[j][k]` for `R` input rows against one packed block, with
/// lane-wise partial sums the compiler keeps in vector registers.
///
/// # Safety
/// Each `lhs[r]` holds `chunks * LANES` values; `w` is a packed block of that depth.
#[inline(always)]
unsafe fn block<const R: usize>(chunks: usize, lhs: &[*const f32; XROWS], w: *const u16) -> [[f32; WROWS]; R] {
    // SAFETY: the caller upholds this function's contract: every pointer is valid for the rows and lengths it is given, and written ranges are not shared.
    unsafe {
        let mut acc = [[[0f32; LANES]; WROWS]; R];
        for c in 0..chunks {
            let x: [[f32; LANES]; R] = std::array::from_fn(|r| *(lhs[r].add(c * LANES) as *const [f32; LANES]));
            for j in 0..WROWS {
                let wp = w.add((c * WROWS + j) * LANES);
                let wv: [f32; LANES] = std::array::from_fn(|q| bf16_to_f32(*wp.add(q)));
                for r in 0..R {
                    for q in 0..LANES {
                        acc[r][j][q] = x[r][q].mul_add(wv[q], acc[r][j][q]);
                    }
                }
            }
        }
        std::array::from_fn(|r| std::array::from_fn(|j| acc[r][j].iter().sum::<f32>()))
    }
}

/// The block kernel with explicit AVX-512 registers: sixteen accumulators stay in registers
/// for the whole depth (the portable version's arrays can end up on the stack).
#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{LANES, WROWS, XROWS};
    use std::arch::x86_64::*;

    /// # Safety
    /// As for `super::block`; the CPU has AVX-512 F and BW.
    #[inline]
    #[allow(clippy::needless_range_loop)] // r and j index several arrays at once
    #[target_feature(enable = "avx512f,avx512vl,avx512bw,avx2,fma")]
    pub(super) unsafe fn block<const R: usize>(
        chunks: usize,
        lhs: &[*const f32; XROWS],
        w: *const u16,
    ) -> [[f32; WROWS]; XROWS] {
        // SAFETY: the caller upholds this function's contract: the CPU has the target features it is compiled for, and every pointer is valid for the lengths it is given.
        unsafe {
            let mut acc = [[_mm512_setzero_ps(); WROWS]; R];
            for c in 0..chunks {
                let x: [__m512; R] = std::array::from_fn(|r| _mm512_loadu_ps(lhs[r].add(c * LANES)));
                for j in 0..WROWS {
                    let raw = _mm256_loadu_si256(w.add((c * WROWS + j) * LANES) as *const __m256i);
                    let wv = _mm512_castsi512_ps(_mm512_slli_epi32::<16>(_mm512_cvtepu16_epi32(raw)));
                    for r in 0..R {
                        acc[r][j] = _mm512_fmadd_ps(x[r], wv, acc[r][j]);
                    }
                }
            }
            std::array::from_fn(|r| {
                if r < R {
                    std::array::from_fn(|j| _mm512_reduce_add_ps(acc[r][j]))
                } else {
                    [0.0; WROWS]
                }
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounding_is_nearest_even_and_keeps_specials() {
        assert_eq!(f32_to_bf16(1.0), 0x3f80);
        // 1 + 2^-8 is a tie between 1 and 1 + 2^-7: to even (1.0).
        assert_eq!(f32_to_bf16(1.0 + 2f32.powi(-8)), 0x3f80);
        // 1 + 3·2^-8 is a tie between 1 + 2^-7 and 1 + 2^-6: to even (1 + 2^-6).
        assert_eq!(f32_to_bf16(1.0 + 3.0 * 2f32.powi(-8)), 0x3f82);
        assert_eq!(f32_to_bf16(-2.5), 0xc020);
        assert_eq!(f32_to_bf16(f32::INFINITY), 0x7f80);
        assert!(bf16_to_f32(f32_to_bf16(f32::NAN)).is_nan());
        assert_eq!(f32_to_bf16(f32::MAX), 0x7f80, "rounds past the largest bf16 to infinity");
        for &v in &[0.1f32, -3.7, 1e-30, 6.5e4, 123.456] {
            let back = bf16_to_f32(f32_to_bf16(v));
            assert!(((back - v) / v).abs() <= 2f32.powi(-9), "{v} -> {back}");
        }
    }

    #[test]
    fn every_path_matches_the_scalar_reference() {
        // Odd sizes on purpose: a hidden size that is not a multiple of four, a depth that is
        // not a multiple of sixteen.
        let (rows, depth, hidden): (usize, usize, usize) = (7, 45, 10);
        let pd = depth.div_ceil(16) * 16;
        let mut lhs = vec![0f32; rows * pd];
        for r in 0..rows {
            for k in 0..depth {
                lhs[r * pd + k] = (((r * depth + k) * 37 % 101) as f32 - 50.0) / 50.0;
            }
        }
        let wf: Vec<f32> = (0..4 * hidden * depth).map(|i| ((i * 53 % 97) as f32 - 48.0) / 40.0).collect();
        let reference = |u0: usize, u1: usize| {
            let mut out = vec![0.5f32; rows * 4 * hidden];
            for r in 0..rows {
                for gi in 0..4 {
                    for c in gi * hidden + u0..gi * hidden + u1 {
                        let s: f64 = (0..depth)
                            .map(|k| lhs[r * pd + k] as f64 * bf16_to_f32(f32_to_bf16(wf[c * depth + k])) as f64)
                            .sum();
                        out[r * 4 * hidden + c] += s as f32;
                    }
                }
            }
            out
        };
        for path in [KernelPath::Scalar, KernelPath::Avx2, KernelPath::Avx512, KernelPath::Neon] {
            if !path.supported() {
                continue;
            }
            assert_eq!(to_bf16(path, &wf), to_bf16(KernelPath::Scalar, &wf), "{path:?} conversion");
            let packed = PackedBf16::new(&wf, hidden, depth).unwrap();
            assert_eq!(packed.padded_depth(), pd);
            assert_eq!(packed.dims(), (hidden, depth));
            for (u0, u1) in [(0, hidden), (0, 4), (4, hidden)] {
                let want = reference(u0, u1);
                for backwards in [false, true] {
                    let mut out = vec![0.5f32; rows * 4 * hidden];
                    // SAFETY: lhs rows are padded to `pd`; out has all 4H columns.
                    unsafe {
                        packed.accumulate(
                            path,
                            (u0, u1),
                            rows,
                            lhs.as_ptr(),
                            pd,
                            out.as_mut_ptr(),
                            4 * hidden,
                            backwards,
                        )
                    };
                    for (a, b) in out.iter().zip(&want) {
                        assert!((a - b).abs() <= 1e-5 * (1.0 + b.abs()), "{path:?} {u0}..{u1}: {a} vs {b}");
                    }
                }
            }
        }
    }

    #[test]
    fn wrong_size_is_an_error() {
        assert!(PackedBf16::new(&[0.0; 10], 2, 2).is_err());
    }
}
