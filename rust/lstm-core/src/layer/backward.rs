//! The backward pass of one layer through time (BPTT).

use super::*;

/// Runs the backward pass of one layer through time. `x` is the layer's input of the forward
/// pass, `dy` `[T, B, D*P]`, `dhn` `[D, B, P]`, `dcn` `[D, B, H]` (each zero when absent).
#[allow(clippy::too_many_arguments)]
pub fn layer_backward<F: Real>(
    shape: &LayerShape,
    dirs: &[DirParams<'_, F>],
    tape: &LayerTape<F>,
    x: &[F],
    dy: Option<&[F]>,
    dhn: Option<&[F]>,
    dcn: Option<&[F]>,
) -> Result<LayerGrads<F>> {
    let sched = &tape.sched;
    validate(shape, dirs, sched, x)?;
    let (b, h, p, nd) = (sched.batch, shape.hidden, shape.out(), dirs.len());
    if tape.dirs.len() != nd {
        return Err(LstmError::Tape(format!("tape: made with {} directions, used with {nd}", tape.dirs.len())));
    }
    for (dp, tp) in dirs.iter().zip(&tape.dirs) {
        if tp.gates.len() != sched.max_len() * b * 4 * h || tp.h.len() != (sched.max_len() + 1) * b * p {
            return Err(LstmError::Tape("tape: does not match these weights' sizes".into()));
        }
        if dp.ops.needs_pre() && tp.pre.is_none() || tp.hc.is_empty() {
            return Err(LstmError::Tape("tape: made with other activation or clip settings".into()));
        }
    }
    if let Some(v) = dy {
        check_len("dY", product("dY", &[sched.steps, b, nd, p])?, v.len())?;
    }
    if let Some(v) = dhn {
        check_len("dY_h", nd * b * p, v.len())?;
    }
    if let Some(v) = dcn {
        check_len("dY_c", nd * b * h, v.len())?;
    }
    // The tape stays alive while every direction's gate gradients fill their running rows.
    let ctx = size_context(shape, sched);
    let dz = product(&ctx, &[nd, running_pairs(sched)?, 4, h, std::mem::size_of::<F>()])?;
    check_fits(&ctx, dz.saturating_add(tape.nbytes()))?;
    let path = active_kernel();
    let work = solo_scaled(multiply_adds(sched, shape, nd, 2), nd, h, b);
    with_pool(work, |threads| backward_in_pool(path, threads, shape, dirs, tape, x, dy, dhn, dcn))?
}

#[derive(Clone, Copy)]
pub(super) struct BwdPtrs<F> {
    pub(super) dz: Ptr<F>,
    pub(super) dh: Ptr<F>,
    pub(super) dc: Ptr<F>,
    pub(super) dhtot: Option<Ptr<F>>,
    pub(super) dr: Option<Ptr<F>>,
    pub(super) dpeep: Option<Ptr<F>>,
}

pub(super) struct BwdState<F> {
    pub(super) dz: Vec<F>,
    pub(super) dh: Vec<F>,
    pub(super) dc: Vec<F>,
    pub(super) dhtot: Option<Vec<F>>,
    pub(super) dr: Option<Vec<F>>,
    pub(super) dpeep: Option<Vec<F>>,
}

#[allow(clippy::too_many_arguments)]
pub(super) fn backward_in_pool<F: Real>(
    path: KernelPath,
    threads: usize,
    shape: &LayerShape,
    dirs: &[DirParams<'_, F>],
    tape: &LayerTape<F>,
    x: &[F],
    dy: Option<&[F]>,
    dhn: Option<&[F]>,
    dcn: Option<&[F]>,
) -> Result<LayerGrads<F>> {
    let sched = &tape.sched;
    let (t_len, b, i) = (sched.steps, sched.batch, shape.input);
    let (h, p, nd) = (shape.hidden, shape.out(), dirs.len());
    let g = 4 * h;
    let s_len = sched.max_len();
    let projecting = shape.proj > 0;

    let mut states: Vec<BwdState<F>> = (0..nd)
        .map(|d| {
            let mut dh = zeroed::<F>("dh", b * p)?;
            let mut dc = zeroed::<F>("dc", b * h)?;
            for (row, &orig) in sched.perm.iter().enumerate() {
                if let Some(v) = dhn {
                    dh[row * p..][..p].copy_from_slice(&v[(d * b + orig) * p..][..p]);
                }
                if let Some(v) = dcn {
                    dc[row * h..][..h].copy_from_slice(&v[(d * b + orig) * h..][..h]);
                }
            }
            let (dhtot, dr) = match projecting {
                true => (Some(zeroed::<F>("dh (projected)", s_len * b * p)?), Some(zeroed::<F>("dr", b * h)?)),
                false => (None, None),
            };
            let dpeep = match dirs[d].peephole {
                Some(_) => Some(zeroed::<F>("dP", 3 * h)?),
                None => None,
            };
            Ok(BwdState { dz: zeroed::<F>("the gate gradients", s_len * b * g)?, dh, dc, dhtot, dr, dpeep })
        })
        .collect::<Result<_>>()?;
    let ptrs: Vec<BwdPtrs<F>> = states
        .iter_mut()
        .map(|st| BwdPtrs {
            dz: Ptr::of(&mut st.dz),
            dh: Ptr::of(&mut st.dh),
            dc: Ptr::of(&mut st.dc),
            dhtot: st.dhtot.as_deref_mut().map(Ptr::of),
            dr: st.dr.as_deref_mut().map(Ptr::of),
            dpeep: st.dpeep.as_deref_mut().map(Ptr::of),
        })
        .collect();

    let (team, concurrent) = team_plan(threads, nd, h, b);
    let run = |d: usize, m: usize, k: usize, bar: &SpinBarrier| {
        backward_steps(path, shape, &dirs[d], d, nd, &tape.dirs[d], sched, dy, ptrs[d], m, k, bar)
    };
    if concurrent {
        let barriers: Vec<SpinBarrier> = (0..nd).map(|_| SpinBarrier::new(team)).collect();
        broadcast(nd * team, |w| run(w / team, w % team, team, &barriers[w / team]));
    } else {
        for d in 0..nd {
            let barrier = SpinBarrier::new(team);
            broadcast(team, |m| run(d, m, team, &barrier));
        }
    }

    // Weight gradients for all steps at once.
    let mut dx = zeroed::<F>("dX", t_len * b * i)?;
    let mut dh0 = zeroed::<F>("dinitial_h", nd * b * p)?;
    let mut dc0 = zeroed::<F>("dinitial_c", nd * b * h)?;
    let mut grads = Vec::with_capacity(nd);
    // A variable-length batch multiplies only the rows that ran: they are copied into one
    // block first (a small cost next to GEMMs over the padded rows, often twice as many).
    let runs = (!sched.dense).then(|| sched.active_runs());
    let rows = runs.as_ref().map_or(s_len * b, |_| sched.tokens());
    let running = |m, width| running_rows(m, width, runs.as_deref());
    for (d, ((dp, tp), st)) in dirs.iter().zip(&tape.dirs).zip(&states).enumerate() {
        let xs = running(tp.xs.as_deref().unwrap_or(x), i)?;
        let dz = running(&st.dz, g)?;
        let hs = running(&tp.h, p)?;
        let mut dw = zeroed::<F>("dW", g * i)?;
        let mut dr = zeroed::<F>("dR", g * p)?;
        let mut db = zeroed::<F>("dB", g)?;
        // SAFETY: all matrices are sized by the checks above; each holds `rows` rows.
        unsafe {
            gemm(g, i, rows, dw.as_mut_ptr(), i, 1, false, dz.as_ptr(), 1, g, xs.as_ptr(), i, 1, threads);
            gemm(g, p, rows, dr.as_mut_ptr(), p, 1, false, dz.as_ptr(), 1, g, hs.as_ptr(), p, 1, threads);
        }
        for row in dz.chunks_exact(g) {
            for (a, &v) in db.iter_mut().zip(row) {
                *a += v;
            }
        }
        if sched.identity(dp.reverse) {
            // SAFETY: dx is [T*B, I] with T*B == rows here.
            unsafe {
                gemm(rows, i, g, dx.as_mut_ptr(), i, 1, true, dz.as_ptr(), g, 1, dp.w.as_ptr(), i, 1, threads);
            }
        } else {
            let mut dxs = zeroed::<F>("dX in step order", rows * i)?;
            // SAFETY: dxs is [rows, I].
            unsafe {
                gemm(rows, i, g, dxs.as_mut_ptr(), i, 1, false, dz.as_ptr(), g, 1, dp.w.as_ptr(), i, 1, threads);
            }
            // dxs holds the running (step, row) pairs in step-major order (a zero-width input
            // has nothing to scatter).
            let mut src = dxs.chunks_exact(i.max(1));
            for s in (0..s_len).filter(|_| i > 0) {
                for row in 0..sched.active[s] {
                    let t = sched.time_of(row, s, dp.reverse);
                    let dst = &mut dx[(t * b + sched.perm[row]) * i..][..i];
                    let from = if runs.is_some() { src.next() } else { dxs[(s * b + row) * i..].get(..i) };
                    for (a, &v) in dst.iter_mut().zip(from.expect("one dx row per running step")) {
                        *a += v;
                    }
                }
            }
        }
        let dproj = match (&st.dhtot, &tp.r) {
            (Some(dhtot), Some(r)) => {
                let mut dwp = zeroed::<F>("dweight_hr", p * h)?;
                let (dhtot, r) = (running(dhtot, p)?, running(r, h)?);
                // SAFETY: dhtot is [rows, P], r is [rows, H].
                unsafe {
                    gemm(p, h, rows, dwp.as_mut_ptr(), h, 1, false, dhtot.as_ptr(), 1, p, r.as_ptr(), h, 1, threads);
                }
                Some(dwp)
            }
            _ => None,
        };
        for (row, &orig) in sched.perm.iter().enumerate() {
            dh0[(d * b + orig) * p..][..p].copy_from_slice(&st.dh[row * p..][..p]);
            dc0[(d * b + orig) * h..][..h].copy_from_slice(&st.dc[row * h..][..h]);
        }
        grads.push(DirGrads { w: dw, r: dr, bias: db, peephole: st.dpeep.clone(), proj: dproj });
    }
    Ok(LayerGrads { dx, dh0, dc0, dirs: grads })
}

/// The reverse time loop of one direction, run by member `m` of a team of `k` threads.
#[allow(clippy::too_many_arguments)]
pub(super) fn backward_steps<F: Real>(
    path: KernelPath,
    shape: &LayerShape,
    dp: &DirParams<'_, F>,
    d: usize,
    nd: usize,
    tp: &DirTape<F>,
    sched: &Schedule,
    dy: Option<&[F]>,
    bufs: BwdPtrs<F>,
    m: usize,
    k: usize,
    barrier: &SpinBarrier,
) {
    let (b, h, p) = (sched.batch, shape.hidden, shape.out());
    let g = 4 * h;
    let blocks = shape.order.blocks();
    let (u0, u1) = split_range(h, k, m, 16);
    let (p0, p1) = if bufs.dhtot.is_some() { split_range(p, k, m, 16) } else { (u0, u1) };
    let w = u1 - u0;
    let peep = peep_views(dp.peephole, h, u0, u1);
    // This member's output columns of R (over all 4H rows): copied once into contiguous
    // tiles when a second step reuses them, else read in place. Read in place, each step
    // takes a short piece of every row of R (a new page every row or two), several times
    // slower than the packed tiles, so the packing pays from the second step on.
    let strategy = if b > PANEL_MAX_BATCH {
        StepProduct::Gemm
    } else if sched.max_len() > 1 {
        StepProduct::Panel
    } else {
        StepProduct::Dot
    };
    let (panel, segs, w_rs, tile_step) = match strategy {
        StepProduct::Panel if p1 > p0 => {
            let (panel, segs) = pack_cols(dp.r, p, g, &[(p0, p0, p1 - p0)]);
            (panel, segs, tile_width::<F>(), g * tile_width::<F>())
        }
        _ => (
            Vec::new(),
            vec![Segment { out_col: p0, width: p1 - p0, w_start: p0, padded: false }],
            p,
            tile_width::<F>(),
        ),
    };
    let small = strategy != StepProduct::Gemm;
    let wsrc = if panel.is_empty() { dp.r.as_ptr() } else { panel.as_ptr() };
    for s in (0..sched.max_len()).rev() {
        let n = sched.active[s];
        // SAFETY: each member writes only its own columns (units u0..u1, outputs p0..p1) of
        // the step's rows; reads of other members' columns happen after a barrier.
        unsafe {
            // 1. Total gradient reaching this step's output: from above and from step s+1.
            let dst = bufs.dhtot.map_or(bufs.dh, |t| Ptr(t.at(s * b * p)));
            for row in 0..n {
                let t = sched.time_of(row, s, dp.reverse);
                let up = dy.map(|v| &v[((t * b + sched.perm[row]) * nd + d) * p..][..p]);
                for col in p0..p1 {
                    let mut v = *bufs.dh.at(row * p + col);
                    if let Some(up) = up {
                        v += up[col];
                    }
                    *dst.at(row * p + col) = v;
                }
            }
            // 2. Through the projection.
            let dout_base = match (bufs.dr, dp.proj) {
                (Some(dr), Some(wp)) => {
                    barrier.wait();
                    gemm(n, w, p, dr.at(u0), h, 1, false, dst.0 as *const F, p, 1, wp.as_ptr().add(u0), h, 1, 1);
                    (dr, h)
                }
                _ => (bufs.dh, p),
            };
            // 3. Point-wise: gate pre-activation gradients and the cell-state gradient.
            if w > 0 {
                for row in 0..n {
                    let base = (s * b + row) * g;
                    let a = blocks.map(|blk| &tp.gates[base + blk * h + u0..][..w]);
                    let pre = tp.pre.as_ref().map(|pr| blocks.map(|blk| &pr[base + blk * h + u0..][..w]));
                    let dpeep = bufs.dpeep.map(|dq| [dq.slice(u0, w), dq.slice(h + u0, w), dq.slice(2 * h + u0, w)]);
                    backward_units(
                        path,
                        BwdUnits {
                            dout: dout_base.0.slice(row * dout_base.1 + u0, w),
                            dc: bufs.dc.slice(row * h + u0, w),
                            a,
                            pre,
                            peep,
                            dpeep,
                            c: &tp.c[((s + 1) * b + row) * h + u0..][..w],
                            c_prev: &tp.c[(s * b + row) * h + u0..][..w],
                            hc: &tp.hc[(s * b + row) * h + u0..][..w],
                            dz: blocks.map(|blk| bufs.dz.slice(base + blk * h + u0, w)),
                        },
                        &dp.ops,
                    );
                }
            }
            barrier.wait();
            // 5. Into the previous step's hidden state.
            let dz_s = bufs.dz.at(s * b * g) as *const F;
            match small {
                true => axpy_cols(path, n, g, dz_s, g, wsrc, w_rs, tile_step, &segs, bufs.dh.0, p, false),
                false => gemm(n, p1 - p0, g, bufs.dh.at(p0), p, 1, false, dz_s, g, 1, dp.r.as_ptr().add(p0), p, 1, 1),
            }
        }
    }
    crate::scratch::recycle(panel);
}
