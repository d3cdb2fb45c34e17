//! Engine-level tests: the threaded, step-space engine against a naive per-sequence reference,
//! and its backward pass against central finite differences in f64.

use crate::activation::Activation;
use crate::kernel::CellOps;
use crate::layer::{layer_backward, layer_forward, DirParams, GateOrder, LayerShape};
use crate::network::{network_backward, network_forward};
use crate::schedule::Schedule;
use crate::threads::{set_inline_work, set_num_threads};

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
    }
    fn vec(&mut self, n: usize, scale: f64) -> Vec<f64> {
        (0..n).map(|_| self.next() * scale).collect()
    }
}

#[derive(Clone)]
struct Config {
    t: usize,
    b: usize,
    i: usize,
    h: usize,
    proj: usize,
    dirs: usize,
    peep: bool,
    lengths: Option<Vec<usize>>,
    ops: CellOps,
    order: GateOrder,
}

struct Params {
    w: Vec<Vec<f64>>,
    r: Vec<Vec<f64>>,
    bias: Vec<Vec<f64>>,
    peep: Vec<Vec<f64>>,
    proj: Vec<Vec<f64>>,
}

fn params(cfg: &Config, rng: &mut Rng) -> Params {
    let p = if cfg.proj > 0 { cfg.proj } else { cfg.h };
    let d = cfg.dirs;
    Params {
        w: (0..d).map(|_| rng.vec(4 * cfg.h * cfg.i, 0.5)).collect(),
        r: (0..d).map(|_| rng.vec(4 * cfg.h * p, 0.5)).collect(),
        bias: (0..d).map(|_| rng.vec(4 * cfg.h, 0.5)).collect(),
        peep: (0..d).map(|_| rng.vec(3 * cfg.h, 0.5)).collect(),
        proj: (0..d).map(|_| rng.vec(p * cfg.h, 0.5)).collect(),
    }
}

fn dir_params<'a>(cfg: &Config, ps: &'a Params) -> Vec<DirParams<'a, f64>> {
    (0..cfg.dirs)
        .map(|d| DirParams {
            w: &ps.w[d],
            r: &ps.r[d],
            r_bf16: None,
            w_packed: None,
            r_packed: None,
            tiles: None,
            bias: Some(&ps.bias[d]),
            peephole: cfg.peep.then(|| &ps.peep[d][..]),
            proj: (cfg.proj > 0).then(|| &ps.proj[d][..]),
            reverse: d == 1,
            ops: cfg.ops,
        })
        .collect()
}

fn shape(cfg: &Config) -> LayerShape {
    LayerShape { input: cfg.i, hidden: cfg.h, proj: cfg.proj, order: cfg.order }
}

