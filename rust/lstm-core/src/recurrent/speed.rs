//! Single-thread GFLOP/s of the step kernels (ignored: run by hand).

use super::*;
use std::time::Instant;

/// `cargo test --release -p lstm-core speed -- --ignored --nocapture`: single-thread GFLOP/s.
#[test]
#[ignore]
fn report_step_kernel_speed() {
    let path = KernelPath::detect();
    for &(rows, depth, ncols) in &[
        (1usize, 512usize, 1024usize),
        (4, 512, 1024),
        (16, 512, 1024),
        (32, 1024, 2048),
        (32, 256, 512),
        (8, 256, 128),
        (16, 256, 128),
        (8, 64, 64),
        (1, 256, 128),
    ] {
        let w: Vec<f32> = (0..ncols * depth).map(|i| (i % 7) as f32 * 0.01).collect();
        let lhs: Vec<f32> = (0..rows * depth).map(|i| (i % 5) as f32 * 0.01).collect();
        let mut out = vec![0f32; rows * ncols];
        let segs = [Segment { out_col: 0, width: ncols, w_start: 0, padded: false }];
        let reps = 200;
        let t = Instant::now();
        for _ in 0..reps {
            // SAFETY: the caller upholds this function's `# Safety` contract (see its docs).
            unsafe {
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
                    ncols,
                    true,
                )
            };
        }
        let dot = t.elapsed().as_secs_f64() / reps as f64;
        let t = Instant::now();
        for _ in 0..reps {
            // SAFETY: the caller upholds this function's `# Safety` contract (see its docs).
            unsafe {
                axpy_cols(
                    path,
                    rows,
                    depth,
                    lhs.as_ptr(),
                    depth,
                    w.as_ptr(),
                    ncols,
                    32,
                    &segs,
                    out.as_mut_ptr(),
                    ncols,
                    true,
                )
            };
        }
        let axpy_strided = t.elapsed().as_secs_f64() / reps as f64;
        let (panel, psegs) = pack_rows(path, &w, depth, depth, &[(0, 0, ncols)]);
        let t = Instant::now();
        for _ in 0..reps {
            // SAFETY: the caller upholds this function's `# Safety` contract (see its docs).
            unsafe {
                axpy_cols(
                    path,
                    rows,
                    depth,
                    lhs.as_ptr(),
                    depth,
                    panel.as_ptr(),
                    32,
                    depth * 32,
                    &psegs,
                    out.as_mut_ptr(),
                    ncols,
                    true,
                )
            };
        }
        let axpy = t.elapsed().as_secs_f64() / reps as f64;
        let fl = 2.0 * (rows * depth * ncols) as f64;
        let t = Instant::now();
        for _ in 0..reps {
            std::hint::black_box(pack_rows(path, &w, depth, depth, &[(0, 0, ncols)]));
        }
        let pack = t.elapsed().as_secs_f64() / reps as f64;
        println!("rows {rows} depth {depth} cols {ncols}: dot {:.1} GF/s, axpy strided {:.1} GF/s, packed {:.1} GF/s, pack {:.1} GB/s", fl / dot / 1e9, fl / axpy_strided / 1e9, fl / axpy / 1e9, (ncols * depth * 4) as f64 / pack / 1e9);
    }
}
