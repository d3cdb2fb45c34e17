//! The input projection `X · Wᵀ` of every step at once, before the time loop: packed
//! panels and the tile kernel, the weights streamed in place for few rows, or the GEMM library.

use super::*;

/// Up to this many rows the input projection runs on packed panels and the tile kernel (which
/// reaches the FMA peak) rather than the GEMM library, whose per-call packing and edge handling
/// cost it half its speed at a few hundred rows.
pub(super) const PANEL_PROJECT_MAX_ROWS: usize = 1024;
/// Bytes of input rows a projection chunk holds (they stay in L2 while the panel passes).
pub(super) const PROJECT_CHUNK_BYTES: usize = 512 << 10;
/// The most input rows the projection streams W in place for (`weight_rows_product`): the
/// input rows' panel then stays in L2.
pub(super) const STREAM_MAX_ROWS: usize = 256;

/// Whether a product of `rows` input rows with weights used once is faster with the weights
/// read in place and the rows packed (`weight_rows_product`) than with the weights packed into
/// panels. The first pads the rows to a multiple of `tile` lanes; the second costs a pass over
/// the weights, measured (Zen 4, 2 threads) at the work of about 8 more rows while they stay
/// in the last-level cache and 24 once they spill (past 8 MiB). With half tiles of 16 lanes
/// (f32) that means every count of 8-256 rows for weights past 8 MiB, and counts within 7 of a
/// multiple of 16 below that; with the 8 lanes of f64, every count.
pub(super) fn streams_weights(rows: usize, w_bytes: usize, tile: usize) -> bool {
    let pack_rows_cost = if w_bytes > 8 << 20 { 24 } else { 8 };
    (8..=STREAM_MAX_ROWS).contains(&rows) && rows.next_multiple_of(tile) - rows < pack_rows_cost
}

/// `out[r, 4H] (+)= lhs[r, I] · W^T` for the rows `r` of `runs` (`(first, count)`); rows
/// outside the runs are not written. Several runs (a variable-length batch) become one product
/// over a compacted copy, so the weights are swept once rather than once per run.
///
/// # Safety
/// `lhs` and `out` hold every row of `runs` (`i` and `g` values each), `w` `g × i`.
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn project_inputs<F: Real>(
    path: KernelPath,
    threads: usize,
    runs: &[(usize, usize)],
    i: usize,
    g: usize,
    lhs: &[F],
    w: &[F],
    packed: Option<&PackedPanel>,
    out: &mut [F],
    accumulate: bool,
) -> Result<()> {
    // SAFETY: the caller upholds this function's `# Safety` contract (see its docs).
    unsafe {
        let rows: usize = runs.iter().map(|r| r.1).sum();
        if runs.len() <= 1 && runs.first().is_none_or(|r| r.0 == 0) {
            project_rows(path, threads, rows, i, g, lhs, w, packed, out, accumulate);
            return Ok(());
        }
        let lhs_c = compact_rows(lhs, i, runs)?;
        let mut out_c = if accumulate { compact_rows(out, g, runs)? } else { zeroed::<F>("the gates", rows * g)? };
        project_rows(path, threads, rows, i, g, &lhs_c, w, packed, &mut out_c, accumulate);
        let mut src = out_c.chunks_exact(g);
        for &(first, count) in runs {
            for row in out[first * g..(first + count) * g].chunks_exact_mut(g) {
                row.copy_from_slice(src.next().expect("one projected row per running row"));
            }
        }
        Ok(())
    }
}

