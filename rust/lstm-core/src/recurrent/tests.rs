//! The step kernels against a plain reference on every path this CPU has.

use super::*;

const PATHS: [KernelPath; 4] = [KernelPath::Scalar, KernelPath::Avx2, KernelPath::Avx512, KernelPath::Neon];

fn val<F: Real>(i: usize, m: usize) -> F {
    F::from_f64(((i * 7919) % m) as f64 / m as f64 - 0.5)
}

/// Both kernels against a naive sum, for every row count 1..=11 (partial row blocks),
/// depths that are and are not multiples of the vector width, and partial tiles.
fn check<F: Real>(tol: f64) {
    for &(depth, rows) in &[(37usize, 11usize), (64, 1), (5, 3), (130, 8)] {
        let ncols = 90;
        // Weight matrix [ncols + 3, depth] for the dot form; its transpose view for axpy.
        let w: Vec<F> = (0..(ncols + 3) * depth).map(|i| val(i, 113)).collect();
        let wt: Vec<F> = (0..depth * (ncols + 3)).map(|i| w[(i % (ncols + 3)) * depth + i / (ncols + 3)]).collect();
        let lhs: Vec<F> = (0..rows * depth).map(|i| val(i * 13 + 1, 97)).collect();
        let segs = [
            Segment { out_col: 3, width: 40, w_start: 0, padded: false },
            Segment { out_col: 50, width: 50, w_start: 43, padded: false },
        ];
        let want = |r: usize, wcol: usize| -> f64 {
            (0..depth).map(|kk| lhs[r * depth + kk].to_f64() * w[wcol * depth + kk].to_f64()).sum()
        };
        for path in PATHS.into_iter().filter(|p| p.supported()) {
            for accumulate in [false, true] {
                for mode in 0..3 {
                    let axpy = mode > 0;
                    let out_rs = 104;
                    let mut out = vec![F::ONE; rows * out_rs];
                    // SAFETY: the caller upholds this function's `# Safety` contract (see its docs).
                    unsafe {
                        if mode == 2 {
                            // Weight rows = columns of the transposed view, packed.
                            let groups: Vec<(usize, usize, usize)> =
                                segs.iter().map(|g| (g.out_col, g.w_start, g.width)).collect();
                            let (panel, psegs) = pack_rows(path, &w, depth, depth, &groups);
                            let tw = tile_width::<F>();
                            axpy_cols(
                                path,
                                rows,
                                depth,
                                lhs.as_ptr(),
                                depth,
                                panel.as_ptr(),
                                tw,
                                depth * tw,
                                &psegs,
                                out.as_mut_ptr(),
                                out_rs,
                                accumulate,
                            );
                        } else if axpy {
                            axpy_cols(
                                path,
                                rows,
                                depth,
                                lhs.as_ptr(),
                                depth,
                                wt.as_ptr(),
                                ncols + 3,
                                tile_width::<F>(),
                                &segs,
                                out.as_mut_ptr(),
                                out_rs,
                                accumulate,
                            );
                        } else {
                            dot_rows(
                                path,
                                rows,
                                depth,
                                lhs.as_ptr(),
                                depth,
                                w.as_ptr(),
                                depth,
                                &segs,
                                out.as_mut_ptr(),
                                out_rs,
                                accumulate,
                            );
                        }
                    }
                    for r in 0..rows {
                        for seg in &segs {
                            for j in 0..seg.width {
                                let expect = want(r, seg.w_start + j) + if accumulate { 1.0 } else { 0.0 };
                                let got = out[r * out_rs + seg.out_col + j].to_f64();
                                assert!(
                                    (got - expect).abs() < tol,
                                    "{path:?} axpy={axpy} depth={depth} r{r} j{j}: {got} vs {expect}"
                                );
                            }
                        }
                        // Columns outside the segments are untouched.
                        for c in [0, 1, 2, 43, 49, 100, 103] {
                            assert_eq!(out[r * out_rs + c].to_f64(), 1.0);
                        }
                    }
                }
            }
        }
    }
}

