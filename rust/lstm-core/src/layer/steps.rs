//! The forward time loop of one direction: where the hidden states live, how the per-step
//! recurrent product runs, and the loop itself.

use super::*;

/// Where one direction's hidden states live: state 0 (h0) in its own block, state `j >= 1`
/// (after step `j - 1`) in a block `step` elements after the previous one, rows `rs` apart;
/// either the tape's step-major buffer or, for dense inference, Y itself.
#[derive(Clone, Copy)]
pub(super) struct HStates<F> {
    pub(super) h0: Ptr<F>,
    pub(super) first: Ptr<F>,
    pub(super) step: isize,
    pub(super) rs: usize,
    pub(super) p: usize,
}

impl<F> HStates<F> {
    /// The block of state `j` and its row stride.
    ///
    /// # Safety
    /// `j` must be at most the number of steps the buffers were made for.
    pub(super) unsafe fn at(&self, j: usize) -> (*mut F, usize) {
        // SAFETY: the caller keeps the offset (and length) inside the allocation, as this function requires.
        unsafe {
            if j == 0 {
                (self.h0.0, self.p)
            } else {
                (self.first.0.offset((j as isize - 1) * self.step), self.rs)
            }
        }
    }

    /// Row `row` of state `j`.
    ///
    /// # Safety
    /// As for [`HStates::at`], and no one writes the row while the slice is in use.
    pub(super) unsafe fn row<'a>(&self, j: usize, row: usize) -> &'a [F] {
        // SAFETY: the caller upholds this function's `# Safety` contract (see its docs).
        unsafe {
            let (blk, rs) = self.at(j);
            std::slice::from_raw_parts(blk.add(row * rs), self.p)
        }
    }
}

impl<F: Real> HStates<F> {
    /// Where direction `d` (of `nd`) keeps its states: `h0` in `hs`, the rest straight in `y`
    /// (`[T, B, nd*P]`) for `direct` inference over full-length rows (step `s` is time `s`, or
    /// `T-1-s` in reverse), else in `hs` after `h0` (`hs` then holds `S+1` blocks of `B*P`).
    pub(super) fn place(
        direct: bool,
        reverse: bool,
        (d, nd): (usize, usize),
        sched: &Schedule,
        p: usize,
        hs: &mut [F],
        y: Ptr<F>,
    ) -> Self {
        let (t_len, b) = (sched.steps, sched.batch);
        if direct {
            let (first, step) = if reverse { ((t_len - 1) * b * nd + d, -1) } else { (d, 1) };
            HStates {
                h0: Ptr::of(hs),
                // SAFETY: `first * p` is the offset of a row of Y.
                first: Ptr(unsafe { y.at(first * p) }),
                step: step * (b * nd * p) as isize,
                rs: nd * p,
                p,
            }
        } else {
            let h = Ptr::of(hs);
            // SAFETY: the buffer holds s_len + 1 blocks of b*p.
            HStates { h0: h, first: Ptr(unsafe { h.at(b * p) }), step: (b * p) as isize, rs: p, p }
        }
    }
}

/// Copies direction `d`'s initial states (`h0` `[D, B, P]`, `c0` `[D, B, H]`, in the caller's
/// row order) into the first rows of `hs` and `c`, in step order.
pub(super) fn load_initial<F: Real>(
    sched: &Schedule,
    d: usize,
    (h0, c0): (Option<&[F]>, Option<&[F]>),
    (p, h): (usize, usize),
    hs: &mut [F],
    c: &mut [F],
) {
    let b = sched.batch;
    for (row, &orig) in sched.perm.iter().enumerate() {
        if let Some(h0) = h0 {
            hs[row * p..(row + 1) * p].copy_from_slice(&h0[(d * b + orig) * p..][..p]);
        }
        if let Some(c0) = c0 {
            c[row * h..(row + 1) * h].copy_from_slice(&c0[(d * b + orig) * h..][..h]);
        }
    }
}

