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
use crate::simd::ROW_BLOCK;

/// Bytes per column tile of [`axpy_cols`] (two AVX-512 registers, four AVX2 registers).
const TILE_BYTES: usize = 128;
/// Cache line bytes: packed panels start on one.
const LINE: usize = 64;

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
        if let Some(dot) = F::kernels(path).dot {
            dot(nr, nj, depth, lhs, w, sums);
            return;
        }
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
        if let Some(transpose16) = F::kernels(path).transpose16.filter(|_| tw.is_multiple_of(16) && depth >= 16) {
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
                    let src: [*const F; 16] = std::array::from_fn(|j| rows[16 * half + j].add(kb));
                    // kb + 16 <= depth.
                    transpose16(&src, dst.add(kb * tw + 16 * half), tw);
                }
            }
            return;
        }
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
        if let Some(transpose16) = F::kernels(path).transpose16 {
            let mut t = [F::ZERO; 256];
            while r0 < rows {
                // Block rows past `cols` hold stale sums: they are transposed but never stored.
                let src: [*const F; 16] = std::array::from_fn(|j| block.as_ptr().add(j * stride + r0));
                transpose16(&src, t.as_mut_ptr(), 16);
                for r in 0..(rows - r0).min(16) {
                    let d = out.add((r0 + r) * out_rs);
                    for (j, &v) in t[r * 16..][..cols].iter().enumerate() {
                        put(d.add(j), v);
                    }
                }
                r0 += 16;
            }
            return;
        }
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
        let table = F::kernels(path);
        if let Some(kernel) = if half { table.tile_half } else { table.tile } {
            kernel(nr, k, lhs, w, w_rs, out, accumulate);
            return;
        }
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

#[cfg(target_arch = "x86_64")]
pub(crate) mod x86;

#[cfg(test)]
mod tests;

#[cfg(test)]
mod speed;
