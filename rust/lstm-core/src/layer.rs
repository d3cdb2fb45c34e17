//! One LSTM layer, all of its directions: the forward pass (optionally keeping a tape) and the
//! backward pass through time.
//!
//! Structure, per direction:
//! - the input projection of every time step is one GEMM, hoisted out of the time loop;
//! - the time loop runs on a persistent team of threads, each owning a slice of hidden units
//!   (all four gates of them), so its share of the recurrent weights stays in its own cache;
//!   one spin barrier per step (two with a projection) instead of a task spawn per step;
//! - both directions of a bidirectional layer run at once on separate teams;
//! - backward batches the weight-gradient GEMMs over all time steps after the loop.
//!
//! Buffers are in *step space*: rows sorted by length (see [`Schedule`]), step `s` of a
//! reverse direction being time `len - 1 - s` of its row. Nothing is allocated in the loop.

use std::borrow::Cow;

use crate::alloc::{check_fits, copy_of, product, with_capacity, zeroed};
use crate::bf16::PackedBf16;
use crate::error::{check_len, LstmError, Result};
use crate::kernel::{active_kernel, backward_units, forward_units, BwdUnits, CellOps, FwdUnits, KernelPath};
use crate::packed::{PackedPanel, PANEL_UNITS};
use crate::real::Real;
use crate::recurrent::{
    axpy_cols, dot_rows, pack_cols, pack_rows, reversed_blocks, tile_width, weight_rows_product, Segment,
};
use crate::schedule::Schedule;
use crate::threads::{broadcast, split_range, with_pool, SpinBarrier};

/// Block index, in the rows of `W`, `R` and the bias, of each gate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GateOrder {
    /// Input gate.
    pub i: usize,
    /// Output gate.
    pub o: usize,
    /// Forget gate.
    pub f: usize,
    /// Cell candidate.
    pub c: usize,
}

impl GateOrder {
    /// ONNX: i, o, f, c.
    pub const ONNX: GateOrder = GateOrder { i: 0, o: 1, f: 2, c: 3 };
    /// PyTorch: i, f, g, o.
    pub const TORCH: GateOrder = GateOrder { i: 0, f: 1, c: 2, o: 3 };

    fn blocks(&self) -> [usize; 4] {
        [self.i, self.o, self.f, self.c]
    }
}

/// Sizes of a layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LayerShape {
    /// Input features per time step.
    pub input: usize,
    /// Hidden (cell) size.
    pub hidden: usize,
    /// Projection size (PyTorch `proj_size`); 0 for none.
    pub proj: usize,
    /// Gate order of the weights.
    pub order: GateOrder,
}

impl LayerShape {
    /// Size of the hidden state and output of one direction.
    pub fn out(&self) -> usize {
        if self.proj > 0 {
            self.proj
        } else {
            self.hidden
        }
    }
}

/// Weights and settings of one direction. Arrays are row-major and borrowed, never copied.
#[derive(Debug, Clone, Copy)]
pub struct DirParams<'a, F> {
    /// Input weights `[4H, I]`.
    pub w: &'a [F],
    /// Recurrent weights `[4H, P]` (P = projection size, or H).
    pub r: &'a [F],
    /// Float32 inference only: `r` rounded to bfloat16 and packed ([`PackedBf16`]); where given,
    /// small-batch steps read it instead of `r`, for half the memory traffic.
    pub r_bf16: Option<&'a PackedBf16>,
    /// Float32 only: `w` packed once ([`PackedPanel`]); the input projection reads it instead
    /// of packing `w` per call (same arithmetic, same results).
    pub w_packed: Option<&'a PackedPanel>,
    /// Float32 only: `r` packed once; the time loop reads it instead of packing `r` per call.
    pub r_packed: Option<&'a PackedPanel>,
    /// Combined bias `[4H]` (both biases added), if any.
    pub bias: Option<&'a [F]>,
    /// Peephole weights `[3H]` (i, o, f), if any.
    pub peephole: Option<&'a [F]>,
    /// Projection `[P, H]`, present exactly when the layer projects.
    pub proj: Option<&'a [F]>,
    /// Whether this direction runs backwards in time.
    pub reverse: bool,
    /// Activations, clip and input-forget coupling.
    pub ops: CellOps,
}

