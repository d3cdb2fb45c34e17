//! The bfloat16 compute path of float32 inference on AMX tiles: the input projection and each
//! step's recurrent product multiply bfloat16 values into float32 sums ([`crate::amx`]); the
//! bias, peepholes, activations, cell state and hidden state stay float32, and the hidden
//! state is rounded to bfloat16 once per step for the next product.
//!
//! Two ways to get a step's gate sums. Large layers project every step's inputs before the
//! loop into a gate buffer laid out as the packed weights are (each gate's columns padded to a
//! multiple of 16, `hp`, so every tile lands inside one gate of one row), and each step adds
//! `h · Rᵀ` into its rows. Small layers (a member's `W` and `R` within half an L2) multiply
//! each step's inputs by `W` and `h` by `R` into the same tiles of a member's own buffer. A
//! member of the team owns whole tiles of hidden units (all four gates of them) either way.
//!
//! Measured on 2 Sapphire Rapids cores: a tile load costs about as much as a tile product
//! (15 ns from L1), so the 2x2 register blocking (four accumulators, two left and two right
//! tiles) is bound by its loads at about 1.1 TFLOP/s per core; rows that straddle cache lines
//! cost up to 2.8x, hence the line-aligned buffers. Interleaving the point-wise pass with the
//! next step's input products (the tile and vector units do overlap in isolation) made the
//! loop slower, so the two run in turn.

use super::*;
use crate::amx::{require_amx, tile_product, Operand, TileRun, TileWeights, PRODUCT_ROWS, TILE_COLS};
use crate::bf16::convert;

/// Bytes of right-operand tiles a thread sweeps per pass of the input projection: they stay
/// in its L2 while every row block passes them.
const PROJECT_TILE_BYTES: usize = 512 << 10;
/// A member whose share of `W` and `R` in bfloat16 is at most this many bytes (half an L2)
/// multiplies each step's inputs by `W` in the time loop, with `h` by `R` into the same tiles:
/// the weights stay in its L2, and the gate sums of every step are never written to memory
/// and read back (which, measured at hidden 256, costs more than the projection saves by
/// running over all rows at once).
const FUSED_MAX_BYTES: usize = 1 << 20;

