//! bfloat16 products on AMX tiles (Intel Xeon from Sapphire Rapids on), for the opt-in
//! bfloat16 compute path of float32 inference.
//!
//! One tile instruction (`tdpbf16ps`) multiplies a `16 × 32` bfloat16 tile by a `32 × 16` one
//! and adds the products, in float32, into a `16 × 16` float32 tile: 8192 multiply-adds, where
//! an AVX-512 FMA does 16. Weights are packed once into the layout the right operand needs
//! (for each column, pairs of consecutive depth values side by side), each gate's rows padded
//! to a multiple of 16 so that no tile straddles two gates; left operands are bfloat16 rows
//! padded with zeros to a multiple of 32 values. Every product configures the tiles and
//! releases them before it returns, so a thread holds AMX state only while it computes.
//!
//! Rust has no stable AMX intrinsics, so the tile instructions are inline assembly; the
//! compiler never allocates tile registers itself, and the assembly blocks keep their order.

use std::sync::OnceLock;

use crate::alloc::filled;
use crate::bf16::f32_to_bf16;
use crate::error::{check_len, LstmError, Result};
use crate::threads::{broadcast, split_range, with_pool};

/// Rows of a tile (of the left operand and of the accumulator).
pub const TILE_ROWS: usize = 16;
/// Float32 columns of an accumulator tile (and columns of the right operand).
pub const TILE_COLS: usize = 16;
/// bfloat16 values of depth one tile row holds.
pub const TILE_DEPTH: usize = 32;
/// Rows one product call covers: two tiles of rows.
pub const PRODUCT_ROWS: usize = 2 * TILE_ROWS;
/// u16 values of one right-operand tile (16 rows of 64 bytes).
const B_TILE: usize = TILE_DEPTH * TILE_COLS;

/// Whether this process can run AMX bfloat16 tiles: `Ok`, or why not (a sentence naming what
/// is missing). The first call asks Linux for the tile state (`arch_prctl`), which it grants
/// per process; `PYLSTM_NO_AMX=1` in the environment makes the answer "unavailable" (for
/// tests of the error path on AMX machines).
pub fn amx_status() -> std::result::Result<(), String> {
    static STATUS: OnceLock<std::result::Result<(), String>> = OnceLock::new();
    STATUS.get_or_init(probe).clone()
}

