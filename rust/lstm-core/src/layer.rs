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
use crate::amx::TileWeights;
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
    /// Float32 inference only: `w` and `r` rounded to bfloat16 and packed as AMX tiles; where
    /// given (for every direction), the layer computes its products in bfloat16 on tiles
    /// (see `layer/tiles.rs`).
    pub tiles: Option<&'a TileWeights>,
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
    if dirs.iter().any(|d| d.tiles.is_some()) {
        check_tiles(shape, dirs, keep_tape)?;
        return with_pool(work, |threads| forward_tiles(path, threads, shape, dirs, sched, x, h0, c0))?;
    }
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
            load_initial(sched, d, (h0, c0), (p, h), &mut hs, &mut c);
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
            let states = HStates::place(direct, dirs[d].reverse, (d, nd), sched, p, &mut t.h, y_ptr);
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
            // SAFETY: parts copy disjoint steps, whose rows of Y are distinct.
            unsafe { copy_steps_to_y(sched, s0..s1, (dp.reverse, d, nd), p, &tp.h, y_ptr) };
        }
    };
    if !direct {
        broadcast(parts, copy_y);
    }
    let mut hn = zeroed::<F>("Y_h", nd * b * p)?;
    let mut cn = zeroed::<F>("Y_c", nd * b * h)?;
    for (d, tp) in tapes.iter().enumerate() {
        store_last_states(sched, d, (p, h), &ptrs[d].h, (&tp.c, !keep_tape), &mut hn, &mut cn);
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

mod backward;
mod project;
mod steps;
mod tiles;

pub use backward::layer_backward;
use project::*;
use steps::*;
use tiles::*;