/// Straightforward per-sequence, per-step evaluation of the equations.
fn naive(cfg: &Config, ps: &Params, x: &[f64], h0: &[f64], c0: &[f64]) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let (t_len, b, i, h) = (cfg.t, cfg.b, cfg.i, cfg.h);
    let p = if cfg.proj > 0 { cfg.proj } else { h };
    let nd = cfg.dirs;
    let blk = [cfg.order.i, cfg.order.o, cfg.order.f, cfg.order.c];
    let mut y = vec![0.0; t_len * b * nd * p];
    let mut hn = vec![0.0; nd * b * p];
    let mut cn = vec![0.0; nd * b * h];
    let clip = |v: f64| cfg.ops.clip.map_or(v, |c| v.clamp(-c, c));
    for d in 0..nd {
        for bi in 0..b {
            let len = cfg.lengths.as_ref().map_or(t_len, |l| l[bi]);
            let mut hs = h0[(d * b + bi) * p..][..p].to_vec();
            let mut cs = c0[(d * b + bi) * h..][..h].to_vec();
            for s in 0..len {
                let t = if d == 1 { len - 1 - s } else { s };
                let xt = &x[(t * b + bi) * i..][..i];
                let mut r_out = vec![0.0; h];
                let mut c_new = vec![0.0; h];
                for u in 0..h {
                    let z = |gate: usize| {
                        let row = blk[gate] * h + u;
                        let mut acc = ps.bias[d][row];
                        acc += ps.w[d][row * i..(row + 1) * i].iter().zip(xt).map(|(a, b)| a * b).sum::<f64>();
                        acc += ps.r[d][row * p..(row + 1) * p].iter().zip(&hs).map(|(a, b)| a * b).sum::<f64>();
                        acc
                    };
                    let pe = |k: usize| if cfg.peep { ps.peep[d][k * h + u] } else { 0.0 };
                    let ig = cfg.ops.f.apply(clip(z(0) + pe(0) * cs[u]));
                    let fg = if cfg.ops.input_forget { 1.0 - ig } else { cfg.ops.f.apply(clip(z(2) + pe(2) * cs[u])) };
                    let gg = cfg.ops.g.apply(clip(z(3)));
                    let c = fg * cs[u] + ig * gg;
                    let og = cfg.ops.f.apply(clip(z(1) + pe(1) * c));
                    c_new[u] = c;
                    r_out[u] = og * cfg.ops.h.apply(c);
                }
                hs = if cfg.proj > 0 {
                    (0..p).map(|q| (0..h).map(|u| ps.proj[d][q * h + u] * r_out[u]).sum()).collect()
                } else {
                    r_out
                };
                cs = c_new;
                y[((t * b + bi) * nd + d) * p..][..p].copy_from_slice(&hs);
            }
            hn[(d * b + bi) * p..][..p].copy_from_slice(&hs);
            cn[(d * b + bi) * h..][..h].copy_from_slice(&cs);
        }
    }
    (y, hn, cn)
}

fn default_ops() -> CellOps {
    CellOps { f: Activation::Sigmoid, g: Activation::Tanh, h: Activation::Tanh, clip: None, input_forget: false }
}

fn configs() -> Vec<Config> {
    let base = Config {
        t: 5,
        b: 3,
        i: 4,
        h: 6,
        proj: 0,
        dirs: 1,
        peep: false,
        lengths: None,
        ops: default_ops(),
        order: GateOrder::ONNX,
    };
    vec![
        base.clone(),
        Config { dirs: 2, lengths: Some(vec![5, 2, 4]), ..base.clone() },
        Config { peep: true, ops: CellOps { clip: Some(0.7), ..default_ops() }, ..base.clone() },
        Config { ops: CellOps { input_forget: true, ..default_ops() }, peep: true, dirs: 2, ..base.clone() },
        Config { proj: 3, dirs: 2, lengths: Some(vec![1, 5, 3]), order: GateOrder::TORCH, ..base.clone() },
        Config {
            ops: CellOps {
                f: Activation::HardSigmoid { alpha: 0.3, beta: 0.45 },
                g: Activation::Elu { alpha: 0.8 },
                h: Activation::Softsign,
                clip: None,
                input_forget: false,
            },
            ..base.clone()
        },
        Config {
            ops: CellOps {
                f: Activation::Sigmoid,
                g: Activation::Softplus,
                h: Activation::ScaledTanh { alpha: 1.2, beta: 0.6 },
                clip: None,
                input_forget: false,
            },
            h: 40,
            b: 9,
            dirs: 2,
            lengths: Some(vec![5, 1, 2, 3, 4, 5, 5, 2, 1]),
            ..base.clone()
        },
        // Enough rows for the transposed-panel step kernel.
        Config { t: 48, b: 44, h: 36, dirs: 2, lengths: Some((0..44).map(|k| 48 - k).collect()), ..base.clone() },
        // One step of a batch that fills whole (half) tiles: R read in place by the transposed
        // tile kernel (a full and a half tile at batch 24), as is W.
        Config { t: 1, b: 16, h: 20, dirs: 2, peep: true, ..base.clone() },
        Config { t: 1, b: 24, h: 12, proj: 5, order: GateOrder::TORCH, ..base.clone() },
        // Larger than the packed-kernel batch limit: the per-step GEMM path.
        Config {
            b: 66,
            h: 20,
            dirs: 2,
            peep: true,
            lengths: Some((0..66).map(|k| 1 + k % 5).collect()),
            ..base.clone()
        },
        // No inputs at all (input_size 0): the gates come from the bias and the recurrence, on
        // every projection path (a few rows, the tile kernels, the GEMM library past 1024 rows).
        Config { i: 0, dirs: 2, peep: true, lengths: Some(vec![5, 2, 4]), ..base.clone() },
        Config { i: 0, t: 1, b: 16, h: 20, dirs: 2, ..base.clone() },
        Config { i: 0, t: 20, b: 66, h: 20, dirs: 2, proj: 7, order: GateOrder::TORCH, ..base.clone() },
        Config { i: 0, t: 30, b: 40, h: 17, dirs: 2, lengths: Some((0..40).map(|k| 1 + k % 30).collect()), ..base },
    ]
}