#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
fn probe() -> std::result::Result<(), String> {
    use std::arch::x86_64::__cpuid_count;
    if std::env::var("PYLSTM_NO_AMX").is_ok_and(|v| v.trim() == "1") {
        return Err("AMX is switched off by PYLSTM_NO_AMX=1".into());
    }
    if __cpuid_count(0, 0).eax < 7 {
        return Err("this CPU has no AMX (no CPUID leaf 7)".into());
    }
    let edx = __cpuid_count(7, 0).edx;
    let (bf16, tile) = ((edx >> 22) & 1 == 1, (edx >> 24) & 1 == 1);
    if !(bf16 && tile) {
        return Err("this CPU has no AMX bfloat16 tiles (flags amx_tile and amx_bf16)".into());
    }
    const ARCH_REQ_XCOMP_PERM: libc::c_long = 0x1023;
    const XFEATURE_XTILEDATA: libc::c_long = 18;
    // SAFETY: arch_prctl with ARCH_REQ_XCOMP_PERM only changes this process's permission to
    // use the tile state; it reads and writes no memory of ours.
    let rc = unsafe { libc::syscall(libc::SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) };
    if rc != 0 {
        return Err(format!(
            "Linux refused the AMX tile state (arch_prctl ARCH_REQ_XCOMP_PERM: {})",
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}

#[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
fn probe() -> std::result::Result<(), String> {
    Err("AMX tiles need x86-64 Linux".into())
}

/// The error a call asking for the bfloat16 compute path gets where AMX is unavailable.
pub fn require_amx() -> Result<()> {
    amx_status().map_err(|why| {
        LstmError::Value(format!("compute_dtype='bfloat16': needs AMX bfloat16 tiles, unavailable here: {why}"))
    })
}

/// A weight matrix (`[4H, depth]`, four gate groups of `H` rows, row-major) rounded to
/// bfloat16 and packed as the right operand of tile products: column tile `j` (16 output
/// columns: rows of the weight matrix) holds, for each block of 32 depth values, 16 rows of 64
/// bytes, row `r` interleaving depth values `2r` and `2r + 1` of the 16 columns. Gate groups
/// are padded to [`PackedTiles::padded_hidden`] columns and the depth to
/// [`PackedTiles::padded_depth`] with zeros. Built once per weights and reused across calls.
#[derive(Debug, Clone)]
pub struct PackedTiles {
    data: Aligned<u16>,
    hidden: usize,
    depth: usize,
}

/// A buffer whose used part starts on a cache line: a tile row that straddles two lines
/// costs a second load (measured: tile loads a third slower from 16-byte aligned rows).
#[derive(Debug, Clone)]
pub(crate) struct Aligned<T> {
    buf: Vec<T>,
    off: usize,
}

/// Bytes of a cache line.
const LINE: usize = 64;

impl<T: Copy> Aligned<T> {
    /// `n` copies of `value`, starting on a cache line, or a memory error naming `what`.
    pub(crate) fn filled(what: &str, n: usize, value: T) -> Result<Self> {
        let pad = LINE / std::mem::size_of::<T>();
        let buf = filled(what, n + pad, value)?;
        let off = buf.as_ptr().align_offset(LINE).min(pad);
        Ok(Aligned { buf, off })
    }

    /// The `n` values.
    pub(crate) fn as_slice(&self) -> &[T] {
        &self.buf[self.off..]
    }

    /// The `n` values, mutably.
    pub(crate) fn as_mut_slice(&mut self) -> &mut [T] {
        &mut self.buf[self.off..]
    }
}

impl PackedTiles {
    /// Rounds `w` (`[4 * hidden, depth]`) to bfloat16 and packs it, on all threads.
    pub fn new(w: &[f32], hidden: usize, depth: usize) -> Result<Self> {
        check_len("weights", 4 * hidden * depth, w.len())?;
        let hp = hidden.next_multiple_of(TILE_COLS);
        let blocks = depth.div_ceil(TILE_DEPTH);
        let tiles = 4 * hp / TILE_COLS;
        let mut data = Aligned::filled("the bfloat16 tiles", tiles * blocks * B_TILE, 0u16)?;
        let per_tile = blocks * B_TILE;
        let out = SendPtr(data.as_mut_slice().as_mut_ptr());
        let pack_tile = |j: usize| {
            // SAFETY: tile j owns data[j * per_tile..][..per_tile]; tiles are disjoint.
            let dst = unsafe { std::slice::from_raw_parts_mut(out.get().add(j * per_tile), per_tile) };
            let (gate, first) = (j / (hp / TILE_COLS), (j % (hp / TILE_COLS)) * TILE_COLS);
            for col in 0..TILE_COLS.min(hidden.saturating_sub(first)) {
                let row = &w[(gate * hidden + first + col) * depth..][..depth];
                for (k, &v) in row.iter().enumerate() {
                    let (q, pair, half) = (k / TILE_DEPTH, (k % TILE_DEPTH) / 2, k % 2);
                    dst[q * B_TILE + pair * 2 * TILE_COLS + col * 2 + half] = f32_to_bf16(v);
                }
            }
        };
        with_pool(tiles * per_tile, |threads| {
            broadcast(threads, |m| {
                let (j0, j1) = split_range(tiles, threads, m, 1);
                (j0..j1).for_each(pack_tile);
            })
        })?;
        Ok(PackedTiles { data, hidden, depth })
    }

    /// `(hidden, depth)` as packed.
    pub fn dims(&self) -> (usize, usize) {
        (self.hidden, self.depth)
    }

    /// Bytes held.
    pub fn nbytes(&self) -> usize {
        self.data.buf.len() * 2
    }

    /// Columns per gate group: the hidden size rounded up to a multiple of 16.
    pub fn padded_hidden(&self) -> usize {
        self.hidden.next_multiple_of(TILE_COLS)
    }

    /// The depth rounded up to a multiple of 32: the row length left operands need.
    pub fn padded_depth(&self) -> usize {
        self.depth.next_multiple_of(TILE_DEPTH)
    }

    fn blocks(&self) -> usize {
        self.depth.div_ceil(TILE_DEPTH)
    }

    /// Number of column tiles (four gate groups of `padded_hidden / 16`).
    pub fn tiles(&self) -> usize {
        4 * self.padded_hidden() / TILE_COLS
    }
}

/// One direction's input weights `W` and recurrent weights `R`, packed as tiles: what the
/// bfloat16 compute path reads in place of the float32 weights.
#[derive(Debug, Clone)]
pub struct TileWeights {
    /// `W` (`[4H, I]`).
    pub w: PackedTiles,
    /// `R` (`[4H, P]`).
    pub r: PackedTiles,
}

impl TileWeights {
    /// Packs `w` (`[4 * hidden, input]`) and `r` (`[4 * hidden, depth]`).
    pub fn new(w: &[f32], r: &[f32], hidden: usize, input: usize, depth: usize) -> Result<Self> {
        Ok(TileWeights { w: PackedTiles::new(w, hidden, input)?, r: PackedTiles::new(r, hidden, depth)? })
    }

    /// `(hidden, input, depth)` as packed.
    pub fn dims(&self) -> (usize, usize, usize) {
        (self.w.hidden, self.w.depth, self.r.depth)
    }

    /// Bytes held.
    pub fn nbytes(&self) -> usize {
        self.w.nbytes() + self.r.nbytes()
    }
}

#[derive(Clone, Copy)]
struct SendPtr<T>(*mut T);
// SAFETY: the users of a SendPtr write disjoint ranges (see each use).
unsafe impl<T> Send for SendPtr<T> {}
// SAFETY: as for `Send`.
unsafe impl<T> Sync for SendPtr<T> {}
impl<T> SendPtr<T> {
    fn get(self) -> *mut T {
        self.0
    }
}

/// The 64-byte tile configuration `ldtilecfg` reads (palette 1).
#[repr(C, align(64))]
struct TileConfig {
    palette: u8,
    start_row: u8,
    reserved: [u8; 14],
    /// Bytes per row of each tile register.
    colsb: [u16; 16],
    /// Rows of each tile register.
    rows: [u8; 16],
}

/// Tiles 0-3 accumulate (rows `r0` for 0-1, `r1` for 2-3), 4-5 hold left rows (`r0`, `r1`),
/// 6-7 right tiles. Tiles of zero rows stay unconfigured (and unused).
fn config(r0: usize, r1: usize) -> TileConfig {
    let mut cfg = TileConfig { palette: 1, start_row: 0, reserved: [0; 14], colsb: [0; 16], rows: [0; 16] };
    for (tile, rows) in [(0, r0), (1, r0), (2, r1), (3, r1), (4, r0), (5, r1), (6, TILE_ROWS), (7, TILE_ROWS)] {
        if rows > 0 {
            cfg.rows[tile] = rows as u8;
            cfg.colsb[tile] = 64;
        }
    }
    cfg
}

#[cfg(target_arch = "x86_64")]
macro_rules! tile_load {
    ($t:literal, $ptr:expr, $stride:expr) => {
        std::arch::asm!(concat!("tileloadd tmm", $t, ", [{p} + {s}*1]"), p = in(reg) $ptr, s = in(reg) $stride,
            options(nostack, readonly, preserves_flags))
    };
}
#[cfg(target_arch = "x86_64")]
macro_rules! tile_store {
    ($t:literal, $ptr:expr, $stride:expr) => {
        std::arch::asm!(concat!("tilestored [{p} + {s}*1], tmm", $t), p = in(reg) $ptr, s = in(reg) $stride,
            options(nostack, preserves_flags))
    };
}
#[cfg(target_arch = "x86_64")]
macro_rules! tile_dot {
    ($c:literal, $a:literal, $b:literal) => {
        std::arch::asm!(
            concat!("tdpbf16ps tmm", $c, ", tmm", $a, ", tmm", $b),
            options(nostack, nomem, preserves_flags)
        )
    };
}
#[cfg(target_arch = "x86_64")]
macro_rules! tile_zero {
    ($t:literal) => {
        std::arch::asm!(concat!("tilezero tmm", $t), options(nostack, nomem, preserves_flags))
    };
}

/// One product of a sum: bfloat16 left rows `a` (`lda` values apart, zero past the depth)
/// times the packed weights `b`.
#[derive(Clone, Copy)]
pub struct Operand<'a> {
    /// The first left row.
    pub a: *const u16,
    /// Values between left rows (at least `b.padded_depth()`).
    pub lda: usize,
    /// The right operand.
    pub b: &'a PackedTiles,
}

/// A run of column tiles `first..end` whose results land from output column `col` on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TileRun {
    /// First column tile.
    pub first: usize,
    /// One past the last column tile.
    pub end: usize,
    /// Output column of the first tile's first column.
    pub col: usize,
}

impl TileRun {
    /// Tiles `first..end`, each at its own column (`16 j`): the packed layout's columns.
    pub fn in_place(first: usize, end: usize) -> Self {
        TileRun { first, end, col: first * TILE_COLS }
    }
}

/// The left rows of one operand for the two row tiles, and their stride in bytes.
#[derive(Clone, Copy)]
struct Left {
    a: [*const u16; 2],
    stride: usize,
    blocks: usize,
    per_tile: usize,
    tiles: *const u16,
}

/// Where one block of up to two row tiles writes.
#[derive(Clone, Copy)]
struct RowBlock {
    /// Accumulator rows of tile rows 0 and 1 (column 0), and their stride in bytes.
    c: [*mut f32; 2],
    c_stride: usize,
    accumulate: bool,
}

/// One or two column tiles (`N2`: tiles `j` and `j + 1`) by one or two row tiles (`M2`),
/// over the whole depth of every operand, written from output column `col`.
///
/// # Safety
/// The tiles are configured for the block's rows; every operand holds tile `j` (and `j + 1`)
/// and the block's rows; `c` covers 16 (32 with `N2`) columns from `col`.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn column_tiles<const N2: bool, const M2: bool>(rb: &RowBlock, lefts: &[Left], col: usize, j: usize) {
    // SAFETY: the caller guarantees every address below is inside its buffer (see above).
    unsafe {
        let cs = rb.c_stride;
        let bs = 2 * 2 * TILE_COLS;
        let c0 = rb.c[0].add(col);
        let c1 = rb.c[1].add(col);
        if rb.accumulate {
            tile_load!("0", c0, cs);
            if N2 {
                tile_load!("1", c0.add(TILE_COLS), cs);
            }
            if M2 {
                tile_load!("2", c1, cs);
                if N2 {
                    tile_load!("3", c1.add(TILE_COLS), cs);
                }
            }
        } else {
            tile_zero!("0");
            if N2 {
                tile_zero!("1");
            }
            if M2 {
                tile_zero!("2");
                if N2 {
                    tile_zero!("3");
                }
            }
        }
        for l in lefts {
            let b0 = l.tiles.add(j * l.per_tile);
            let b1 = b0.add(l.per_tile);
            for q in 0..l.blocks {
                // Loads interleaved with the products that free their registers: tiles are
                // not renamed, so a load waits for every earlier product reading its register.
                tile_load!("4", l.a[0].add(q * TILE_DEPTH), l.stride);
                tile_load!("6", b0.add(q * B_TILE), bs);
                tile_dot!("0", "4", "6");
                if N2 {
                    tile_load!("7", b1.add(q * B_TILE), bs);
                    tile_dot!("1", "4", "7");
                }
                if M2 {
                    tile_load!("5", l.a[1].add(q * TILE_DEPTH), l.stride);
                    tile_dot!("2", "5", "6");
                    if N2 {
                        tile_dot!("3", "5", "7");
                    }
                }
            }
        }
        tile_store!("0", c0, cs);
        if N2 {
            tile_store!("1", c0.add(TILE_COLS), cs);
        }
        if M2 {
            tile_store!("2", c1, cs);
            if N2 {
                tile_store!("3", c1.add(TILE_COLS), cs);
            }
        }
    }
}