/// Copies steps `steps` of direction `d` (of `nd`) from the step-major states `hs` (`h0`
/// first, then a block of `B*P` per step) into their rows of Y (`[T, B, nd*P]`).
///
/// # Safety
/// `y` holds Y; no one else writes these steps' rows of it meanwhile.
pub(super) unsafe fn copy_steps_to_y<F: Real>(
    sched: &Schedule,
    steps: std::ops::Range<usize>,
    (reverse, d, nd): (bool, usize, usize),
    p: usize,
    hs: &[F],
    y: Ptr<F>,
) {
    let b = sched.batch;
    for s in steps {
        for row in 0..sched.active[s] {
            let t = sched.time_of(row, s, reverse);
            // SAFETY: the caller owns these rows of Y; (t, row) pairs are distinct across steps.
            let dst = unsafe { y.slice(((t * b + sched.perm[row]) * nd + d) * p, p) };
            dst.copy_from_slice(&hs[((s + 1) * b + row) * p..][..p]);
        }
    }
}

/// Copies direction `d`'s last hidden and cell state of each row (after its `len` steps, or the
/// initial state) into `hn` (`[D, B, P]`) and `cn` (`[D, B, H]`), in the caller's row order.
pub(super) fn store_last_states<F: Real>(
    sched: &Schedule,
    d: usize,
    (p, h): (usize, usize),
    states: &HStates<F>,
    (c, c_ring): (&[F], bool),
    hn: &mut [F],
    cn: &mut [F],
) {
    let b = sched.batch;
    for (row, &orig) in sched.perm.iter().enumerate() {
        let len = sched.lens[row];
        // SAFETY: the team run is over; state `len` of `row` was written by it (or is h0).
        hn[(d * b + orig) * p..][..p].copy_from_slice(unsafe { states.row(len, row) });
        cn[(d * b + orig) * h..][..h].copy_from_slice(&c[(c_slot(c_ring, len) * b + row) * h..][..h]);
    }
}

#[derive(Clone, Copy)]
pub(super) struct FwdPtrs<F> {
    pub(super) gates: Ptr<F>,
    pub(super) pre: Option<Ptr<F>>,
    pub(super) c: Ptr<F>,
    /// Whether `c` is a ring of two slots (inference) rather than one slot per step.
    pub(super) c_ring: bool,
    pub(super) h: HStates<F>,
    pub(super) hc: Option<Ptr<F>>,
    pub(super) r: Option<Ptr<F>>,
}

impl<F> FwdPtrs<F> {
    pub(super) fn of(t: &mut DirTape<F>, c_ring: bool, h: HStates<F>) -> Self {
        FwdPtrs {
            gates: Ptr::of(&mut t.gates),
            pre: t.pre.as_deref_mut().map(Ptr::of),
            c: Ptr::of(&mut t.c),
            c_ring,
            h,
            hc: (!t.hc.is_empty()).then(|| Ptr::of(&mut t.hc)),
            r: t.r.as_deref_mut().map(Ptr::of),
        }
    }
}

/// The slot of `c` that holds the cell state after `steps` steps.
pub(super) fn c_slot(c_ring: bool, steps: usize) -> usize {
    if c_ring {
        steps % 2
    } else {
        steps
    }
}

pub(super) fn peep_views<F>(peep: Option<&[F]>, h: usize, u0: usize, u1: usize) -> Option<[&[F]; 3]> {
    peep.map(|pp| [&pp[u0..u1], &pp[h + u0..h + u1], &pp[2 * h + u0..2 * h + u1]])
}

/// How a time step's recurrent product is computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum StepProduct {
    /// Dot products against R's rows in place: no set-up, best when few rows share each load.
    Dot,
    /// A per-call transposed panel and the axpy kernel: each weight load serves eight rows.
    Panel,
    /// The general GEMM, for batches beyond the register-blocked kernels' sweet spot.
    Gemm,
    /// A single step: the rows of h packed and R read in place once (`weight_rows_product`),
    /// where a panel would be packed for one use.
    Streamed,
}

/// Weights up to this size are worth packing into panels even for a few reads: the packed
/// copy stays in the last-level cache and streams in order. Beyond it the pack is an extra pass
/// through memory that costs more than reading the weights in place (dot form).
pub(super) const PACK_MAX_BYTES: usize = 24 << 20;