/// What the backward pass needs from one direction's forward pass.
#[derive(Debug, Clone)]
pub struct DirTape<F> {
    xs: Option<Vec<F>>,
    gates: Vec<F>,
    pre: Option<Vec<F>>,
    c: Vec<F>,
    h: Vec<F>,
    hc: Vec<F>,
    r: Option<Vec<F>>,
}

/// The tape of a layer: its schedule and each direction's saved values.
#[derive(Debug, Clone)]
pub struct LayerTape<F> {
    /// The step schedule the forward pass used.
    pub sched: Schedule,
    dirs: Vec<DirTape<F>>,
}

impl<F> LayerTape<F> {
    /// Bytes held by the tape.
    pub fn nbytes(&self) -> usize {
        let n: usize = self
            .dirs
            .iter()
            .map(|d| {
                d.xs.as_ref().map_or(0, Vec::len)
                    + d.gates.len()
                    + d.pre.as_ref().map_or(0, Vec::len)
                    + d.c.len()
                    + d.h.len()
                    + d.hc.len()
                    + d.r.as_ref().map_or(0, Vec::len)
            })
            .sum();
        n * std::mem::size_of::<F>()
    }
}

/// Outputs of a layer's forward pass.
#[derive(Debug, Clone)]
pub struct LayerOutput<F> {
    /// `[T, B, D*P]`, zero past each sequence's length.
    pub y: Vec<F>,
    /// `[D, B, P]`: hidden state at each sequence's last step.
    pub hn: Vec<F>,
    /// `[D, B, H]`: cell state at each sequence's last step.
    pub cn: Vec<F>,
    /// The tape, when asked for.
    pub tape: Option<LayerTape<F>>,
}

/// Parameter gradients of one direction (same shapes as [`DirParams`]).
#[derive(Debug, Clone)]
pub struct DirGrads<F> {
    /// `[4H, I]`.
    pub w: Vec<F>,
    /// `[4H, P]`.
    pub r: Vec<F>,
    /// `[4H]` (the gradient of each of the two biases).
    pub bias: Vec<F>,
    /// `[3H]`, when the direction has peepholes.
    pub peephole: Option<Vec<F>>,
    /// `[P, H]`, when the layer projects.
    pub proj: Option<Vec<F>>,
}

/// Gradients of a layer's backward pass.
#[derive(Debug, Clone)]
pub struct LayerGrads<F> {
    /// `[T, B, I]`.
    pub dx: Vec<F>,
    /// `[D, B, P]`.
    pub dh0: Vec<F>,
    /// `[D, B, H]`.
    pub dc0: Vec<F>,
    /// One per direction.
    pub dirs: Vec<DirGrads<F>>,
}

#[derive(Clone, Copy)]
struct Ptr<F>(*mut F);
// SAFETY: threads write disjoint ranges between barriers; see the module documentation.
unsafe impl<F> Send for Ptr<F> {}
// SAFETY: as for `Send`.
unsafe impl<F> Sync for Ptr<F> {}

impl<F> Ptr<F> {
    fn of(v: &mut [F]) -> Self {
        Ptr(v.as_mut_ptr())
    }
    /// # Safety
    /// `off..off+len` must be in bounds and not aliased mutably elsewhere while in use.
    #[allow(clippy::mut_from_ref)]
    unsafe fn slice<'a>(self, off: usize, len: usize) -> &'a mut [F] {
        // SAFETY: the caller keeps `off..off+len` in bounds and unaliased (above).
        unsafe { std::slice::from_raw_parts_mut(self.0.add(off), len) }
    }
    /// # Safety
    /// `off` must be within the allocation (or one past its end).
    unsafe fn at(self, off: usize) -> *mut F {
        // SAFETY: the caller keeps `off` inside the allocation.
        unsafe { self.0.add(off) }
    }
}

