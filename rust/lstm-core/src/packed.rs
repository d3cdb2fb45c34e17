//! Opt-in float32 weights packed once, for modules that run many inference calls on the same
//! weights (as onnxruntime packs a model's constant weights when it loads the model).
//!
//! Every call otherwise transposes `W` and `R` into the panels the tile kernel streams: one
//! pass through both matrices, 15-20% of a small-batch forward call. A [`PackedPanel`] holds
//! that layout for the whole matrix, so a call reads it in place. The arithmetic is the same
//! (same kernel, same order of operations), so results are those of the per-call path.

use crate::error::{check_len, Result};
use crate::kernel::active_kernel;
use crate::recurrent::{pack_rows_fresh, tile_width, Segment};

/// Hidden units per tile: a thread's slice of a packed panel starts on a tile.
pub(crate) const PANEL_UNITS: usize = 32;

/// A float32 weight matrix `[4 * hidden, depth]` (`W` or `R` of one direction) packed into
/// tiles of 32 rows per gate block, transposed, for the tile kernel.
#[derive(Debug, Clone)]
pub struct PackedPanel {
    panel: Vec<f32>,
    /// Where each gate block's tiles start.
    starts: [usize; 4],
    hidden: usize,
    depth: usize,
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
        debug_assert!(u0.is_multiple_of(PANEL_UNITS) && u1 <= self.hidden);
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
}