/// How each step multiplies h by R packed per call (or read in place); `stream_lanes` is the
/// half-tile width of the transposed tile kernel where the path has one.
pub(super) fn step_strategy(batch: usize, steps: usize, r_bytes: usize, stream_lanes: Option<usize>) -> StepProduct {
    if batch > PANEL_MAX_BATCH {
        StepProduct::Gemm
    } else if steps == 1 && stream_lanes.is_some_and(|lanes| streams_weights(batch, r_bytes, lanes)) {
        // A panel would serve one step: R is read in place once, the rows of h packed.
        StepProduct::Streamed
    } else if batch * steps >= 32 || (batch * steps >= 8 && r_bytes <= PACK_MAX_BYTES) {
        // Packing costs about one step's weight traffic; the axpy kernel runs at close to the
        // FMA peak where the dot form spends a third of its time reducing and storing, and a
        // panel streams in order where the dot form reads sixteen rows a page apart.
        StepProduct::Panel
    } else {
        StepProduct::Dot
    }
}

/// The time loop of one direction, run by member `m` of a team of `k` threads.
#[allow(clippy::too_many_arguments)]
pub(super) fn forward_steps<F: Real>(
    path: KernelPath,
    shape: &LayerShape,
    dp: &DirParams<'_, F>,
    sched: &Schedule,
    bufs: FwdPtrs<F>,
    m: usize,
    k: usize,
    barrier: &SpinBarrier,
) {
    let (b, h, p) = (sched.batch, shape.hidden, shape.out());
    let g = 4 * h;
    let blocks = shape.order.blocks();
    // R packed once is read in place, each member from the tile its units start on.
    // Float32 panels serve float32 calls only (`from_f32_ptr` is `None` for f64).
    let packed_r = dp.r_packed.filter(|pk| b <= PANEL_MAX_BATCH && F::from_f32_ptr(pk.as_ptr()).is_some());
    let (u0, u1) = split_range(h, k, m, if packed_r.is_some() { PANEL_UNITS } else { 16 });
    let (p0, p1) = split_range(p, k, m, 16);
    let w = u1 - u0;
    let peep = peep_views(dp.peephole, h, u0, u1);
    // How this member multiplies h by its rows of R (all four gates of its units) each step:
    // a panel of its slice (packed once per module, or transposed here once per call) that the
    // tile kernel streams with up to eight rows per weight load; for a single step of 8-64 rows
    // that fill half tiles, R read in place once by the transposed tile kernel (a panel would
    // serve one step); R in place (dot form) only for very short calls or R too big to pack;
    // GEMM for the largest batches. bfloat16 weights pay where the step is bound by reading
    // them: small batches.
    let r_bytes = std::mem::size_of_val(dp.r);
    let half = dp.r_bf16.filter(|_| F::IS_F32 && b <= BF16_MAX_BATCH && r_bytes >= BF16_MIN_BYTES && w > 0);
    // The packed kernel reads whole chunks of sixteen: h is copied into zero-padded rows.
    let mut h_pad = vec![0f32; half.map_or(0, |hp| b * hp.padded_depth())];
    let strategy = if half.is_some() {
        StepProduct::Dot
    } else if packed_r.is_some() {
        StepProduct::Panel
    } else {
        let simd = matches!(path, KernelPath::Avx512 | KernelPath::Avx2);
        step_strategy(b, sched.max_len(), r_bytes, simd.then(|| tile_width::<F>() / 2))
    };
    let (panel, segs) = match (strategy, packed_r) {
        (StepProduct::Panel, Some(pk)) if w > 0 => (Vec::new(), pk.segments(u0, u1)),
        (StepProduct::Panel, None) if w > 0 => {
            let groups: Vec<(usize, usize, usize)> = (0..4).map(|blk| (blk * h + u0, blk * h + u0, w)).collect();
            pack_rows(path, dp.r, p, p, &groups)
        }
        _ => (
            Vec::new(),
            (0..4)
                .map(|blk| Segment { out_col: blk * h + u0, width: w, w_start: blk * h + u0, padded: false })
                .collect(),
        ),
    };
    let panel_ptr: *const F = packed_r.and_then(|pk| F::from_f32_ptr(pk.as_ptr())).unwrap_or(panel.as_ptr());
    let bias = dp.bias.map(|bv| blocks.map(|blk| &bv[blk * h + u0..blk * h + u1]));
    let tw = tile_width::<F>();
    let segs_back = match strategy {
        StepProduct::Panel => reversed_blocks(&segs, tw, p * tw),
        _ => reversed_blocks(&segs, 16, 16),
    };
    for s in 0..sched.max_len() {
        let n = sched.active[s];
        let segs = if s % 2 == 1 { &segs_back } else { &segs };
        // SAFETY: this member writes only its own units' columns of step s (gates, pre, c,
        // hc, r/h), and reads h of step s, completed by every member before the last barrier.
        unsafe {
            let gates_s = bufs.gates.at(s * b * g);
            let (hprev, hrs) = bufs.h.at(s);
            let hprev = hprev as *const F;
            let (hout, ors) = bufs.h.at(s + 1);
            if w > 0 {
                // `half` is only set for float32 calls, whose pointers these are.
                if let Some((packed, h32, gates32)) =
                    half.and_then(|pk| Some((pk, F::f32_ptr(hprev)?, F::f32_mut_ptr(gates_s)?)))
                {
                    let pd = packed.padded_depth();
                    for row in 0..n {
                        let src = std::slice::from_raw_parts(h32.add(row * hrs), p);
                        h_pad[row * pd..row * pd + p].copy_from_slice(src);
                    }
                    packed.accumulate(path, (u0, u1), n, h_pad.as_ptr(), pd, gates32, g, s % 2 == 1);
                } else if strategy == StepProduct::Dot {
                    dot_rows(path, n, p, hprev, hrs, dp.r.as_ptr(), p, segs, gates_s, g, true);
                } else if strategy == StepProduct::Panel {
                    axpy_cols(path, n, p, hprev, hrs, panel_ptr, tw, p * tw, segs, gates_s, g, true);
                } else if strategy == StepProduct::Streamed {
                    // Only a single step streams: h is h0, whose rows are `p` apart and which
                    // no member writes, so the slice below covers nothing being written.
                    debug_assert!(s == 0 && hrs == p, "streamed step {s}: h rows {hrs} apart");
                    let h_rows = std::slice::from_raw_parts(hprev, (n - 1) * hrs + p);
                    let (xt, xsegs) = pack_rows(path, h_rows, hrs, p, &[(0, 0, n)]);
                    let ranges: Vec<(usize, usize)> =
                        segs.iter().map(|sg| (sg.w_start, sg.w_start + sg.width)).collect();
                    let xt_tiles = xt.as_ptr().add(xsegs[0].w_start);
                    weight_rows_product(path, n, p, xt_tiles, dp.r.as_ptr(), p, &ranges, gates_s, g, true);
                    crate::scratch::recycle(xt);
                } else if k == 1 {
                    gemm(n, g, p, gates_s, g, 1, true, hprev, hrs, 1, dp.r.as_ptr(), 1, p, 1);
                } else {
                    for blk in 0..4 {
                        let col = blk * h + u0;
                        gemm(n, w, p, gates_s.add(col), g, 1, true, hprev, hrs, 1, dp.r.as_ptr().add(col * p), 1, p, 1);
                    }
                }
                for row in 0..n {
                    let base = (s * b + row) * g;
                    let z = blocks.map(|blk| bufs.gates.slice(base + blk * h + u0, w));
                    let pre = bufs.pre.map(|pr| blocks.map(|blk| pr.slice(base + blk * h + u0, w)));
                    let out = match bufs.r {
                        Some(r) => r.slice((s * b + row) * h + u0, w),
                        None => std::slice::from_raw_parts_mut(hout.add(row * ors + u0), w),
                    };
                    forward_units(
                        path,
                        FwdUnits {
                            z,
                            bias,
                            pre,
                            peep,
                            c_prev: bufs.c.slice((c_slot(bufs.c_ring, s) * b + row) * h + u0, w),
                            c: bufs.c.slice((c_slot(bufs.c_ring, s + 1) * b + row) * h + u0, w),
                            hc: bufs.hc.map(|hc| hc.slice((s * b + row) * h + u0, w)),
                            out,
                        },
                        &dp.ops,
                    );
                }
            }
            if let (Some(r), Some(wp)) = (bufs.r, dp.proj) {
                barrier.wait();
                let r_s = r.at(s * b * h) as *const F;
                gemm(n, p1 - p0, h, hout.add(p0), ors, 1, false, r_s, h, 1, wp.as_ptr().add(p0 * h), 1, h, 1);
            }
        }
        barrier.wait();
    }
    crate::scratch::recycle(panel);
}
