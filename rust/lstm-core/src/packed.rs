//! Opt-in float32 weights packed once, for modules that run many inference calls on the same
//! weights (as onnxruntime packs a model's constant weights when it loads the model).
//!
//! Every call otherwise transposes `W` and `R` into the panels the tile kernel streams: one
//! pass through both matrices, 10-30% of a small-batch forward call. A [`PackedPanel`] holds
//! that layout for the whole matrix, so a call reads it in place. The arithmetic is the same
//! (same kernel, same order of operations), so results are those of the per-call path.

use crate::error::{check_len, Result};
use crate::kernel::active_kernel;
use crate::recurrent::{pack_rows_fresh, tile_width, Segment};

/// Hidden units per tile: a thread's slice of a packed panel starts on a tile.
pub(crate) const PANEL_UNITS: usize = 32;

/// A float32 weight matrix `[4 * hidden, depth]` (`W` or `R` of one direction) packed into
/// tiles of 32 rows per gate block, transposed, for the tile kernel.
pub struct PackedPanel {
    panel: Vec<f32>,
    /// Where each gate block's tiles start.
    starts: [usize; 4],
    hidden: usize,
    depth: usize,
}

impl std::fmt::Debug for PackedPanel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PackedPanel").field("hidden", &self.hidden).field("depth", &self.depth).finish()
    }
}

impl PackedPanel {
    /// Packs `w` (row-major `[4 * hidden, depth]`).
    pub fn new(w: &[f32], hidden: usize, depth: usize) -> Result<Self> {
        check_len("weights", 4 * hidden * depth, w.len())?;
        let groups: Vec<(usize, usize, usize)> = (0..4).map(|blk| (blk * hidden, blk * hidden, hidden)).collect();
        let (panel, segs) = pack_rows_fresh(active_kernel(), w, depth, depth, &groups);
        let starts = std::array::from_fn(|blk| segs[blk].w_start);
        Ok(PackedPanel { panel, starts, hidden, depth })
    }

    /// `(hidden, depth)`: the matrix is `[4 * hidden, depth]`.
    pub fn dims(&self) -> (usize, usize) {
        (self.hidden, self.depth)
    }

    /// Bytes held.
    pub fn nbytes(&self) -> usize {
        self.panel.len() * 4
    }

    pub(crate) fn as_ptr(&self) -> *const f32 {
        self.panel.as_ptr()
    }

    /// The segments of hidden units `u0..u1` in all four gates (output columns `blk * hidden +
    /// u`), for `axpy_cols` with `w_rs = 32` and `tile_step = depth * 32`. `u0` must start a
    /// tile (a multiple of [`PANEL_UNITS`]).
    pub(crate) fn segments(&self, u0: usize, u1: usize) -> Vec<Segment> {
        debug_assert!((u0 == u1 || u0.is_multiple_of(PANEL_UNITS)) && u1 <= self.hidden);
        let tw = tile_width::<f32>();
        (0..4)
            .map(|blk| Segment {
                out_col: blk * self.hidden + u0,
                width: u1 - u0,
                w_start: self.starts[blk] + u0 / tw * self.depth * tw,
                padded: true,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recurrent::axpy_cols;

    #[test]
    fn packed_segments_give_the_plain_product() {
        let (hidden, depth, rows) = (70usize, 37usize, 5usize);
        let w: Vec<f32> = (0..4 * hidden * depth).map(|i| ((i * 7919) % 211) as f32 / 211.0 - 0.5).collect();
        let lhs: Vec<f32> = (0..rows * depth).map(|i| ((i * 131) % 97) as f32 / 97.0 - 0.5).collect();
        let packed = PackedPanel::new(&w, hidden, depth).unwrap();
        assert_eq!(packed.dims(), (hidden, depth));
        let g = 4 * hidden;
        let mut out = vec![0f32; rows * g];
        for (u0, u1) in [(0, 32), (32, 64), (64, 70)] {
            let segs = packed.segments(u0, u1);
            // SAFETY: the segments address the panel; out is rows x g.
            unsafe {
                axpy_cols(
                    active_kernel(),
                    rows,
                    depth,
                    lhs.as_ptr(),
                    depth,
                    packed.as_ptr(),
                    32,
                    depth * 32,
                    &segs,
                    out.as_mut_ptr(),
                    g,
                    false,
                )
            };
        }
        for r in 0..rows {
            for c in 0..g {
                let expect: f64 = (0..depth).map(|k| lhs[r * depth + k] as f64 * w[c * depth + k] as f64).sum();
                assert!((out[r * g + c] as f64 - expect).abs() < 1e-4, "r{r} c{c}");
            }
        }
        assert!(PackedPanel::new(&w[1..], hidden, depth).is_err());
    }

    /// More threads than tiles (hidden 100 = 4 tiles; members without units) and a layer read
    /// from packs gives the per-call result.
    #[test]
    fn layer_with_packs_matches_layer_without() {
        use crate::activation::Activation;
        use crate::kernel::CellOps;
        use crate::layer::{layer_forward, DirParams, GateOrder, LayerShape};
        use crate::schedule::Schedule;
        use crate::threads::{set_inline_work, set_num_threads};

        let (t, b, i, h) = (3usize, 64usize, 20usize, 100usize);
        let val = |n: usize, m: usize| (0..n).map(|k| ((k * 7919 + m) % 211) as f32 / 211.0 - 0.5).collect::<Vec<_>>();
        let (w, r, x) = (val(4 * h * i, 1), val(4 * h * h, 2), val(t * b * i, 3));
        let (pw, pr) = (PackedPanel::new(&w, h, i).unwrap(), PackedPanel::new(&r, h, h).unwrap());
        let ops = CellOps {
            f: Activation::Sigmoid,
            g: Activation::Tanh,
            h: Activation::Tanh,
            clip: None,
            input_forget: false,
        };
        let shape = LayerShape { input: i, hidden: h, proj: 0, order: GateOrder::TORCH };
        let sched = Schedule::new(t, b, None).unwrap();
        let dir = |packed: bool| DirParams {
            w: &w,
            r: &r,
            r_bf16: None,
            w_packed: packed.then_some(&pw),
            r_packed: packed.then_some(&pr),
            tiles: None,
            bias: None,
            peephole: None,
            proj: None,
            reverse: false,
            ops,
        };
        set_inline_work(0);
        for threads in [1, 6] {
            set_num_threads(threads).unwrap();
            let plain = layer_forward(&shape, &[dir(false)], &sched, &x, None, None, false).unwrap();
            let packed = layer_forward(&shape, &[dir(true)], &sched, &x, None, None, false).unwrap();
            assert_eq!(plain.y, packed.y, "{threads} threads");
        }
        set_num_threads(2).unwrap();
        set_inline_work(1 << 20);
    }
}