/// Checks the packed weights of every direction against the layer, and that this process can
/// run them.
pub(super) fn check_tiles<F: Real>(shape: &LayerShape, dirs: &[DirParams<'_, F>], keep_tape: bool) -> Result<()> {
    if keep_tape {
        return Err(LstmError::Value(
            "compute_dtype='bfloat16': inference only; a forward pass for training runs in float32".into(),
        ));
    }
    if !F::IS_F32 {
        return Err(LstmError::Value("compute_dtype='bfloat16': expected float32 inputs, got float64".into()));
    }
    let want = (shape.hidden, shape.input, shape.out());
    for (d, dp) in dirs.iter().enumerate() {
        let Some(tw) = dp.tiles else {
            return Err(LstmError::Value(format!(
                "compute_dtype='bfloat16': direction {d} has no packed weights (every direction needs them)"
            )));
        };
        if tw.dims() != want {
            return Err(LstmError::Shape(format!(
                "compute_dtype='bfloat16': weights packed for (hidden, input, depth) = {:?}, the layer has {want:?}",
                tw.dims()
            )));
        }
    }
    require_amx()
}

/// `v` (of `F`, which [`check_tiles`] has checked is f32) as f32.
fn as_f32<F: Real>(v: &[F]) -> &[f32] {
    // SAFETY: the same pointer and length, of the same type.
    unsafe { std::slice::from_raw_parts(f32_ptr(v.as_ptr()), v.len()) }
}

/// `p` as a float32 pointer: the same pointer, `F` being f32 on this path ([`check_tiles`]).
fn f32_ptr<F: Real>(p: *const F) -> *const f32 {
    F::f32_ptr(p).expect("the tile path runs float32 only (check_tiles)")
}

/// [`f32_ptr`] for writing.
fn f32_mut<F: Real>(p: *mut F) -> *mut f32 {
    F::f32_mut_ptr(p).expect("the tile path runs float32 only (check_tiles)")
}

/// Rounds `rows` rows of `src` (`width` values, `src_rs` apart) into `dst` (rows `dst_rs`
/// apart, the padding left as it is), split over `threads`.
fn round_rows(
    path: KernelPath,
    threads: usize,
    src: &[f32],
    src_rs: usize,
    width: usize,
    dst: &mut [u16],
    dst_rs: usize,
) {
    let rows = if width == 0 { 0 } else { dst.len() / dst_rs };
    let out = Ptr::of(dst);
    broadcast(threads.min(rows.max(1)), |m| {
        let (r0, r1) = split_range(rows, threads.min(rows.max(1)), m, 1);
        for r in r0..r1 {
            // SAFETY: each part rounds its own rows of `dst`.
            let d = unsafe { out.slice(r * dst_rs, width) };
            convert(path, &src[r * src_rs..][..width], d);
        }
    });
}

/// The forward pass of a layer whose directions all carry [`TileWeights`] (see the module
/// documentation); inference only.
#[allow(clippy::too_many_arguments)]
pub(super) fn forward_tiles<F: Real>(
    path: KernelPath,
    threads: usize,
    shape: &LayerShape,
    dirs: &[DirParams<'_, F>],
    sched: &Schedule,
    x: &[F],
    h0: Option<&[F]>,
    c0: Option<&[F]>,
) -> Result<LayerOutput<F>> {
    let (t_len, b, i) = (sched.steps, sched.batch, shape.input);
    let (h, p) = (shape.hidden, shape.out());
    let (nd, s_len) = (dirs.len(), sched.max_len());
    let mut y = zeroed::<F>("Y", t_len * b * nd * p)?;
    let mut hn = zeroed::<F>("Y_h", nd * b * p)?;
    let mut cn = zeroed::<F>("Y_c", nd * b * h)?;
    for (d, dp) in dirs.iter().enumerate() {
        let tw = dp.tiles.expect("checked by check_tiles");
        let (hp, ip, pp) = (tw.w.padded_hidden(), tw.w.padded_depth(), tw.r.padded_depth());
        let gp = 4 * hp;
        let rows = s_len * b;
        let xs = match sched.identity(dp.reverse) {
            true => None,
            false => Some(gather_steps(sched, x, i, dp.reverse)?),
        };
        let lhs = as_f32(xs.as_deref().unwrap_or(x));
        let mut xb = LineBuf::<u16>::zeroed(rows * ip);
        round_rows(path, threads, lhs, i, i, xb.as_mut_slice(), ip);
        let (team, _) = team_plan(threads, 1, h, b);
        let fused = tw.nbytes() / team <= FUSED_MAX_BYTES;
        let mut gates = match fused {
            true => None,
            false => {
                Some(LineBuf::<F>::projected(rows * gp, |out| project_tiles(threads, xb.as_slice(), ip, rows, tw, out)))
            }
        };

        let mut c = zeroed::<F>("the cell states", 2 * b * h)?;
        // Over full-length rows each step's h goes straight into Y (as in the float32 path);
        // else into a step-major buffer copied out after the loop.
        let direct = sched.dense && s_len > 0;
        let mut hs = zeroed::<F>("the hidden states", if direct { b * p } else { (s_len + 1) * b * p })?;
        let mut hb = LineBuf::<u16>::zeroed(2 * b * pp);
        load_initial(sched, d, (h0, c0), (p, h), &mut hs, &mut c);
        round_rows(path, 1, as_f32(&hs[..b * p]), p, p, &mut hb.as_mut_slice()[..b * pp], pp);
        let mut r_buf = zeroed::<F>("the projected states", if shape.proj > 0 { s_len * b * h } else { 0 })?;
        let bufs = TileBufs {
            sums: match gates.as_mut() {
                Some(g) => Sums::Projected(Ptr::of(g.as_mut_slice())),
                None => Sums::Fused(Ptr(xb.as_slice().as_ptr() as *mut u16), ip),
            },
            c: Ptr::of(&mut c),
            h: HStates::place(direct, dp.reverse, (d, nd), sched, p, &mut hs, Ptr::of(&mut y)),
            hb: Ptr::of(hb.as_mut_slice()),
            r: (shape.proj > 0).then(|| Ptr::of(&mut r_buf)),
        };
        let barrier = SpinBarrier::new(team);
        broadcast(team, |m| tile_steps(path, shape, dp, sched, bufs, m, team, &barrier));

        if !direct {
            // SAFETY: the loop is over; this direction's rows of Y are written here only.
            unsafe { copy_steps_to_y(sched, 0..s_len, (dp.reverse, d, nd), p, &hs, Ptr::of(&mut y)) };
        }
        if let Some(g) = gates {
            g.recycle();
        }
        xb.recycle();
        hb.recycle();
        store_last_states(sched, d, (p, h), &bufs.h, (&c, true), &mut hn, &mut cn);
    }
    Ok(LayerOutput { y, hn, cn, tape: None })
}

/// `gates[rows, 4 hp] = xb[rows, ip] · Wᵀ`, the column tiles split over the threads, each
/// sweeping an L2's worth of its tiles past every row block.
fn project_tiles<F: Real>(threads: usize, xb: &[u16], ip: usize, rows: usize, tw: &TileWeights, out: Ptr<F>) {
    let gp = 4 * tw.w.padded_hidden();
    let tiles = tw.w.tiles();
    let per_pass = (PROJECT_TILE_BYTES / (ip.max(1) * 2 * TILE_COLS)).max(2) & !1;
    let parts = threads.min(tiles);
    broadcast(parts, |m| {
        let (j0, j1) = split_range(tiles, parts, m, 2);
        for first in (j0..j1).step_by(per_pass) {
            let end = (first + per_pass).min(j1);
            for rb in (0..rows).step_by(PRODUCT_ROWS) {
                let n = PRODUCT_ROWS.min(rows - rb);
                // SAFETY: the tile path runs only where check_tiles passed (AMX is available);
                // xb holds `rows` rows of `ip` and gates `rows` rows of `gp` (f32, as F is
                // f32); this part writes only its own column tiles.
                unsafe {
                    let c = f32_mut(out.at(rb * gp));
                    let op = Operand { a: xb.as_ptr().add(rb * ip), lda: ip, b: &tw.w };
                    tile_product(&[op], n, &[TileRun::in_place(first, end)], c, gp, false);
                }
            }
        }
    });
}

/// A buffer from this thread's kept ones ([`crate::scratch`]) whose used part starts on a
/// cache line, as tile loads want (a row straddling two lines costs a second load).
struct LineBuf<T: 'static> {
    buf: Vec<T>,
    off: usize,
    len: usize,
}

impl<T: Copy + Default + 'static> LineBuf<T> {
    fn pad() -> usize {
        64 / std::mem::size_of::<T>()
    }

    /// `len` zeros.
    fn zeroed(len: usize) -> Self {
        let mut buf = crate::scratch::take::<T>(len + Self::pad());
        buf.resize(len + Self::pad(), T::default());
        let off = buf.as_ptr().align_offset(64).min(Self::pad());
        LineBuf { buf, off, len }
    }

    /// `len` values, every one of them written by `fill` through the pointer it is given
    /// (the buffer is not zeroed first: the input projection writes all of it).
    fn projected(len: usize, fill: impl FnOnce(Ptr<T>)) -> Self {
        let mut buf = crate::scratch::take::<T>(len + Self::pad());
        let spare = buf.spare_capacity_mut();
        let off = spare.as_ptr().align_offset(64).min(Self::pad());
        spare[..off].fill(std::mem::MaybeUninit::new(T::default()));
        fill(Ptr(spare[off..].as_mut_ptr() as *mut T));
        // SAFETY: the first `off` values were written above and the next `len` by `fill`.
        unsafe { buf.set_len(off + len) };
        LineBuf { buf, off, len }
    }

    fn as_slice(&self) -> &[T] {
        &self.buf[self.off..self.off + self.len]
    }

    fn as_mut_slice(&mut self) -> &mut [T] {
        &mut self.buf[self.off..self.off + self.len]
    }

    /// Gives the buffer back for the next call on this thread.
    fn recycle(self) {
        crate::scratch::recycle(self.buf)
    }
}