fn inputs(cfg: &Config, rng: &mut Rng) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let p = if cfg.proj > 0 { cfg.proj } else { cfg.h };
    (rng.vec(cfg.t * cfg.b * cfg.i, 1.0), rng.vec(cfg.dirs * cfg.b * p, 0.5), rng.vec(cfg.dirs * cfg.b * cfg.h, 0.5))
}

fn max_diff(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max)
}

#[test]
fn forward_matches_naive_reference_with_one_and_two_threads() {
    // Small problems normally stay on the caller's thread: force the pool here.
    set_inline_work(0);
    let mut rng = Rng(0x9e3779b97f4a7c15);
    for cfg in configs() {
        let ps = params(&cfg, &mut rng);
        let (x, h0, c0) = inputs(&cfg, &mut rng);
        let (ey, ehn, ecn) = naive(&cfg, &ps, &x, &h0, &c0);
        let sched = Schedule::new(cfg.t, cfg.b, cfg.lengths.as_deref()).unwrap();
        for threads in [1, 2, 3] {
            set_num_threads(threads).unwrap();
            let out =
                layer_forward(&shape(&cfg), &dir_params(&cfg, &ps), &sched, &x, Some(&h0), Some(&c0), false).unwrap();
            assert!(max_diff(&out.y, &ey) < 1e-12, "y threads={threads} h={} dirs={}", cfg.h, cfg.dirs);
            assert!(max_diff(&out.hn, &ehn) < 1e-12);
            assert!(max_diff(&out.cn, &ecn) < 1e-12);
        }
    }
    set_num_threads(2).unwrap();
}

#[test]
fn backward_matches_finite_differences() {
    let mut rng = Rng(12345);
    for cfg in configs() {
        let mut ps = params(&cfg, &mut rng);
        let (mut x, h0, c0) = inputs(&cfg, &mut rng);
        let sched = Schedule::new(cfg.t, cfg.b, cfg.lengths.as_deref()).unwrap();
        let out = layer_forward(&shape(&cfg), &dir_params(&cfg, &ps), &sched, &x, Some(&h0), Some(&c0), true).unwrap();
        let wy = rng.vec(out.y.len(), 1.0);
        let wh = rng.vec(out.hn.len(), 1.0);
        let wc = rng.vec(out.cn.len(), 1.0);
        let tape = out.tape.unwrap();
        let g =
            layer_backward(&shape(&cfg), &dir_params(&cfg, &ps), &tape, &x, Some(&wy), Some(&wh), Some(&wc)).unwrap();
        let loss = |ps: &Params, x: &[f64]| {
            let o = layer_forward(&shape(&cfg), &dir_params(&cfg, ps), &sched, x, Some(&h0), Some(&c0), false).unwrap();
            let dot = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(p, q)| p * q).sum::<f64>();
            dot(&o.y, &wy) + dot(&o.hn, &wh) + dot(&o.cn, &wc)
        };
        let eps = 1e-6;
        let check = |name: &str, analytic: f64, fd: f64| {
            assert!(
                (analytic - fd).abs() <= 1e-6 * (1.0 + fd.abs()),
                "{name}: analytic {analytic} fd {fd} (h={}, dirs={})",
                cfg.h,
                cfg.dirs
            );
        };
        // Probe about 150 entries of each array: enough to catch any indexing mistake.
        for k in (0..x.len()).step_by((x.len() / 150).max(7)) {
            let v = x[k];
            x[k] = v + eps;
            let lp = loss(&ps, &x);
            x[k] = v - eps;
            let lm = loss(&ps, &x);
            x[k] = v;
            check("dx", g.dx[k], (lp - lm) / (2.0 * eps));
        }
        for d in 0..cfg.dirs {
            let mut probe = |sel: &dyn Fn(&mut Params) -> &mut Vec<f64>, analytic: &[f64], name: &str| {
                let n = sel(&mut ps).len();
                for k in (0..n).step_by((n / 150).max(5)) {
                    let v = sel(&mut ps)[k];
                    sel(&mut ps)[k] = v + eps;
                    let lp = loss(&ps, &x);
                    sel(&mut ps)[k] = v - eps;
                    let lm = loss(&ps, &x);
                    sel(&mut ps)[k] = v;
                    check(name, analytic[k], (lp - lm) / (2.0 * eps));
                }
            };
            let gd = &g.dirs[d];
            probe(&|p: &mut Params| &mut p.w[d], &gd.w, "dW");
            probe(&|p: &mut Params| &mut p.r[d], &gd.r, "dR");
            probe(&|p: &mut Params| &mut p.bias[d], &gd.bias, "dB");
            if cfg.peep {
                probe(&|p: &mut Params| &mut p.peep[d], gd.peephole.as_ref().unwrap(), "dP");
            }
            if cfg.proj > 0 {
                probe(&|p: &mut Params| &mut p.proj[d], gd.proj.as_ref().unwrap(), "dWproj");
            }
        }
    }
}