/// `c[rows, ..] (+)= Σ a_i[rows, :] · B_iᵀ` over the operands, for the column tiles of each
/// run: tile `j` of a run writes output columns `col + 16 (j - first)` onwards, `c`'s column
/// `x` of tile `j` being row `16 j + x` of every operand's weights. `c` holds `rows` float32
/// rows of `ldc` values. With `accumulate` the sums are added to `c`, else they replace it.
///
/// # Safety
/// [`amx_status`] is `Ok`; `rows` is at most [`PRODUCT_ROWS`]; every operand's `a` holds
/// `rows` rows as [`Operand`] says and its weights every tile of the runs; every run's columns
/// lie within `ldc`, and no one else writes them meanwhile.
pub unsafe fn tile_product(
    ops: &[Operand<'_>],
    rows: usize,
    runs: &[TileRun],
    c: *mut f32,
    ldc: usize,
    accumulate: bool,
) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: the caller upholds this function's `# Safety` contract (see its docs).
    unsafe {
        debug_assert!(rows <= PRODUCT_ROWS && ops.iter().all(|o| o.lda >= o.b.padded_depth()));
        if rows == 0 {
            return;
        }
        let r0 = rows.min(TILE_ROWS);
        let r1 = rows - r0;
        let cfg = config(r0, r1);
        std::arch::asm!("ldtilecfg [{0}]", in(reg) &cfg as *const TileConfig, options(nostack, readonly, preserves_flags));
        let mut lefts =
            [Left { a: [std::ptr::null(); 2], stride: 0, blocks: 0, per_tile: 0, tiles: std::ptr::null() }; 4];
        debug_assert!(ops.len() <= lefts.len());
        for (l, o) in lefts.iter_mut().zip(ops) {
            *l = Left {
                a: [o.a, o.a.add(r0 * o.lda)],
                stride: o.lda * 2,
                blocks: o.b.blocks(),
                per_tile: o.b.blocks() * B_TILE,
                tiles: o.b.data.as_slice().as_ptr(),
            };
        }
        let lefts = &lefts[..ops.len().min(4)];
        let rb = RowBlock { c: [c, c.add(r0 * ldc)], c_stride: ldc * 4, accumulate };
        for run in runs {
            let mut j = run.first;
            while j < run.end {
                let col = run.col + (j - run.first) * TILE_COLS;
                let pair = j + 2 <= run.end;
                match (pair, r1 > 0) {
                    (true, true) => column_tiles::<true, true>(&rb, lefts, col, j),
                    (true, false) => column_tiles::<true, false>(&rb, lefts, col, j),
                    (false, true) => column_tiles::<false, true>(&rb, lefts, col, j),
                    (false, false) => column_tiles::<false, false>(&rb, lefts, col, j),
                }
                j += if pair { 2 } else { 1 };
            }
        }
        std::arch::asm!("tilerelease", options(nostack, nomem, preserves_flags));
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (ops, rows, runs, c, ldc, accumulate);
        unreachable!("tile products run only where amx_status() is Ok (x86-64)");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bf16::bf16_to_f32;

    fn round(v: f32) -> f32 {
        bf16_to_f32(f32_to_bf16(v))
    }

    fn grid(n: usize, a: usize, b: usize, scale: f32) -> Vec<f32> {
        (0..n).map(|k| ((k * a % b) as f32 - (b / 2) as f32) / scale).collect()
    }

    fn rounded_rows(x: &[f32], rows: usize, depth: usize, ld: usize) -> Vec<u16> {
        let mut a = vec![0u16; rows * ld];
        for r in 0..rows {
            for k in 0..depth {
                a[r * ld + k] = f32_to_bf16(x[r * depth + k]);
            }
        }
        a
    }

    /// The tile product against a float64 sum over the same rounded values, for row counts
    /// that fill one, two and part of a row tile and hidden/depth sizes off the tile grid;
    /// replacing and accumulating.
    #[test]
    fn tile_product_matches_rounded_reference_where_the_cpu_has_amx() {
        if let Err(why) = amx_status() {
            eprintln!("skipped: {why}");
            return;
        }
        for &(hidden, depth, rows) in &[(16, 32, 16), (20, 45, 7), (33, 64, 32), (48, 100, 19), (5, 3, 1)] {
            let w = grid(4 * hidden * depth, 37, 101, 37.0);
            let pk = PackedTiles::new(&w, hidden, depth).unwrap();
            let (hp, dp) = (pk.padded_hidden(), pk.padded_depth());
            let x = grid(rows * depth, 53, 89, 29.0);
            let a = rounded_rows(&x, rows, depth, dp);
            for accumulate in [false, true] {
                let mut c = vec![0.5f32; rows * 4 * hp];
                // SAFETY: amx_status is Ok; buffers sized as tile_product needs.
                unsafe {
                    let op = Operand { a: a.as_ptr(), lda: dp, b: &pk };
                    tile_product(&[op], rows, &[TileRun::in_place(0, pk.tiles())], c.as_mut_ptr(), 4 * hp, accumulate)
                };
                for r in 0..rows {
                    for gate in 0..4 {
                        for u in 0..hp {
                            let dot = |k: usize| {
                                round(x[r * depth + k]) as f64 * round(w[(gate * hidden + u) * depth + k]) as f64
                            };
                            let sum: f64 = if u < hidden { (0..depth).map(dot).sum() } else { 0.0 };
                            let want = sum + if accumulate { 0.5 } else { 0.0 };
                            let got = c[r * 4 * hp + gate * hp + u] as f64;
                            assert!(
                                (got - want).abs() <= 1e-4 * (1.0 + want.abs()),
                                "{hidden}x{depth} rows {rows} r{r} g{gate} u{u}: {got} vs {want}"
                            );
                        }
                    }
                }
            }
        }
    }

    /// Two operands summed into runs of tiles written at their own columns (a member's
    /// compact rows of its gates): `c = x · Wᵀ + h · Rᵀ` for the tiles of units 16..48.
    #[test]
    fn tile_product_sums_operands_into_relocated_runs_where_the_cpu_has_amx() {
        if let Err(why) = amx_status() {
            eprintln!("skipped: {why}");
            return;
        }
        let (hidden, d1, d2, rows) = (60, 40, 70, 21);
        let w = grid(4 * hidden * d1, 29, 97, 41.0);
        let r = grid(4 * hidden * d2, 31, 83, 43.0);
        let (pw, pr) = (PackedTiles::new(&w, hidden, d1).unwrap(), PackedTiles::new(&r, hidden, d2).unwrap());
        let (x, h) = (grid(rows * d1, 17, 71, 23.0), grid(rows * d2, 19, 73, 27.0));
        let (ax, ah) = (rounded_rows(&x, rows, d1, pw.padded_depth()), rounded_rows(&h, rows, d2, pr.padded_depth()));
        let per_gate = pw.padded_hidden() / TILE_COLS;
        let (u0, u1) = (16, 48);
        let wt = u1 - u0;
        let runs: Vec<TileRun> = (0..4)
            .map(|g| TileRun { first: g * per_gate + u0 / 16, end: g * per_gate + u1 / 16, col: g * wt })
            .collect();
        let mut c = vec![f32::NAN; rows * 4 * wt];
        // SAFETY: amx_status is Ok; buffers sized as tile_product needs.
        unsafe {
            let ops = [
                Operand { a: ax.as_ptr(), lda: pw.padded_depth(), b: &pw },
                Operand { a: ah.as_ptr(), lda: pr.padded_depth(), b: &pr },
            ];
            tile_product(&ops, rows, &runs, c.as_mut_ptr(), 4 * wt, false)
        };
        for row in 0..rows {
            for g in 0..4 {
                for u in u0..u1 {
                    let sx: f64 = (0..d1)
                        .map(|k| round(x[row * d1 + k]) as f64 * round(w[(g * hidden + u) * d1 + k]) as f64)
                        .sum();
                    let sh: f64 = (0..d2)
                        .map(|k| round(h[row * d2 + k]) as f64 * round(r[(g * hidden + u) * d2 + k]) as f64)
                        .sum();
                    let got = c[row * 4 * wt + g * wt + (u - u0)] as f64;
                    assert!(
                        (got - sx - sh).abs() <= 1e-4 * (1.0 + (sx + sh).abs()),
                        "row {row} gate {g} unit {u}: {got} vs {}",
                        sx + sh
                    );
                }
            }
        }
    }
}
