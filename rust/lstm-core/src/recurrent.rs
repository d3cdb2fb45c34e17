//! The register-blocked matrix products of the engine:
//!
//! - [`dot_rows`]: `out[r, c] (+)= Σ_k lhs[r, k] · W[row(c), k]` — rows of a row-major weight
//!   matrix read in place against a few input rows (very short calls, weights too big to pack);
//! - [`axpy_cols`]: `out[r, c] (+)= Σ_k lhs[r, k] · W[k, col(c)]` — the tile kernel, over a
//!   panel packed by [`pack_rows`] (the forward step and input projection) or [`pack_cols`] (the
//!   backward step), or a column slice of a row-major matrix in place;
//! - [`weight_rows_product`]: the dot form's product on the tile kernel, transposed (the
//!   weight rows broadcast, a few packed input rows as the panel).
//!
//! All are register-blocked with explicit AVX-512 / AVX2 intrinsics for f32 and f64, chosen
//! at run time; the scalar path is the reference they are tested against.

use crate::kernel::KernelPath;
use crate::real::Real;

/// Bytes per column tile of [`axpy_cols`] (two AVX-512 registers, four AVX2 registers).
const TILE_BYTES: usize = 128;
/// Cache line bytes: packed panels start on one.
const LINE: usize = 64;
/// Input rows handled together: each weight load is reused this many times.
const ROW_BLOCK: usize = 8;

pub(crate) fn tile_width<F>() -> usize {
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
    /// Whether the weights are a packed panel whose last tile is padded to a whole tile, so a
    /// partial tile may be read in full (only the `width` columns are stored).
    pub padded: bool,
}