/// `out[rows, 4H] (+)= lhs[rows, I] · W^T`, split over the threads by columns: W packed once
/// (`packed`) for any row count; the GEMM library for more than 1024 rows; for 8 to 256 rows
/// that nearly fill whole half tiles, the rows packed and W read in place (`streams_weights`); else
/// W packed into panels per call and the tile kernel up to 1024 rows; the dot-form kernel on W
/// in place for a handful of rows, or up to 64 when W is too big to be worth packing.
///
/// # Safety
/// `lhs` holds `rows × i` values, `w` `g × i`, `out` `rows × g`.
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn project_rows<F: Real>(
    path: KernelPath,
    threads: usize,
    rows: usize,
    i: usize,
    g: usize,
    lhs: &[F],
    w: &[F],
    packed: Option<&PackedPanel>,
    out: &mut [F],
    accumulate: bool,
) {
    let out_ptr = Ptr::of(out);
    let simd = matches!(path, KernelPath::Avx512 | KernelPath::Avx2);
    let chunk = ((PROJECT_CHUNK_BYTES / (i.max(1) * std::mem::size_of::<F>())) / 8 * 8).max(8);
    // A float32 panel serves float32 calls (`from_f32_ptr` is `None` for f64).
    if let Some(pk) = packed.filter(|pk| rows > 0 && F::from_f32_ptr(pk.as_ptr()).is_some()) {
        // W packed once: each member sweeps the rows over its hidden units' tiles in place.
        let h = g / 4;
        let parts = threads.min(h.div_ceil(PANEL_UNITS)).max(1);
        broadcast(parts, |m| {
            let (u0, u1) = split_range(h, parts, m, PANEL_UNITS);
            if let Some(panel) = F::from_f32_ptr(pk.as_ptr()).filter(|_| u1 > u0) {
                let segs = pk.segments(u0, u1);
                // SAFETY: each part writes its own units' columns.
                unsafe { sweep_panel(path, rows, chunk, i, g, lhs, panel, &segs, out_ptr, accumulate) };
            }
        });
        return;
    }
    if rows > PANEL_PROJECT_MAX_ROWS || (rows > 64 && !simd) {
        // SAFETY: `lhs` is `rows × i`, `w` is `g × i` and `out` is `rows × g` (this function's
        // contract), row-major with the strides given.
        unsafe { gemm(rows, g, i, out_ptr.at(0), g, 1, accumulate, lhs.as_ptr(), i, 1, w.as_ptr(), 1, i, threads) };
        return;
    }
    if simd && streams_weights(rows, std::mem::size_of_val(w), tile_width::<F>() / 2) {
        // Few rows: they are packed, and W is read in place once (see `weight_rows_product`).
        let (xt, segs) = pack_rows(path, lhs, i, i, &[(0, 0, rows)]);
        let xt_tiles = &xt[segs[0].w_start..];
        let parts = threads.min(g.div_ceil(64)).max(1);
        broadcast(parts, |m| {
            let cols = split_range(g, parts, m, 16);
            // SAFETY: each part writes its own columns of `out`.
            unsafe {
                weight_rows_product(
                    path,
                    rows,
                    i,
                    xt_tiles.as_ptr(),
                    w.as_ptr(),
                    i,
                    &[cols],
                    out_ptr.at(0),
                    g,
                    accumulate,
                )
            };
        });
        crate::scratch::recycle(xt);
        return;
    }
    if simd && (rows > 64 || (rows >= 8 && std::mem::size_of_val(w) <= PACK_MAX_BYTES)) {
        // Each member packs its own columns of W into a panel and sweeps every row over it.
        let tw = tile_width::<F>();
        let parts = threads.min(g.div_ceil(tw)).max(1);
        broadcast(parts, |m| {
            let (c0, c1) = split_range(g, parts, m, tw);
            if c1 > c0 {
                let (panel, segs) = pack_rows(path, w, i, i, &[(c0, c0, c1 - c0)]);
                // SAFETY: each part writes its own columns of `out`.
                unsafe { sweep_panel(path, rows, chunk, i, g, lhs, panel.as_ptr(), &segs, out_ptr, accumulate) };
                crate::scratch::recycle(panel);
            }
        });
        return;
    }
    let parts = threads.min(g.div_ceil(64)).max(1);
    broadcast(parts, |m| {
        let (c0, c1) = split_range(g, parts, m, 16);
        if c1 > c0 {
            let seg = [Segment { out_col: c0, width: c1 - c0, w_start: c0, padded: false }];
            // SAFETY: each part writes its own columns of `out`.
            unsafe { dot_rows(path, rows, i, lhs.as_ptr(), i, w.as_ptr(), i, &seg, out_ptr.at(0), g, accumulate) };
        }
    });
}

/// `out[r] (+)= lhs[r] · panel` over `segs` for `rows` rows, in chunks of `chunk` rows (their
/// inputs stay in L2 while the panel's tiles pass).
///
/// # Safety
/// As for [`axpy_cols`]: `lhs` and `out` hold `rows` rows (`i` and `g` values each), `panel` is
/// a packed panel the segments address.
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn sweep_panel<F: Real>(
    path: KernelPath,
    rows: usize,
    chunk: usize,
    i: usize,
    g: usize,
    lhs: &[F],
    panel: *const F,
    segs: &[Segment],
    out: Ptr<F>,
    accumulate: bool,
) {
    // SAFETY: the caller upholds this function's contract: every pointer is valid for the rows and lengths it is given, and written ranges are not shared.
    unsafe {
        let tw = tile_width::<F>();
        for r0 in (0..rows).step_by(chunk) {
            let n = (rows - r0).min(chunk);
            axpy_cols(path, n, i, lhs.as_ptr().add(r0 * i), i, panel, tw, i * tw, segs, out.at(r0 * g), g, accumulate);
        }
    }
}

/// The rows of a matrix `width` values wide that `runs` names, as one block (borrowed as is
/// when there are no runs: every row counts).
pub(super) fn running_rows<'a, F: Real>(
    m: &'a [F],
    width: usize,
    runs: Option<&[(usize, usize)]>,
) -> Result<Cow<'a, [F]>> {
    Ok(match runs {
        Some(r) => Cow::Owned(compact_rows(m, width, r)?),
        None => Cow::Borrowed(m),
    })
}

/// The rows `runs` (`(first, count)`) of a matrix `width` values wide, copied into one block.
pub(super) fn compact_rows<F: Real>(m: &[F], width: usize, runs: &[(usize, usize)]) -> Result<Vec<F>> {
    let mut out = with_capacity("the running rows", runs.iter().map(|r| r.1).sum::<usize>() * width)?;
    for &(first, count) in runs {
        out.extend_from_slice(&m[first * width..(first + count) * width]);
    }
    Ok(out)
}

/// Copies the input rows each step reads into step order (zeros where a row has ended).
pub(super) fn gather_steps<F: Real>(sched: &Schedule, x: &[F], i: usize, reverse: bool) -> Result<Vec<F>> {
    let b = sched.batch;
    let mut xs = zeroed::<F>("X in step order", sched.max_len() * b * i)?;
    // A zero-width input has nothing to move.
    for s in (0..sched.max_len()).filter(|_| i > 0) {
        for row in 0..sched.active[s] {
            let t = sched.time_of(row, s, reverse);
            xs[(s * b + row) * i..][..i].copy_from_slice(&x[(t * b + sched.perm[row]) * i..][..i]);
        }
    }
    Ok(xs)
}