#[test]
fn network_backward_matches_finite_differences_through_dropout() {
    let mut rng = Rng(777);
    let cfg = Config {
        t: 4,
        b: 2,
        i: 3,
        h: 5,
        proj: 0,
        dirs: 2,
        peep: false,
        lengths: Some(vec![4, 2]),
        ops: default_ops(),
        order: GateOrder::TORCH,
    };
    let first = shape(&cfg);
    let ps0 = params(&cfg, &mut rng);
    let cfg1 = Config { i: 2 * cfg.h, ..cfg.clone() };
    let ps1 = params(&cfg1, &mut rng);
    let x = rng.vec(cfg.t * cfg.b * cfg.i, 1.0);
    let sched = Schedule::new(cfg.t, cfg.b, cfg.lengths.as_deref()).unwrap();
    let mask: Vec<f64> = (0..cfg.t * cfg.b * 2 * cfg.h).map(|k| if k % 3 == 0 { 0.0 } else { 1.5 }).collect();
    let masks = [Some(&mask[..])];
    let run = |x: &[f64], keep: bool| {
        let layers = vec![dir_params(&cfg, &ps0), dir_params(&cfg1, &ps1)];
        network_forward(&first, &layers, &sched, x, None, None, &masks, keep).unwrap()
    };
    let out = run(&x, true);
    let wy = rng.vec(out.y.len(), 1.0);
    let layers = vec![dir_params(&cfg, &ps0), dir_params(&cfg1, &ps1)];
    let g = network_backward(&first, &layers, out.tape.as_ref().unwrap(), Some(&wy), None, None, false).unwrap();
    let mut xp = x.clone();
    for k in 0..x.len() {
        let eps = 1e-6;
        xp[k] = x[k] + eps;
        let lp: f64 = run(&xp, false).y.iter().zip(&wy).map(|(a, b)| a * b).sum();
        xp[k] = x[k] - eps;
        let lm: f64 = run(&xp, false).y.iter().zip(&wy).map(|(a, b)| a * b).sum();
        xp[k] = x[k];
        let fd = (lp - lm) / (2.0 * eps);
        assert!((g.dx[k] - fd).abs() < 1e-6 * (1.0 + fd.abs()), "dx[{k}] {} vs {fd}", g.dx[k]);
    }
}

#[test]
fn wrong_sizes_are_errors_not_panics() {
    let cfg = configs()[0].clone();
    let mut rng = Rng(1);
    let ps = params(&cfg, &mut rng);
    let sched = Schedule::new(cfg.t, cfg.b, None).unwrap();
    let x = vec![0.0; 3];
    let e = layer_forward(&shape(&cfg), &dir_params(&cfg, &ps), &sched, &x, None, None, false).unwrap_err();
    assert!(e.to_string().contains("X: expected 60 elements, got 3"), "{e}");
}