fn validate<F: Real>(shape: &LayerShape, dirs: &[DirParams<'_, F>], sched: &Schedule, x: &[F]) -> Result<()> {
    let (i, h, p) = (shape.input, shape.hidden, shape.out());
    if dirs.is_empty() || dirs.len() > 2 {
        return Err(LstmError::Value(format!("directions: expected 1 or 2, got {}", dirs.len())));
    }
    if h == 0 {
        return Err(LstmError::Value("hidden_size: expected a positive integer, got 0".into()));
    }
    check_len("X", product("X", &[sched.steps, sched.batch, i])?, x.len())?;
    for d in dirs {
        check_len("W", 4 * h * i, d.w.len())?;
        check_len("R", 4 * h * p, d.r.len())?;
        if let Some(packed) = d.r_bf16 {
            if !F::IS_F32 {
                return Err(LstmError::Value("bf16 weights: expected float32 inputs, got float64".into()));
            }
            if packed.dims() != (h, p) {
                return Err(LstmError::Shape(format!(
                    "bf16 weights: packed for (hidden, depth) = {:?}, the layer has {:?}",
                    packed.dims(),
                    (h, p)
                )));
            }
        }
        for (name, packed, depth) in [("W", d.w_packed, i), ("R", d.r_packed, p)] {
            if let Some(pk) = packed {
                if !F::IS_F32 {
                    return Err(LstmError::Value(format!(
                        "packed weights: {name} packed as float32, the layer runs float64"
                    )));
                }
                if pk.dims() != (h, depth) {
                    return Err(LstmError::Shape(format!(
                        "packed weights: {name} packed for (hidden, depth) = {:?}, the layer has {:?}",
                        pk.dims(),
                        (h, depth)
                    )));
                }
            }
        }
        if let Some(b) = d.bias {
            check_len("B", 4 * h, b.len())?;
        }
        if let Some(pp) = d.peephole {
            check_len("P", 3 * h, pp.len())?;
        }
        match (shape.proj > 0, d.proj) {
            (true, Some(w)) => check_len("weight_hr", p * h, w.len())?,
            (false, None) => {}
            (true, None) => return Err(LstmError::Shape("weight_hr: expected a projection matrix, got none".into())),
            (false, Some(_)) => return Err(LstmError::Shape("weight_hr: given, but proj_size is 0".into())),
        }
        if let Some(c) = d.ops.clip {
            if c.is_nan() || c <= 0.0 {
                return Err(LstmError::Value(format!("clip: expected a positive number, got {c}")));
            }
        }
    }
    Ok(())
}

/// Batches up to this size use the register-blocked step kernels; larger ones use GEMM.
const PANEL_MAX_BATCH: usize = 64;

/// Batches up to this size read bfloat16 recurrent weights when given (larger ones are bound by
/// arithmetic, not by the weight traffic bfloat16 halves).
const BF16_MAX_BATCH: usize = 4;
/// ... and only when float32 `R` is at least this big (bytes): a smaller one stays in the
/// threads' L2 caches from step to step, and the widening costs more than it saves.
const BF16_MIN_BYTES: usize = 2 << 20;

/// The work `with_pool` weighs against its inline threshold: a call whose time loop runs on one
/// thread anyway (one direction, a team of one) could only spread its input projection, and
/// waking the pool for that costs more than it saves up to about 32 times the usual threshold.
fn solo_scaled(work: usize, dirs: usize, hidden: usize, batch: usize) -> usize {
    if dirs == 1 && team_plan(crate::threads::num_threads(), 1, hidden, batch).0 == 1 {
        work / 32
    } else {
        work
    }
}

/// How the threads are shared: `team` threads per direction; directions at once or in turn.
fn team_plan(threads: usize, dirs: usize, hidden: usize, batch: usize) -> (usize, bool) {
    // A thread needs enough work per step to pay for a barrier. Measured on 2 cores: a second
    // thread loses (0.7-0.9x) below about 1M multiply-adds per step when the hidden size is
    // under 128 (each member's slice is a tile or two), and wins from hidden 128 up.
    let step_work = batch * 4 * hidden * hidden;
    let useful = if hidden < 128 && step_work < (1 << 20) { 1 } else { (hidden * batch.min(8) / 64).max(1) };
    if threads >= dirs && dirs > 1 {
        ((threads / dirs).min(useful).max(1), true)
    } else {
        (threads.min(useful).max(1), false)
    }
}

/// # Safety
/// See [`Real::gemm_raw`].
#[allow(clippy::too_many_arguments)]
unsafe fn gemm<F: Real>(
    m: usize,
    n: usize,
    k: usize,
    dst: *mut F,
    dst_rs: usize,
    dst_cs: usize,
    read_dst: bool,
    lhs: *const F,
    lhs_rs: usize,
    lhs_cs: usize,
    rhs: *const F,
    rhs_rs: usize,
    rhs_cs: usize,
    parallel: usize,
) {
    // SAFETY: the caller upholds this function's contract: every pointer is valid for the rows and lengths it is given, and written ranges are not shared.
    unsafe {
        if m == 0 || n == 0 {
            return;
        }
        if k == 0 {
            if !read_dst {
                for i in 0..m {
                    for j in 0..n {
                        *dst.add(i * dst_rs + j * dst_cs) = F::ZERO;
                    }
                }
            }
            return;
        }
        F::gemm_raw(
            m,
            n,
            k,
            dst,
            dst_cs as isize,
            dst_rs as isize,
            read_dst,
            lhs,
            lhs_cs as isize,
            lhs_rs as isize,
            rhs,
            rhs_cs as isize,
            rhs_rs as isize,
            parallel,
        );
    }
}

/// Runs the forward pass of one layer. `x` is `[T, B, I]`; `h0`/`c0` are `[D, B, P]`/`[D, B, H]`
/// (zeros when absent). With `keep_tape` the result carries what [`layer_backward`] needs.
pub fn layer_forward<F: Real>(
    shape: &LayerShape,
    dirs: &[DirParams<'_, F>],
    sched: &Schedule,
    x: &[F],
    h0: Option<&[F]>,
    c0: Option<&[F]>,
    keep_tape: bool,
) -> Result<LayerOutput<F>> {
    validate(shape, dirs, sched, x)?;
    if keep_tape && dirs.iter().any(|d| d.r_bf16.is_some()) {
        return Err(LstmError::Value(
            "bf16 weights: inference only; a forward pass for training runs in float32".into(),
        ));
    }
    let (b, h, p) = (sched.batch, shape.hidden, shape.out());
    let nd = dirs.len();
    if let Some(v) = h0 {
        check_len("initial_h", nd * b * p, v.len())?;
    }
    if let Some(v) = c0 {
        check_len("initial_c", nd * b * h, v.len())?;
    }
    check_fits(&size_context(shape, sched), forward_bytes::<F>(shape, sched, nd)?)?;
    let path = active_kernel();
    let work = solo_scaled(multiply_adds(sched, shape, nd, 1), nd, h, b);
    with_pool(work, |threads| forward_in_pool(path, threads, shape, dirs, sched, x, h0, c0, keep_tape))?
}

/// Names the sizes behind a call's buffers, for memory errors.
fn size_context(shape: &LayerShape, sched: &Schedule) -> String {
    format!(
        "X: {} steps x {} sequences x {} inputs with hidden_size {}",
        sched.steps, sched.batch, shape.input, shape.hidden
    )
}

/// The (step, row) pairs that run, with overflow checks.
fn running_pairs(sched: &Schedule) -> Result<usize> {
    if sched.dense {
        return product("X", &[sched.steps, sched.batch]);
    }
    sched
        .lens
        .iter()
        .try_fold(0usize, |acc, &n| acc.checked_add(n))
        .ok_or_else(|| LstmError::Memory(format!("sequence_lens: {} sequences' steps overflow a count", sched.batch)))
}

/// Bytes a forward pass must fill at once, at the least: every direction's gate buffer and the
/// running rows of Y.
fn forward_bytes<F>(shape: &LayerShape, sched: &Schedule, nd: usize) -> Result<usize> {
    let ctx = size_context(shape, sched);
    let size = std::mem::size_of::<F>();
    let gates = product(&ctx, &[nd, sched.max_len(), sched.batch, 4, shape.hidden, size])?;
    let y = product(&ctx, &[running_pairs(sched)?, nd, shape.out(), size])?;
    gates.checked_add(y).ok_or_else(|| LstmError::Memory(format!("{ctx}: the byte count overflows")))
}

/// Multiply-adds of one pass over all steps (times `factor`), saturating: it only chooses
/// whether to wake the pool.
fn multiply_adds(sched: &Schedule, shape: &LayerShape, nd: usize, factor: usize) -> usize {
    [sched.batch, 4, shape.hidden, shape.input.saturating_add(shape.out()), nd, factor]
        .iter()
        .fold(sched.steps, |acc, &v| acc.saturating_mul(v))
}

#[allow(clippy::too_many_arguments)]
fn forward_in_pool<F: Real>(
    path: KernelPath,
    threads: usize,
    shape: &LayerShape,
    dirs: &[DirParams<'_, F>],
    sched: &Schedule,
    x: &[F],
    h0: Option<&[F]>,
    c0: Option<&[F]>,
    keep_tape: bool,
) -> Result<LayerOutput<F>> {
    let (t_len, b, i) = (sched.steps, sched.batch, shape.input);
    let (h, p) = (shape.hidden, shape.out());
    let g = 4 * h;
    let s_len = sched.max_len();
    let nd = dirs.len();
    // Inference over full-length rows writes each step's h straight into Y (no copy, and Y
    // needs no zeroing); the tape keeps its own step-major copy for the backward pass.
    let direct = !keep_tape && sched.dense && s_len > 0;
    let y_len = t_len * b * nd * p;
    // Zeroed even where every element is written: a Vec over uninitialised floats is undefined
    // behaviour, and calloc'd pages cost nothing until touched.
    let mut y = zeroed::<F>("Y", y_len)?;

    let mut tapes: Vec<DirTape<F>> = dirs
        .iter()
        .enumerate()
        .map(|(d, dp)| {
            let xs = match sched.identity(dp.reverse) {
                true => None,
                false => Some(gather_steps(sched, x, i, dp.reverse)?),
            };
            // The projection below writes every running row (the bias is added in the
            // point-wise pass, where the rows are hot) and the rows of ended sequences are
            // zeroed, so the buffer skips a full zeroing.
            let mut gates = zeroed::<F>("the tape's gates", s_len * b * g)?;
            for (s, &n) in sched.active.iter().enumerate() {
                gates[(s * b + n) * g..(s + 1) * b * g].fill(F::ZERO);
            }
            let lhs = xs.as_deref().unwrap_or(x);
            // SAFETY: gates is [S*B, 4H]; lhs holds at least S*B rows of I; W is [4H, I].
            unsafe {
                project_inputs(path, threads, &sched.active_runs(), i, g, lhs, dp.w, dp.w_packed, &mut gates, false)?
            };
            // Inference keeps only the cell states of the current and previous step (a ring of
            // two): each row's last state stays in slot `len % 2`, since ended rows are not
            // written again.
            let c_slots = if keep_tape { s_len + 1 } else { 2 };
            let mut c = zeroed::<F>("the cell states", c_slots * b * h)?;
            let mut hs = zeroed::<F>("the hidden states", if direct { b * p } else { (s_len + 1) * b * p })?;
            for (row, &orig) in sched.perm.iter().enumerate() {
                if let Some(h0) = h0 {
                    hs[row * p..(row + 1) * p].copy_from_slice(&h0[(d * b + orig) * p..][..p]);
                }
                if let Some(c0) = c0 {
                    c[row * h..(row + 1) * h].copy_from_slice(&c0[(d * b + orig) * h..][..h]);
                }
            }
            let pre = keep_tape && dp.ops.needs_pre();
            Ok(DirTape {
                xs: if keep_tape { xs } else { None },
                gates,
                pre: if pre { Some(zeroed::<F>("the tape's pre-activations", s_len * b * g)?) } else { None },
                c,
                h: hs,
                hc: zeroed::<F>("the tape's tanh(c)", if keep_tape { s_len * b * h } else { 0 })?,
                r: if shape.proj > 0 { Some(zeroed::<F>("the projected states", s_len * b * h)?) } else { None },
            })
        })
        .collect::<Result<_>>()?;

    let (team, concurrent) = team_plan(threads, nd, h, b);
    let y_ptr = Ptr::of(&mut y);
    let ptrs: Vec<FwdPtrs<F>> = tapes
        .iter_mut()
        .enumerate()
        .map(|(d, t)| {
            let states = if direct {
                // Step s of direction d is time s (or T-1-s in reverse) of every row.
                let (first, step) = if dirs[d].reverse { ((t_len - 1) * b * nd + d, -1) } else { (d, 1) };
                // SAFETY: `first` is the start of a row of Y.
                HStates {
                    h0: Ptr::of(&mut t.h),
                    // SAFETY: `first * p` is the offset of that row, inside Y.
                    first: Ptr(unsafe { y_ptr.at(first * p) }),
                    step: step * (b * nd * p) as isize,
                    rs: nd * p,
                    p,
                }
            } else {
                let hs = Ptr::of(&mut t.h);
                // SAFETY: the tape's buffer holds s_len + 1 blocks of b*p.
                HStates { h0: hs, first: Ptr(unsafe { hs.at(b * p) }), step: (b * p) as isize, rs: p, p }
            };
            FwdPtrs::of(t, !keep_tape, states)
        })
        .collect();
    if concurrent {
        let barriers: Vec<SpinBarrier> = (0..nd).map(|_| SpinBarrier::new(team)).collect();
        broadcast(nd * team, |w| {
            let d = w / team;
            forward_steps(path, shape, &dirs[d], sched, ptrs[d], w % team, team, &barriers[d]);
        });
    } else {
        for d in 0..nd {
            let barrier = SpinBarrier::new(team);
            broadcast(team, |m| forward_steps(path, shape, &dirs[d], sched, ptrs[d], m, team, &barrier));
        }
    }

    // Y is zero past each sequence's end; when no sequence ends early every element is copied.
    let parts = threads.min(s_len).max(1);
    let tapes_ref = &tapes;
    let copy_y = |m: usize| {
        let (s0, s1) = split_range(s_len, parts, m, 1);
        for (d, (dp, tp)) in dirs.iter().zip(tapes_ref).enumerate() {
            for s in s0..s1 {
                for row in 0..sched.active[s] {
                    let t = sched.time_of(row, s, dp.reverse);
                    // SAFETY: (t, row) pairs are distinct across steps, so parts write disjoint rows.
                    let dst = unsafe { y_ptr.slice(((t * b + sched.perm[row]) * nd + d) * p, p) };
                    dst.copy_from_slice(&tp.h[((s + 1) * b + row) * p..][..p]);
                }
            }
        }
    };
    if !direct {
        broadcast(parts, copy_y);
    }
    let mut hn = zeroed::<F>("Y_h", nd * b * p)?;
    let mut cn = zeroed::<F>("Y_c", nd * b * h)?;
    for (d, tp) in tapes.iter().enumerate() {
        for (row, &orig) in sched.perm.iter().enumerate() {
            let len = sched.lens[row];
            // SAFETY: the team run is over; state `len` of `row` was written by it (or is h0).
            let last = unsafe { ptrs[d].h.row(len, row) };
            hn[(d * b + orig) * p..][..p].copy_from_slice(last);
            let slot = c_slot(!keep_tape, len);
            cn[(d * b + orig) * h..][..h].copy_from_slice(&tp.c[(slot * b + row) * h..][..h]);
        }
    }
    let tape = match keep_tape {
        true => Some(LayerTape { sched: clone_schedule(sched)?, dirs: tapes }),
        false => None,
    };
    Ok(LayerOutput { y, hn, cn, tape })
}

/// A copy of the schedule for a tape (its vectors are as long as the batch and the steps).
fn clone_schedule(sched: &Schedule) -> Result<Schedule> {
    let what = "the tape's step schedule";
    Ok(Schedule {
        perm: copy_of(what, &sched.perm)?,
        lens: copy_of(what, &sched.lens)?,
        active: copy_of(what, &sched.active)?,
        ..*sched
    })
}

/// Up to this many rows the input projection runs on packed panels and the tile kernel (which
/// reaches the FMA peak) rather than the GEMM library, whose per-call packing and edge handling
/// cost it half its speed at a few hundred rows.
const PANEL_PROJECT_MAX_ROWS: usize = 1024;
/// Bytes of input rows a projection chunk holds (they stay in L2 while the panel passes).
const PROJECT_CHUNK_BYTES: usize = 512 << 10;
/// The most input rows the projection streams W in place for (`weight_rows_product`): the
/// input rows' panel then stays in L2.
const STREAM_MAX_ROWS: usize = 256;

/// Whether a product of `rows` input rows with weights used once is faster with the weights
/// read in place and the rows packed (`weight_rows_product`) than with the weights packed into
/// panels. The first pads the rows to a multiple of `tile` lanes; the second costs a pass over
/// the weights, measured (Zen 4, 2 threads) at the work of about 8 more rows while they stay
/// in the last-level cache and 24 once they spill (past 8 MiB). With half tiles of 16 lanes
/// (f32) that means every count of 8-256 rows for weights past 8 MiB, and counts within 7 of a
/// multiple of 16 below that; with the 8 lanes of f64, every count.
fn streams_weights(rows: usize, w_bytes: usize, tile: usize) -> bool {
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
unsafe fn project_inputs<F: Real>(
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
unsafe fn project_rows<F: Real>(
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
    if let Some(pk) = packed.filter(|_| F::IS_F32 && rows > 0) {
        // W packed once: each member sweeps the rows over its hidden units' tiles in place.
        let h = g / 4;
        let parts = threads.min(h.div_ceil(PANEL_UNITS)).max(1);
        broadcast(parts, |m| {
            let (u0, u1) = split_range(h, parts, m, PANEL_UNITS);
            if u1 > u0 {
                let segs = pk.segments(u0, u1);
                // SAFETY: `F` is f32 here; each part writes its own units' columns.
                unsafe {
                    sweep_panel(path, rows, chunk, i, g, lhs, pk.as_ptr() as *const F, &segs, out_ptr, accumulate)
                };
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
unsafe fn sweep_panel<F: Real>(
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
fn running_rows<'a, F: Real>(m: &'a [F], width: usize, runs: Option<&[(usize, usize)]>) -> Result<Cow<'a, [F]>> {
    Ok(match runs {
        Some(r) => Cow::Owned(compact_rows(m, width, r)?),
        None => Cow::Borrowed(m),
    })
}

/// The rows `runs` (`(first, count)`) of a matrix `width` values wide, copied into one block.
fn compact_rows<F: Real>(m: &[F], width: usize, runs: &[(usize, usize)]) -> Result<Vec<F>> {
    let mut out = with_capacity("the running rows", runs.iter().map(|r| r.1).sum::<usize>() * width)?;
    for &(first, count) in runs {
        out.extend_from_slice(&m[first * width..(first + count) * width]);
    }
    Ok(out)
}

/// Copies the input rows each step reads into step order (zeros where a row has ended).
fn gather_steps<F: Real>(sched: &Schedule, x: &[F], i: usize, reverse: bool) -> Result<Vec<F>> {
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

/// Where one direction's hidden states live: state 0 (h0) in its own block, state `j >= 1`
/// (after step `j - 1`) in a block `step` elements after the previous one, rows `rs` apart;
/// either the tape's step-major buffer or, for dense inference, Y itself.
#[derive(Clone, Copy)]
struct HStates<F> {
    h0: Ptr<F>,
    first: Ptr<F>,
    step: isize,
    rs: usize,
    p: usize,
}

impl<F> HStates<F> {
    /// The block of state `j` and its row stride.
    ///
    /// # Safety
    /// `j` must be at most the number of steps the buffers were made for.
    unsafe fn at(&self, j: usize) -> (*mut F, usize) {
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
    unsafe fn row<'a>(&self, j: usize, row: usize) -> &'a [F] {
        // SAFETY: the caller upholds this function's `# Safety` contract (see its docs).
        unsafe {
            let (blk, rs) = self.at(j);
            std::slice::from_raw_parts(blk.add(row * rs), self.p)
        }
    }
}

#[derive(Clone, Copy)]
struct FwdPtrs<F> {
    gates: Ptr<F>,
    pre: Option<Ptr<F>>,
    c: Ptr<F>,
    /// Whether `c` is a ring of two slots (inference) rather than one slot per step.
    c_ring: bool,
    h: HStates<F>,
    hc: Option<Ptr<F>>,
    r: Option<Ptr<F>>,
}

impl<F> FwdPtrs<F> {
    fn of(t: &mut DirTape<F>, c_ring: bool, h: HStates<F>) -> Self {
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
fn c_slot(c_ring: bool, steps: usize) -> usize {
    if c_ring {
        steps % 2
    } else {
        steps
    }
}

fn peep_views<F>(peep: Option<&[F]>, h: usize, u0: usize, u1: usize) -> Option<[&[F]; 3]> {
    peep.map(|pp| [&pp[u0..u1], &pp[h + u0..h + u1], &pp[2 * h + u0..2 * h + u1]])
}

/// How a time step's recurrent product is computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StepProduct {
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
const PACK_MAX_BYTES: usize = 24 << 20;

/// How each step multiplies h by R packed per call (or read in place); `stream_lanes` is the
/// half-tile width of the transposed tile kernel where the path has one.
fn step_strategy(batch: usize, steps: usize, r_bytes: usize, stream_lanes: Option<usize>) -> StepProduct {
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
fn forward_steps<F: Real>(
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
    let packed_r = dp.r_packed.filter(|_| F::IS_F32 && b <= PANEL_MAX_BATCH);
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
    // SAFETY (of the cast): `packed_r` is only set for f32.
    let panel_ptr: *const F = packed_r.map_or(panel.as_ptr(), |pk| pk.as_ptr() as *const F);
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
                if let Some(packed) = half {
                    // SAFETY: `half` is only set for float32, so the casts keep the type.
                    let pd = packed.padded_depth();
                    for row in 0..n {
                        let src = std::slice::from_raw_parts(hprev.add(row * hrs) as *const f32, p);
                        h_pad[row * pd..row * pd + p].copy_from_slice(src);
                    }
                    packed.accumulate(path, (u0, u1), n, h_pad.as_ptr(), pd, gates_s as *mut f32, g, s % 2 == 1);
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
struct BwdPtrs<F> {
    dz: Ptr<F>,
    dh: Ptr<F>,
    dc: Ptr<F>,
    dhtot: Option<Ptr<F>>,
    dr: Option<Ptr<F>>,
    dpeep: Option<Ptr<F>>,
}

struct BwdState<F> {
    dz: Vec<F>,
    dh: Vec<F>,
    dc: Vec<F>,
    dhtot: Option<Vec<F>>,
    dr: Option<Vec<F>>,
    dpeep: Option<Vec<F>>,
}

#[allow(clippy::too_many_arguments)]
fn backward_in_pool<F: Real>(
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
fn backward_steps<F: Real>(
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