/// The same work as `segments`, cut into blocks of `chunk` columns (weight offset `w_step`
/// apart) and listed last block first. Sweeping the weights alternately forwards and backwards
/// keeps the most recently read part in cache when a thread's slice is about the cache's size:
/// a cyclic sweep in one direction evicts each line just before it is needed again (LRU).
/// Each output column is still one independent sum, so the results are bit for bit the same.
pub(crate) fn reversed_blocks(segments: &[Segment], chunk: usize, w_step: usize) -> Vec<Segment> {
    let mut out = Vec::new();
    for seg in segments {
        for b in 0..seg.width.div_ceil(chunk) {
            out.push(Segment {
                out_col: seg.out_col + b * chunk,
                width: (seg.width - b * chunk).min(chunk),
                w_start: seg.w_start + b * w_step,
                padded: seg.padded,
            });
        }
    }
    out.reverse();
    out
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
    // SAFETY: the caller upholds this function's contract: every pointer is valid for the rows and lengths it is given, and written ranges are not shared.
    unsafe {
        // Weight rows outermost: each group of eight is read from memory once and stays in L1
        // while every input row block passes over it.
        for seg in segments {
            let mut j = 0;
            while j < seg.width {
                let nj = (seg.width - j).min(16);
                let wr: [*const F; 16] = std::array::from_fn(|q| w.add((seg.w_start + j + q.min(nj - 1)) * w_rs));
                let mut r0 = 0;
                while r0 < rows {
                    let nr = (rows - r0).min(ROW_BLOCK);
                    let l: [*const F; ROW_BLOCK] = std::array::from_fn(|r| lhs.add((r0 + r.min(nr - 1)) * lhs_rs));
                    let mut sums = [[F::ZERO; 16]; ROW_BLOCK];
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
}

/// `sums[r][q] = Σ_k lhs[r][k] · w[q][k]` for `nr` input rows and `nj <= 16` weight rows.
#[inline]
unsafe fn dot_block<F: Real>(
    path: KernelPath,
    nr: usize,
    nj: usize,
    depth: usize,
    lhs: &[*const F; ROW_BLOCK],
    w: &[*const F; 16],
    sums: &mut [[F; 16]; ROW_BLOCK],
) {
    // SAFETY: the caller upholds this function's contract: every pointer is valid for the rows and lengths it is given, and written ranges are not shared.
    unsafe {
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
                        &mut *(sums as *mut _ as *mut [[f32; 16]; ROW_BLOCK]),
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
                        &mut *(sums as *mut _ as *mut [[f64; 16]; ROW_BLOCK]),
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
}

/// Packs rows of a row-major matrix `w` (`depth` columns, row stride `w_rs`) for
/// [`axpy_cols`]: for each `(out_col, row_start, count)` group, tiles of `T` rows (128 bytes of
/// columns) transposed to `[depth][T]`, contiguous so the kernel streams them in order. Returns
/// the panel and the segments that address it (`w_rs = T`, `tile_step = depth * T`). The
/// transposition runs in 16 x 16 register blocks for f32 on AVX-512, else in cache-sized
/// blocks; the buffer is one the thread kept from an earlier call where possible.
pub(crate) fn pack_rows<F: Real>(
    path: KernelPath,
    w: &[F],
    w_rs: usize,
    depth: usize,
    groups: &[(usize, usize, usize)],
) -> (Vec<F>, Vec<Segment>) {
    pack_rows_in(path, w, w_rs, depth, groups, crate::scratch::take)
}

/// [`pack_rows`] into a buffer of its own (for a panel kept beyond the call), not one of the
/// thread's kept buffers.
pub(crate) fn pack_rows_fresh<F: Real>(
    path: KernelPath,
    w: &[F],
    w_rs: usize,
    depth: usize,
    groups: &[(usize, usize, usize)],
) -> (Vec<F>, Vec<Segment>) {
    pack_rows_in(path, w, w_rs, depth, groups, Vec::with_capacity)
}

fn pack_rows_in<F: Real>(
    path: KernelPath,
    w: &[F],
    w_rs: usize,
    depth: usize,
    groups: &[(usize, usize, usize)],
    alloc: impl FnOnce(usize) -> Vec<F>,
) -> (Vec<F>, Vec<Segment>) {
    let tw = tile_width::<F>();
    // The panel starts on a cache line (the allocator only promises 16 bytes): every 64-byte
    // load and store of the transpose and the tile kernel then touches one line, not two.
    let lead = |p: *const F| (LINE - p as usize % LINE) % LINE / std::mem::size_of::<F>();
    let mut total: usize = groups.iter().map(|&(_, _, count)| count.div_ceil(tw) * depth * tw).sum();
    let mut panel: Vec<F> = alloc(total + LINE / std::mem::size_of::<F>());
    let start = lead(panel.as_ptr());
    panel.resize(start, F::ZERO);
    total += start;
    let mut segs = Vec::with_capacity(groups.len());
    let mut off = start;
    for &(out_col, _, count) in groups {
        segs.push(Segment { out_col, width: count, w_start: off, padded: true });
        off += count.div_ceil(tw) * depth * tw;
    }
    let dst = panel.as_mut_ptr();
    let mut off = start;
    for &(_, row_start, count) in groups {
        for tile in 0..count.div_ceil(tw) {
            // Rows past the group repeat its last row: their columns are never stored.
            let rows: [*const F; 32] =
                std::array::from_fn(|j| w[(row_start + (tile * tw + j.min(tw - 1)).min(count - 1)) * w_rs..].as_ptr());
            // SAFETY: the tile's `depth * tw` values lie inside the capacity reserved above,
            // and each row pointer has `depth` values behind it.
            unsafe { transpose_tile(path, &rows[..tw], depth, dst.add(off)) };
            off += depth * tw;
        }
    }
    // SAFETY: every tile wrote all of its `depth * tw` values after the `start` zeros.
    unsafe { panel.set_len(total) };
    (panel, segs)
}

/// `dst[k * rows.len() + j] = rows[j][k]` for `k < depth`: one tile of a panel, transposed in
/// 16 x 16 register blocks on AVX-512 (f32), else in cache-sized blocks. Loading whole cache
/// lines of sixteen rows at once avoids both the gather instruction (slow on some cores) and
/// the L1 set conflicts of walking many rows a power-of-two stride apart one value at a time.
///
/// # Safety
/// Each row pointer has `depth` readable values; `dst` has room for `depth * rows.len()`.
unsafe fn transpose_tile<F: Real>(path: KernelPath, rows: &[*const F], depth: usize, dst: *mut F) {
    // SAFETY: the caller upholds this function's contract: every pointer is valid for the rows and lengths it is given, and written ranges are not shared.
    unsafe {
        let tw = rows.len();
        // Sixteen values of each row at a time, so the sixteen destination rows being written stay
        // in L1.
        let scalar = |k0: usize, k1: usize| {
            for kb in (k0..k1).step_by(16) {
                for (j, &row) in rows.iter().enumerate() {
                    for kk in kb..(kb + 16).min(k1) {
                        *dst.add(kk * tw + j) = *row.add(kk);
                    }
                }
            }
        };
        #[cfg(target_arch = "x86_64")]
        if path == KernelPath::Avx512 && F::IS_F32 && tw.is_multiple_of(16) && depth >= 16 {
            // The register blocks start where the rows reach a cache line (arrays from numpy are
            // often 16 bytes off one), so no load straddles two lines; the values before and after
            // are covered by one unaligned block at each end, overlapping the aligned ones (the
            // overlap is written twice with the same values).
            let lead = (LINE - rows[0] as usize % LINE) % LINE / 4;
            let whole = lead + (depth - lead) / 16 * 16;
            let mut starts: Vec<usize> = (lead..whole).step_by(16).collect();
            if lead > 0 {
                starts.push(0);
            }
            if whole < depth {
                starts.push(depth - 16);
            }
            for half in 0..tw / 16 {
                for &kb in &starts {
                    let src: [*const f32; 16] = std::array::from_fn(|j| rows[16 * half + j].add(kb) as *const f32);
                    // SAFETY: `F` is f32 here (`Real` is sealed); kb + 16 <= depth.
                    x86::transpose16(&src, (dst as *mut f32).add(kb * tw + 16 * half), tw);
                }
            }
            return;
        }
        let _ = path;
        scalar(0, depth);
    }
}

/// Packs column slices of a row-major matrix `w` (`depth` rows, row stride `w_rs`) for
/// [`axpy_cols`]: for each `(out_col, col_start, count)` group, tiles of `T` columns copied to
/// `[depth][T]` (zero-padded), contiguous. Returns the panel and the segments that address it
/// (`w_rs = T`, `tile_step = depth * T`).
pub(crate) fn pack_cols<F: Real>(
    w: &[F],
    w_rs: usize,
    depth: usize,
    groups: &[(usize, usize, usize)],
) -> (Vec<F>, Vec<Segment>) {
    let tw = tile_width::<F>();
    let mut segs = Vec::with_capacity(groups.len());
    let total: usize = groups.iter().map(|&(_, _, count)| count.div_ceil(tw) * depth * tw).sum();
    let mut panel: Vec<F> = crate::scratch::take(total + LINE / std::mem::size_of::<F>());
    // Starts on a cache line, as in `pack_rows`.
    panel.resize((LINE - panel.as_ptr() as usize % LINE) % LINE / std::mem::size_of::<F>(), F::ZERO);
    for &(out_col, col_start, count) in groups {
        segs.push(Segment { out_col, width: count, w_start: panel.len(), padded: true });
        for tile in 0..count.div_ceil(tw) {
            let c0 = col_start + tile * tw;
            let cols = (count - tile * tw).min(tw);
            for kk in 0..depth {
                panel.extend_from_slice(&w[kk * w_rs + c0..][..cols]);
                panel.resize(panel.len() + tw - cols, F::ZERO);
            }
        }
    }
    (panel, segs)
}

/// `out[r, s.out_col + j] (+)= Σ_k lhs[r, k] · w[s.w_start + (j / T) * tile_step + k * w_rs + j % T]`
/// for every segment `s`, `r < rows`, `k < depth`, where `T` is the tile width (128 bytes):
/// with `tile_step = T` that is a plain column slice of a row-major matrix; a [`pack_rows`]
/// panel has `w_rs = T` and `tile_step = depth * T`.
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
    tile_step: usize,
    segments: &[Segment],
    out: *mut F,
    out_rs: usize,
    accumulate: bool,
) {
    // SAFETY: the caller upholds this function's contract: every pointer is valid for the rows and lengths it is given, and written ranges are not shared.
    unsafe {
        let tw = tile_width::<F>();
        // Column tiles outermost: a tile's weights (depth x 128 bytes) stay in L2 while every
        // row block passes over them, so the weights are read from memory once per call.
        for seg in segments {
            for tile in 0..seg.width.div_ceil(tw) {
                let cols = (seg.width - tile * tw).min(tw);
                let wt = w.add(seg.w_start + tile * tile_step);
                let mut r0 = 0;
                while r0 < rows {
                    let nr = (rows - r0).min(ROW_BLOCK);
                    let lhs_rows: [*const F; ROW_BLOCK] =
                        std::array::from_fn(|r| lhs.add((r0 + r.min(nr - 1)) * lhs_rs));
                    let out_rows: [*mut F; ROW_BLOCK] =
                        std::array::from_fn(|r| out.add((r0 + r.min(nr - 1)) * out_rs + seg.out_col + tile * tw));
                    if cols == tw {
                        // Full tile: the kernel keeps the accumulators in registers, loading and
                        // storing the output rows directly.
                        tile_product(path, false, nr, depth, &lhs_rows, wt, w_rs, &out_rows, accumulate);
                    } else {
                        // A partial tile goes through a buffer of whole tiles whose first `cols`
                        // columns are then stored: a padded panel's tile is read whole by the same
                        // kernel; weights read in place would run past the slice, so a plain loop.
                        let mut acc = [[F::ZERO; 32]; ROW_BLOCK];
                        if accumulate {
                            for (r, row) in acc.iter_mut().enumerate().take(nr) {
                                std::ptr::copy_nonoverlapping(out_rows[r], row.as_mut_ptr(), cols);
                            }
                        }
                        if seg.padded {
                            let acc_rows: [*mut F; ROW_BLOCK] = std::array::from_fn(|r| acc[r].as_mut_ptr());
                            tile_product(path, false, nr, depth, &lhs_rows, wt, w_rs, &acc_rows, accumulate);
                        } else {
                            for (r, row) in acc.iter_mut().enumerate().take(nr) {
                                for kk in 0..depth {
                                    let hv = *lhs_rows[r].add(kk);
                                    for (j, a) in row.iter_mut().enumerate().take(cols) {
                                        *a += hv * *wt.add(kk * w_rs + j);
                                    }
                                }
                            }
                        }
                        for (r, row) in acc.iter().enumerate().take(nr) {
                            std::ptr::copy_nonoverlapping(row.as_ptr(), out_rows[r], cols);
                        }
                    }
                    r0 += nr;
                }
            }
        }
    }
}

/// `out[r, c] (+)= Σ_k xt[k, r] · w[c, k]` for `r < rows` and weight rows `c` in each range
/// `c0..c1` of `ranges`: the
/// transposed product `outᵀ = w · xᵀ` on the tile kernel, with the weight rows as its
/// broadcast operand, read in place (each value once from memory), and the few input rows as
/// its panel (`xt`, the single segment [`pack_rows`] makes of them, in L2). It spares a call
/// with few input rows the pass that packs the weights, which costs more than the product.
/// Eight weight rows at a time meet every input tile while they sit in L1; each block of
/// sixteen rows of `outᵀ` is then transposed into `out`. A last tile at most half full runs on
/// a half-width kernel, so the rows are padded to a multiple of half a tile (16 for f32).
///
/// # Safety
/// `xt` is a [`pack_rows`] panel of `rows` rows of `depth` values starting at `xt`; `w` has
/// the ranges' rows of `depth` values `w_rs` apart; `out` holds `rows` rows `out_rs` apart
/// with the ranges' columns.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn weight_rows_product<F: Real>(
    path: KernelPath,
    rows: usize,
    depth: usize,
    xt: *const F,
    w: *const F,
    w_rs: usize,
    ranges: &[(usize, usize)],
    out: *mut F,
    out_rs: usize,
    accumulate: bool,
) {
    // SAFETY: the caller upholds this function's contract: every pointer is valid for the rows and lengths it is given, and written ranges are not shared.
    unsafe {
        const BLOCK: usize = 2 * ROW_BLOCK;
        let tw = tile_width::<F>();
        let tiles = rows.div_ceil(tw);
        let stride = tiles * tw;
        let mut block = vec![F::ZERO; BLOCK * stride];
        for &(mut c, c1) in ranges {
            while c < c1 {
                let nc = (c1 - c).min(BLOCK);
                for half in (0..nc).step_by(ROW_BLOCK) {
                    let nr = (nc - half).min(ROW_BLOCK);
                    let w_rows: [*const F; ROW_BLOCK] =
                        std::array::from_fn(|r| w.add((c + half + r.min(nr - 1)) * w_rs));
                    for tile in 0..tiles {
                        let o: [*mut F; ROW_BLOCK] =
                            std::array::from_fn(|r| block.as_mut_ptr().add((half + r) * stride + tile * tw));
                        // A last tile at most half full runs on the half-width kernel.
                        let narrow = rows - tile * tw <= tw / 2;
                        tile_product(path, narrow, nr, depth, &w_rows, xt.add(tile * depth * tw), tw, &o, false);
                    }
                }
                store_transposed(path, &block, stride, nc, rows, out.add(c), out_rs, accumulate);
                c += nc;
            }
        }
    }
}

/// `out[r * out_rs + j] (+)= block[j * stride + r]` for `j < cols <= 16`, `r < rows`: sixteen
/// rows at a time through a 16 x 16 register transpose (f32, AVX-512), else one by one.
#[allow(clippy::too_many_arguments)]
unsafe fn store_transposed<F: Real>(
    path: KernelPath,
    block: &[F],
    stride: usize,
    cols: usize,
    rows: usize,
    out: *mut F,
    out_rs: usize,
    accumulate: bool,
) {
    // SAFETY: the caller upholds this function's contract: every pointer is valid for the rows and lengths it is given, and written ranges are not shared.
    unsafe {
        let put = |d: *mut F, v: F| *d = if accumulate { *d + v } else { v };
        let mut r0 = 0;
        #[cfg(target_arch = "x86_64")]
        if path == KernelPath::Avx512 && F::IS_F32 {
            let mut t = [0f32; 256];
            while r0 < rows {
                // Block rows past `cols` hold stale sums: they are transposed but never stored.
                let src: [*const f32; 16] = std::array::from_fn(|j| block.as_ptr().add(j * stride + r0) as *const f32);
                x86::transpose16(&src, t.as_mut_ptr(), 16);
                for r in 0..(rows - r0).min(16) {
                    let d = out.add((r0 + r) * out_rs);
                    for (j, &v) in t[r * 16..][..cols].iter().enumerate() {
                        // SAFETY: `F` is f32 on this path (`Real` is sealed).
                        put(d.add(j), *(&v as *const f32 as *const F));
                    }
                }
                r0 += 16;
            }
            return;
        }
        let _ = path;
        for r in r0..rows {
            for j in 0..cols {
                put(out.add(r * out_rs + j), block[j * stride + r]);
            }
        }
    }
}

/// `out[r][..T] (+)= Σ_k lhs[r][k] · w[k * w_rs..][..T]` for `nr` rows (a full tile of `T`
/// columns at each `out[r]`, or its first half when `half`), on the fastest path.
#[allow(clippy::too_many_arguments)]
#[inline]
unsafe fn tile_product<F: Real>(
    path: KernelPath,
    half: bool,
    nr: usize,
    k: usize,
    lhs: &[*const F; ROW_BLOCK],
    w: *const F,
    w_rs: usize,
    out: &[*mut F; ROW_BLOCK],
    accumulate: bool,
) {
    // SAFETY: the caller upholds this function's contract: every pointer is valid for the rows and lengths it is given, and written ranges are not shared.
    unsafe {
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
                    let (l, w, o) = (lhs.map(|p| p as *const f32), w as *const f32, out.map(|p| p as *mut f32));
                    match (wide, half) {
                        (true, false) => x86::f32_avx512(nr, k, &l, w, w_rs, &o, accumulate),
                        (true, true) => x86::f32_avx512_half(nr, k, &l, w, w_rs, &o, accumulate),
                        (false, false) => x86::f32_avx2(nr, k, &l, w, w_rs, &o, accumulate),
                        (false, true) => x86::f32_avx2_half(nr, k, &l, w, w_rs, &o, accumulate),
                    }
                } else {
                    let (l, w, o) = (lhs.map(|p| p as *const f64), w as *const f64, out.map(|p| p as *mut f64));
                    match (wide, half) {
                        (true, false) => x86::f64_avx512(nr, k, &l, w, w_rs, &o, accumulate),
                        (true, true) => x86::f64_avx512_half(nr, k, &l, w, w_rs, &o, accumulate),
                        (false, false) => x86::f64_avx2(nr, k, &l, w, w_rs, &o, accumulate),
                        (false, true) => x86::f64_avx2_half(nr, k, &l, w, w_rs, &o, accumulate),
                    }
                }
                return;
            }
        }
        let _ = path;
        let tw = if half { tile_width::<F>() / 2 } else { tile_width::<F>() };
        for (&l, &o) in lhs.iter().zip(out).take(nr) {
            let mut acc = [F::ZERO; 32];
            if accumulate {
                std::ptr::copy_nonoverlapping(o, acc.as_mut_ptr(), tw);
            }
            for kk in 0..k {
                let hv = *l.add(kk);
                for (j, a) in acc.iter_mut().enumerate().take(tw) {
                    *a += hv * *w.add(kk * w_rs + j);
                }
            }
            std::ptr::copy_nonoverlapping(acc.as_ptr(), o, tw);
        }
    }
}