/// The transposed product against a naive sum: row counts around the tile width, the half
/// tile and the 16-row transpose (partial blocks of each), weight-row ranges that start inside a block
/// and end on a partial one, depths off the vector width, overwrite and accumulate; columns
/// outside the range and rows past `rows` are untouched.
fn check_weight_rows<F: Real>(tol: f64) {
    let tw = tile_width::<F>();
    for &(rows, depth, (c0, c1)) in &[
        (8usize, 37usize, (0usize, 21usize)),
        (tw / 2, 20, (1, 52)),
        (tw, 64, (3, 40)),
        (tw + 5, 19, (5, 6)),
        (tw + tw / 2 + 1, 33, (0, 17)),
        (3 * tw - 1, 130, (16, 49)),
    ] {
        let (g, out_rs) = (52, 55);
        let w: Vec<F> = (0..g * depth).map(|i| val(i, 113)).collect();
        let x: Vec<F> = (0..rows * depth).map(|i| val(i * 13 + 1, 97)).collect();
        for path in PATHS.into_iter().filter(|p| p.supported()) {
            let (xt, segs) = pack_rows(path, &x, depth, depth, &[(0, 0, rows)]);
            for accumulate in [false, true] {
                let mut out = vec![F::ONE; (rows + 1) * out_rs];
                // SAFETY: the caller upholds this function's `# Safety` contract (see its docs).
                unsafe {
                    weight_rows_product(
                        path,
                        rows,
                        depth,
                        xt.as_ptr().add(segs[0].w_start),
                        w.as_ptr(),
                        depth,
                        &[(c0, c1)],
                        out.as_mut_ptr(),
                        out_rs,
                        accumulate,
                    )
                };
                for r in 0..=rows {
                    for c in 0..out_rs {
                        let inside = r < rows && (c0..c1).contains(&c);
                        let dot: f64 = (0..depth)
                            .map(|k| x[r.min(rows - 1) * depth + k].to_f64() * w[c.min(g - 1) * depth + k].to_f64())
                            .sum();
                        let expect = if !inside { 1.0 } else { dot + if accumulate { 1.0 } else { 0.0 } };
                        let got = out[r * out_rs + c].to_f64();
                        assert!(
                            (got - expect).abs() < tol,
                            "{path:?} rows={rows} depth={depth} r{r} c{c}: {got} vs {expect}"
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn weight_rows_product_matches_naive_f32() {
    check_weight_rows::<f32>(1e-4);
}

#[test]
fn weight_rows_product_matches_naive_f64() {
    check_weight_rows::<f64>(1e-12);
}

#[test]
fn panel_transpose_matches_naive_at_every_alignment() {
    for path in PATHS.into_iter().filter(|p| p.supported()) {
        for depth in [1usize, 15, 16, 17, 31, 33, 100] {
            for shift in 0..16 {
                let w: Vec<f32> = (0..shift + 32 * depth).map(|i| val(i, 101)).collect();
                let src = &w[shift..];
                let rows: [*const f32; 32] = std::array::from_fn(|j| src[j * depth..].as_ptr());
                let mut out = vec![f32::NAN; 32 * depth];
                // SAFETY: 32 rows of `depth` values; `out` holds depth * 32.
                unsafe { transpose_tile(path, &rows, depth, out.as_mut_ptr()) };
                for kk in 0..depth {
                    for j in 0..32 {
                        assert_eq!(out[kk * 32 + j], src[j * depth + kk], "{path:?} depth {depth} shift {shift}");
                    }
                }
            }
        }
    }
}

#[test]
fn step_products_match_naive_f32() {
    check::<f32>(1e-4);
}

#[test]
fn step_products_match_naive_f64() {
    check::<f64>(1e-12);
}