mod shapes {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(40))]
        /// Any shape, direction, projection and set of lengths agrees with the naive reference.
        #[test]
        fn random_shapes_match_the_reference(
            t in 1usize..7, b in 1usize..12, i in 0usize..9, h in 1usize..40, dirs in 1usize..3,
            proj_frac in 0usize..3, peep in any::<bool>(), with_lengths in any::<bool>(), seed in any::<u64>(),
        ) {
            let proj = if proj_frac == 0 || h < 2 { 0 } else { (h * proj_frac / 3).max(1) };
            let mut rng = Rng(seed | 1);
            let lengths = with_lengths.then(|| (0..b).map(|_| 1 + ((rng.next() + 1.0) * t as f64 / 2.0) as usize % t).collect());
            let cfg = Config { t, b, i, h, proj, dirs, peep, lengths, ops: default_ops(), order: GateOrder::TORCH };
            let ps = params(&cfg, &mut rng);
            let (x, h0, c0) = inputs(&cfg, &mut rng);
            let (ey, ehn, ecn) = naive(&cfg, &ps, &x, &h0, &c0);
            let sched = Schedule::new(t, b, cfg.lengths.as_deref()).unwrap();
            let out = layer_forward(&shape(&cfg), &dir_params(&cfg, &ps), &sched, &x, Some(&h0), Some(&c0), false).unwrap();
            prop_assert!(max_diff(&out.y, &ey) < 1e-12);
            prop_assert!(max_diff(&out.hn, &ehn) < 1e-12);
            prop_assert!(max_diff(&out.cn, &ecn) < 1e-12);
        }
    }
}

#[test]
fn a_tape_serves_one_backward_unless_retained() {
    let mut rng = Rng(99);
    let cfg = configs()[1].clone();
    let first = shape(&cfg);
    let ps = params(&cfg, &mut rng);
    let (x, _, _) = inputs(&cfg, &mut rng);
    let sched = Schedule::new(cfg.t, cfg.b, cfg.lengths.as_deref()).unwrap();
    let layers = vec![dir_params(&cfg, &ps)];
    let out = network_forward(&first, &layers, &sched, &x, None, None, &[], true).unwrap();
    let tape = out.tape.unwrap();
    let wy = rng.vec(out.y.len(), 1.0);
    let run = |retain: bool| network_backward(&first, &layers, &tape, Some(&wy), None, None, retain);
    // A failed call (wrong dy size) leaves the tape unused.
    let bad = network_backward(&first, &layers, &tape, Some(&wy[1..]), None, None, false).unwrap_err();
    assert!(matches!(bad, crate::LstmError::Shape(_)), "{bad}");
    let a = run(true).unwrap();
    let b = run(false).unwrap();
    assert_eq!(a.dx, b.dx, "a retained tape gives the same gradients again");
    assert!(tape.is_used());
    for retain in [false, true] {
        let e = run(retain).unwrap_err();
        assert!(matches!(e, crate::LstmError::Tape(_)) && e.to_string().contains("retain=True"), "{e}");
    }
}

#[test]
fn impossible_sizes_are_memory_errors_not_aborts() {
    // input_size 0: X is empty whatever its steps and batch, so nothing but the engine's own
    // checks stands between these sizes and the allocator. Here the schedule is small (2^20
    // steps of 2^10 rows) and the gates (8 TiB in f64) are what no machine holds.
    let cfg = Config { i: 0, h: 256, t: 1 << 20, b: 1 << 10, ..configs()[0].clone() };
    let mut rng = Rng(5);
    let ps = params(&cfg, &mut rng);
    let sched = Schedule::new(cfg.t, cfg.b, None).unwrap();
    for keep in [false, true] {
        let e = layer_forward(&shape(&cfg), &dir_params(&cfg, &ps), &sched, &[], None, None, keep).unwrap_err();
        assert!(matches!(e, crate::LstmError::Memory(_)) && e.to_string().starts_with("X:"), "{e}");
    }
}