/// Register-blocked tile kernels: `NV` vectors per row (a 128-byte tile, or 64 bytes for the
/// half-width ones), `R` rows, and the k loop unrolled `U` times with separate accumulators so
/// FMA latency is hidden even at batch 1.
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
            pub(in crate::recurrent) unsafe fn $entry(
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
            pub(in crate::recurrent) unsafe fn $entry(
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
    pub(super) use dot_avx2_f32::run as dot_f32_avx2;
    pub(super) use dot_avx2_f64::run as dot_f64_avx2;
    pub(super) use dot_avx512_f32::run as dot_f32_avx512;
    pub(super) use dot_avx512_f64::run as dot_f64_avx512;

    /// How far ahead (in f32 values) [`transpose16`] prefetches each source row.
    const PREFETCH_AHEAD: usize = 64;

    /// `dst[k * dst_rs + j] = src[j][k]` for a 16 x 16 block: four rounds of shuffles
    /// (32-bit pairs, 64-bit pairs, then 128-bit lanes twice).
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn transpose16(src: &[*const f32; 16], dst: *mut f32, dst_rs: usize) {
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

    pub(super) use avx2_f32::run as f32_avx2;
    pub(super) use avx2_f32_half::run as f32_avx2_half;
    pub(super) use avx2_f64::run as f64_avx2;
    pub(super) use avx2_f64_half::run as f64_avx2_half;
    pub(super) use avx512_f32::run as f32_avx512;
    pub(super) use avx512_f32_half::run as f32_avx512_half;
    pub(super) use avx512_f64::run as f64_avx512;
    pub(super) use avx512_f64_half::run as f64_avx512_half;
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
            let segs = [
                Segment { out_col: 3, width: 40, w_start: 0, padded: false },
                Segment { out_col: 50, width: 50, w_start: 43, padded: false },
            ];
            let want = |r: usize, wcol: usize| -> f64 {
                (0..depth).map(|kk| lhs[r * depth + kk].to_f64() * w[wcol * depth + kk].to_f64()).sum()
            };
            for path in PATHS.into_iter().filter(|p| p.supported()) {
                for accumulate in [false, true] {
                    for mode in 0..3 {
                        let axpy = mode > 0;
                        let out_rs = 104;
                        let mut out = vec![F::ONE; rows * out_rs];
                        // SAFETY: the caller upholds this function's `# Safety` contract (see its docs).
                        unsafe {
                            if mode == 2 {
                                // Weight rows = columns of the transposed view, packed.
                                let groups: Vec<(usize, usize, usize)> =
                                    segs.iter().map(|g| (g.out_col, g.w_start, g.width)).collect();
                                let (panel, psegs) = pack_rows(path, &w, depth, depth, &groups);
                                let tw = tile_width::<F>();
                                axpy_cols(
                                    path,
                                    rows,
                                    depth,
                                    lhs.as_ptr(),
                                    depth,
                                    panel.as_ptr(),
                                    tw,
                                    depth * tw,
                                    &psegs,
                                    out.as_mut_ptr(),
                                    out_rs,
                                    accumulate,
                                );
                            } else if axpy {
                                axpy_cols(
                                    path,
                                    rows,
                                    depth,
                                    lhs.as_ptr(),
                                    depth,
                                    wt.as_ptr(),
                                    ncols + 3,
                                    tile_width::<F>(),
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

    /// The transposed product against a naive sum: row counts around the tile width, the half
    /// tile and the 16-row transpose (partial blocks of each), weight-row ranges that start inside a block
    /// and end on a partial one, depths off the vector width, overwrite and accumulate; columns
    /// outside the range and rows past `rows` are untouched.
    fn check_weight_rows<F: Real>(tol: f64) {
        let tw = tile_width::<F>();
        for &(rows, depth, (c0, c1)) in &[
            (8usize, 37usize, (0usize, 21usize)),
            (tw / 2, 20, (1, 52)),
            (tw, 64, (3, 40)),
            (tw + 5, 19, (5, 6)),
            (tw + tw / 2 + 1, 33, (0, 17)),
            (3 * tw - 1, 130, (16, 49)),
        ] {
            let (g, out_rs) = (52, 55);
            let w: Vec<F> = (0..g * depth).map(|i| val(i, 113)).collect();
            let x: Vec<F> = (0..rows * depth).map(|i| val(i * 13 + 1, 97)).collect();
            for path in PATHS.into_iter().filter(|p| p.supported()) {
                let (xt, segs) = pack_rows(path, &x, depth, depth, &[(0, 0, rows)]);
                for accumulate in [false, true] {
                    let mut out = vec![F::ONE; (rows + 1) * out_rs];
                    // SAFETY: the caller upholds this function's `# Safety` contract (see its docs).
                    unsafe {
                        weight_rows_product(
                            path,
                            rows,
                            depth,
                            xt.as_ptr().add(segs[0].w_start),
                            w.as_ptr(),
                            depth,
                            &[(c0, c1)],
                            out.as_mut_ptr(),
                            out_rs,
                            accumulate,
                        )
                    };
                    for r in 0..=rows {
                        for c in 0..out_rs {
                            let inside = r < rows && (c0..c1).contains(&c);
                            let dot: f64 = (0..depth)
                                .map(|k| x[r.min(rows - 1) * depth + k].to_f64() * w[c.min(g - 1) * depth + k].to_f64())
                                .sum();
                            let expect = if !inside { 1.0 } else { dot + if accumulate { 1.0 } else { 0.0 } };
                            let got = out[r * out_rs + c].to_f64();
                            assert!(
                                (got - expect).abs() < tol,
                                "{path:?} rows={rows} depth={depth} r{r} c{c}: {got} vs {expect}"
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn weight_rows_product_matches_naive_f32() {
        check_weight_rows::<f32>(1e-4);
    }

    #[test]
    fn weight_rows_product_matches_naive_f64() {
        check_weight_rows::<f64>(1e-12);
    }

    #[test]
    fn panel_transpose_matches_naive_at_every_alignment() {
        for path in PATHS.into_iter().filter(|p| p.supported()) {
            for depth in [1usize, 15, 16, 17, 31, 33, 100] {
                for shift in 0..16 {
                    let w: Vec<f32> = (0..shift + 32 * depth).map(|i| val(i, 101)).collect();
                    let src = &w[shift..];
                    let rows: [*const f32; 32] = std::array::from_fn(|j| src[j * depth..].as_ptr());
                    let mut out = vec![f32::NAN; 32 * depth];
                    // SAFETY: 32 rows of `depth` values; `out` holds depth * 32.
                    unsafe { transpose_tile(path, &rows, depth, out.as_mut_ptr()) };
                    for kk in 0..depth {
                        for j in 0..32 {
                            assert_eq!(out[kk * 32 + j], src[j * depth + kk], "{path:?} depth {depth} shift {shift}");
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

#[cfg(test)]
mod speed {
    use super::*;
    use std::time::Instant;

    /// `cargo test --release -p lstm-core speed -- --ignored --nocapture`: single-thread GFLOP/s.
    #[test]
    #[ignore]
    fn report_step_kernel_speed() {
        let path = KernelPath::detect();
        for &(rows, depth, ncols) in &[
            (1usize, 512usize, 1024usize),
            (4, 512, 1024),
            (16, 512, 1024),
            (32, 1024, 2048),
            (32, 256, 512),
            (8, 256, 128),
            (16, 256, 128),
            (8, 64, 64),
            (1, 256, 128),
        ] {
            let w: Vec<f32> = (0..ncols * depth).map(|i| (i % 7) as f32 * 0.01).collect();
            let lhs: Vec<f32> = (0..rows * depth).map(|i| (i % 5) as f32 * 0.01).collect();
            let mut out = vec![0f32; rows * ncols];
            let segs = [Segment { out_col: 0, width: ncols, w_start: 0, padded: false }];
            let reps = 200;
            let t = Instant::now();
            for _ in 0..reps {
                // SAFETY: the caller upholds this function's `# Safety` contract (see its docs).
                unsafe {
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
                        ncols,
                        true,
                    )
                };
            }
            let dot = t.elapsed().as_secs_f64() / reps as f64;
            let t = Instant::now();
            for _ in 0..reps {
                // SAFETY: the caller upholds this function's `# Safety` contract (see its docs).
                unsafe {
                    axpy_cols(
                        path,
                        rows,
                        depth,
                        lhs.as_ptr(),
                        depth,
                        w.as_ptr(),
                        ncols,
                        32,
                        &segs,
                        out.as_mut_ptr(),
                        ncols,
                        true,
                    )
                };
            }
            let axpy_strided = t.elapsed().as_secs_f64() / reps as f64;
            let (panel, psegs) = pack_rows(path, &w, depth, depth, &[(0, 0, ncols)]);
            let t = Instant::now();
            for _ in 0..reps {
                // SAFETY: the caller upholds this function's `# Safety` contract (see its docs).
                unsafe {
                    axpy_cols(
                        path,
                        rows,
                        depth,
                        lhs.as_ptr(),
                        depth,
                        panel.as_ptr(),
                        32,
                        depth * 32,
                        &psegs,
                        out.as_mut_ptr(),
                        ncols,
                        true,
                    )
                };
            }
            let axpy = t.elapsed().as_secs_f64() / reps as f64;
            let fl = 2.0 * (rows * depth * ncols) as f64;
            let t = Instant::now();
            for _ in 0..reps {
                std::hint::black_box(pack_rows(path, &w, depth, depth, &[(0, 0, ncols)]));
            }
            let pack = t.elapsed().as_secs_f64() / reps as f64;
            println!("rows {rows} depth {depth} cols {ncols}: dot {:.1} GF/s, axpy strided {:.1} GF/s, packed {:.1} GF/s, pack {:.1} GB/s", fl / dot / 1e9, fl / axpy_strided / 1e9, fl / axpy / 1e9, (ncols * depth * 4) as f64 / pack / 1e9);
        }
    }
}