/// Where a step's gate sums start from.
#[derive(Clone, Copy)]
enum Sums<F> {
    /// `[S*B, 4 hp]`: the input projection of every step, made before the loop; each step
    /// adds `h · Rᵀ` into its rows.
    Projected(Ptr<F>),
    /// The inputs in bfloat16 (`[S*B, ip]`, rows `ip` apart): each step multiplies its rows
    /// by `W` and `h` by `R` into a member's own small buffer.
    Fused(Ptr<u16>, usize),
}

#[derive(Clone, Copy)]
struct TileBufs<F> {
    sums: Sums<F>,
    /// `[2, B, H]`: a ring of two cell states.
    c: Ptr<F>,
    /// h0, then the hidden state after each step (in Y, or a step-major buffer).
    h: HStates<F>,
    /// `[2, B, pp]`: the hidden state read by the next step, in bfloat16 (zero-padded).
    hb: Ptr<u16>,
    /// `[S*B, H]`: the unprojected outputs, when the layer projects.
    r: Option<Ptr<F>>,
}

/// The time loop of one direction on tiles, run by member `m` of a team of `k`.
#[allow(clippy::too_many_arguments)]
fn tile_steps<F: Real>(
    path: KernelPath,
    shape: &LayerShape,
    dp: &DirParams<'_, F>,
    sched: &Schedule,
    bufs: TileBufs<F>,
    m: usize,
    k: usize,
    barrier: &SpinBarrier,
) {
    let tw = dp.tiles.expect("checked by check_tiles");
    let (b, h, p) = (sched.batch, shape.hidden, shape.out());
    let (hp, pp) = (tw.r.padded_hidden(), tw.r.padded_depth());
    let gp = 4 * hp;
    let per_gate = hp / TILE_COLS;
    let (u0, u1) = split_range(hp, k, m, TILE_COLS);
    let w = u1.min(h).saturating_sub(u0);
    let (p0, p1) = split_range(p, k, m, TILE_COLS);
    let wt = u1 - u0;
    let tile_runs = |gate: usize, col: usize| TileRun {
        first: gate * per_gate + u0 / TILE_COLS,
        end: gate * per_gate + u1 / TILE_COLS,
        col,
    };
    // Projected sums sit in the layer's gate buffer (gate columns `hp` apart); fused ones in
    // this member's own rows of its four gates (`wt` apart).
    let (runs, ldz) = match bufs.sums {
        Sums::Projected(_) => ([0, 1, 2, 3].map(|g| tile_runs(g, g * hp + u0)), gp),
        Sums::Fused(..) => ([0, 1, 2, 3].map(|g| tile_runs(g, g * wt)), 4 * wt),
    };
    let mut own = LineBuf::<F>::zeroed(if matches!(bufs.sums, Sums::Fused(..)) { b * ldz } else { 0 });
    let own_ptr = Ptr::of(own.as_mut_slice());
    let blocks = shape.order.blocks();
    let bias = dp.bias.map(|bv| blocks.map(|blk| &bv[blk * h + u0..blk * h + u0 + w]));
    let peep = peep_views(dp.peephole, h, u0, u0 + w);
    for s in 0..sched.max_len() {
        let n = sched.active[s];
        // SAFETY: this member writes only its own units' columns of step s (gates, c, the
        // unprojected r or h, and h in bfloat16) and, with a projection, its own columns of
        // h after the first barrier; it reads h of step s, completed before the last barrier.
        unsafe {
            let hb_prev = bufs.hb.at((s % 2) * b * pp) as *const u16;
            let hb_next = bufs.hb.at(((s + 1) % 2) * b * pp);
            let (h_out, ors) = bufs.h.at(s + 1);
            if w > 0 {
                for rb in (0..n).step_by(PRODUCT_ROWS) {
                    let rows = PRODUCT_ROWS.min(n - rb);
                    let rec = Operand { a: hb_prev.add(rb * pp), lda: pp, b: &tw.r };
                    match bufs.sums {
                        Sums::Projected(g) => {
                            let c = f32_mut(g.at((s * b + rb) * gp));
                            tile_product(&[rec], rows, &runs, c, gp, true);
                        }
                        Sums::Fused(xb, ip) => {
                            let inp = Operand { a: xb.at((s * b + rb) * ip), lda: ip, b: &tw.w };
                            tile_product(&[inp, rec], rows, &runs, f32_mut(own_ptr.at(rb * ldz)), ldz, false);
                        }
                    }
                }
                for row in 0..n {
                    let z = match bufs.sums {
                        Sums::Projected(g) => blocks.map(|blk| g.slice((s * b + row) * gp + blk * hp + u0, w)),
                        Sums::Fused(..) => blocks.map(|blk| own_ptr.slice(row * ldz + blk * wt, w)),
                    };
                    let out = match bufs.r {
                        Some(r) => r.slice((s * b + row) * h + u0, w),
                        None => std::slice::from_raw_parts_mut(h_out.add(row * ors + u0), w),
                    };
                    forward_units(
                        path,
                        FwdUnits {
                            z,
                            bias,
                            pre: None,
                            peep,
                            c_prev: bufs.c.slice((c_slot(true, s) * b + row) * h + u0, w),
                            c: bufs.c.slice((c_slot(true, s + 1) * b + row) * h + u0, w),
                            hc: None,
                            out,
                        },
                        &dp.ops,
                    );
                    if bufs.r.is_none() {
                        let src = std::slice::from_raw_parts(f32_ptr(h_out.add(row * ors + u0)), w);
                        convert(path, src, std::slice::from_raw_parts_mut(hb_next.add(row * pp + u0), w));
                    }
                }
            }
            if let (Some(r), Some(wp)) = (bufs.r, dp.proj) {
                barrier.wait();
                let r_s = r.at(s * b * h) as *const F;
                gemm(n, p1 - p0, h, h_out.add(p0), ors, 1, false, r_s, h, 1, wp.as_ptr().add(p0 * h), 1, h, 1);
                for row in 0..n {
                    let src = std::slice::from_raw_parts(f32_ptr(h_out.add(row * ors + p0)), p1 - p0);
                    convert(path, src, std::slice::from_raw_parts_mut(hb_next.add(row * pp + p0), p1 - p0));
                }
            }
        }
        barrier.wait();
    }
    own.recycle();
}
