//! The forward point-wise pass for the default cell (sigmoid gates, tanh cell and output, no
//! clip, peepholes or input-forget coupling) in float32 on AVX-512, written with intrinsics.
//!
//! The generic pass in [`crate::kernel`] runs each step as a series of small loops over the
//! gate rows (bias, activations, cell update), and the compiler divides exactly. Here every
//! sixteen units go through the whole cell in registers: one load of each gate, an
//! exponential by range reduction and `vscalefps`, reciprocals by `vrcp14ps` and one Newton
//! step, and masked loads and stores for the last partial vector. The results agree with the
//! generic pass to a few units in the last place (tests in this module); NaN propagates.

use crate::activation::Activation;
use crate::kernel::{CellOps, FwdUnits, KernelPath};
use crate::real::Real;

/// Runs the fused pass when it applies (float32, AVX-512, the default cell, no pre-activations
/// wanted); returns whether it ran.
#[inline]
pub(crate) fn try_forward_default<F: Real>(path: KernelPath, u: &mut FwdUnits<'_, F>, ops: &CellOps) -> bool {
    let default_cell = matches!(ops.f, Activation::Sigmoid)
        && matches!(ops.g, Activation::Tanh)
        && matches!(ops.h, Activation::Tanh)
        && ops.clip.is_none()
        && !ops.input_forget;
    let cell = F::kernels(path).default_cell;
    let Some(cell) = cell.filter(|_| default_cell && u.peep.is_none() && u.pre.is_none()) else {
        return false;
    };
    let w = u.out.len();
    let [zi, zo, zf, zc] = &mut u.z;
    let z = [zi.as_mut_ptr(), zo.as_mut_ptr(), zf.as_mut_ptr(), zc.as_mut_ptr()];
    let bias = u.bias.map(|b| b.map(|v| v.as_ptr()));
    let hc = u.hc.as_deref_mut().map(|v| v.as_mut_ptr());
    // SAFETY: the table is the one of `path`, which this CPU supports (`active_kernel` and
    // `set_kernel` only yield such paths); every slice holds `w` values (the FwdUnits contract).
    unsafe { cell(w, z, bias, u.c_prev.as_ptr(), u.c.as_mut_ptr(), hc, u.out.as_mut_ptr()) };
    true
}

#[cfg(target_arch = "x86_64")]
pub(crate) mod avx512 {
    use std::arch::x86_64::*;

    /// `e^x`: `x = n ln2 + r`, a degree-7 polynomial for `e^r` on `|r| <= ln2 / 2`, times `2^n`
    /// by `vscalefps` (which also gives 0 and infinity past the float range).
    #[inline(always)]
    unsafe fn exp(x: __m512) -> __m512 {
        // SAFETY: the caller upholds this function's contract: the CPU has the target features it is compiled for (the intrinsics have no other precondition).
        unsafe {
            // max/min return their second operand for NaN: the NaN in `x` goes through.
            let x = _mm512_min_ps(_mm512_set1_ps(88.5), _mm512_max_ps(_mm512_set1_ps(-88.5), x));
            let n = _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(_mm512_mul_ps(
                x,
                _mm512_set1_ps(std::f32::consts::LOG2_E),
            ));
            let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693_145_75), x);
            let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(1.428_606_8e-6), r);
            let mut p = _mm512_set1_ps(1.0 / 5040.0);
            for c in [1.0 / 720.0, 1.0 / 120.0, 1.0 / 24.0, 1.0 / 6.0, 0.5, 1.0, 1.0] {
                p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(c));
            }
            _mm512_scalef_ps(p, n)
        }
    }

    /// `1 / d` for `d >= 1` (or infinity): `vrcp14ps` and one Newton step.
    #[inline(always)]
    unsafe fn recip(d: __m512) -> __m512 {
        // SAFETY: the caller upholds this function's contract: the CPU has the target features it is compiled for (the intrinsics have no other precondition).
        unsafe {
            let y = _mm512_rcp14_ps(d);
            // y (2 - d y), as y + y (1 - d y): exact enough, and 0 stays 0 for infinite d.
            let e = _mm512_fnmadd_ps(d, y, _mm512_set1_ps(1.0));
            _mm512_fmadd_ps(y, e, y)
        }
    }

    #[inline(always)]
    unsafe fn sigmoid(x: __m512) -> __m512 {
        // SAFETY: the caller runs on a CPU with AVX-512F (this module's functions need it).
        unsafe { recip(_mm512_add_ps(_mm512_set1_ps(1.0), exp(_mm512_sub_ps(_mm512_setzero_ps(), x)))) }
    }

    /// `1 - 2 / (e^{2x} + 1)`, the form the generic pass uses.
    #[inline(always)]
    unsafe fn tanh(x: __m512) -> __m512 {
        // SAFETY: the caller upholds this function's contract: the CPU has the target features it is compiled for (the intrinsics have no other precondition).
        unsafe {
            let e = exp(_mm512_add_ps(x, x));
            let one = _mm512_set1_ps(1.0);
            _mm512_fnmadd_ps(_mm512_set1_ps(2.0), recip(_mm512_add_ps(e, one)), one)
        }
    }

    /// The whole cell for `w` units. Gate order of `z` and `bias`: i, o, f, c.
    ///
    /// # Safety
    /// AVX-512F must be available; every pointer must be valid for `w` values.
    #[target_feature(enable = "avx512f")]
    pub(crate) unsafe fn forward(
        w: usize,
        z: [*mut f32; 4],
        bias: Option<[*const f32; 4]>,
        c_prev: *const f32,
        c: *mut f32,
        hc: Option<*mut f32>,
        out: *mut f32,
    ) {
        // SAFETY: the caller upholds this function's contract: the CPU has the target features it is compiled for, and every pointer is valid for the lengths it is given.
        unsafe {
            let mut j = 0;
            while j < w {
                let m: __mmask16 = if w - j >= 16 { 0xffff } else { (1u16 << (w - j)) - 1 };
                let load = |p: *const f32| _mm512_maskz_loadu_ps(m, p.add(j));
                let mut zv = z.map(|p| load(p));
                if let Some(b) = bias {
                    for g in 0..4 {
                        zv[g] = _mm512_add_ps(zv[g], load(b[g]));
                    }
                }
                let i = sigmoid(zv[0]);
                let o = sigmoid(zv[1]);
                let f = sigmoid(zv[2]);
                let g = tanh(zv[3]);
                let cv = _mm512_fmadd_ps(f, load(c_prev), _mm512_mul_ps(i, g));
                let hv = tanh(cv);
                for (p, v) in z.iter().zip([i, o, f, g]) {
                    _mm512_mask_storeu_ps(p.add(j), m, v);
                }
                _mm512_mask_storeu_ps(c.add(j), m, cv);
                if let Some(hc) = hc {
                    _mm512_mask_storeu_ps(hc.add(j), m, hv);
                }
                _mm512_mask_storeu_ps(out.add(j), m, _mm512_mul_ps(o, hv));
                j += 16;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::forward_units_generic;

    fn default_ops() -> CellOps {
        CellOps { f: Activation::Sigmoid, g: Activation::Tanh, h: Activation::Tanh, clip: None, input_forget: false }
    }

    /// Runs one row of `w` units through `f` and returns (z, c, hc, out).
    fn run_row(w: usize, seed: u64, fused: bool) -> Vec<Vec<f32>> {
        // Values over the whole useful range, and beyond it (saturation), plus special values.
        let val = |k: usize, g: usize| {
            let x = ((k * 7919 + g * 104_729 + seed as usize * 31) % 2001) as f32 / 100.0 - 10.0;
            match (k + g) % 97 {
                0 => 95.0,
                1 => -95.0,
                2 => 0.0,
                _ => x * if k.is_multiple_of(5) { 4.0 } else { 1.0 },
            }
        };
        let mut z: [Vec<f32>; 4] = std::array::from_fn(|g| (0..w).map(|k| val(k, g)).collect());
        let bias: Vec<Vec<f32>> = (0..4).map(|g| (0..w).map(|k| val(k, g + 4) / 8.0).collect()).collect();
        let c_prev: Vec<f32> = (0..w).map(|k| val(k, 9) / 3.0).collect();
        let (mut c, mut hc, mut out) = (vec![0f32; w], vec![0f32; w], vec![0f32; w]);
        {
            let [a, b, cc, d] = z.each_mut().map(|v| v.as_mut_slice());
            let mut u = FwdUnits {
                z: [a, b, cc, d],
                bias: Some([&bias[0][..], &bias[1][..], &bias[2][..], &bias[3][..]]),
                pre: None,
                peep: None,
                c_prev: &c_prev,
                c: &mut c,
                hc: Some(&mut hc),
                out: &mut out,
            };
            if fused {
                assert!(try_forward_default(KernelPath::Avx512, &mut u, &default_ops()));
            } else {
                forward_units_generic(KernelPath::Scalar, u, &default_ops());
            }
        }
        let mut all = z.to_vec();
        all.extend([c, hc, out]);
        all
    }

    #[test]
    fn fused_cell_matches_the_scalar_reference() {
        if !KernelPath::Avx512.supported() {
            return; // nothing to compare on this CPU; the generic paths have their own tests
        }
        for w in [1, 15, 16, 17, 100, 128, 131] {
            let (got, want) = (run_row(w, w as u64, true), run_row(w, w as u64, false));
            for (g, (a, b)) in got.iter().zip(&want).enumerate() {
                for (k, (x, y)) in a.iter().zip(b).enumerate() {
                    assert!((x - y).abs() <= 2e-6 * (1.0 + y.abs()), "w {w} array {g} unit {k}: {x} vs {y}");
                }
            }
        }
    }

    #[test]
    fn fused_cell_propagates_nan_and_declines_other_cells() {
        if !KernelPath::Avx512.supported() {
            return;
        }
        let mut z = [vec![f32::NAN; 3], vec![0.5; 3], vec![0.5; 3], vec![0.5; 3]];
        let c_prev = vec![0.0; 3];
        let (mut c, mut out) = (vec![0.0; 3], vec![0.0; 3]);
        let [a, b, cc, d] = z.each_mut().map(|v| v.as_mut_slice());
        let mut u = FwdUnits {
            z: [a, b, cc, d],
            bias: None,
            pre: None,
            peep: None,
            c_prev: &c_prev,
            c: &mut c,
            hc: None,
            out: &mut out,
        };
        let clipped = CellOps { clip: Some(3.0), ..default_ops() };
        assert!(!try_forward_default(KernelPath::Avx512, &mut u, &clipped));
        assert!(!try_forward_default(KernelPath::Avx2, &mut u, &default_ops()));
        assert!(try_forward_default(KernelPath::Avx512, &mut u, &default_ops()));
        assert!(c.iter().chain(&out).all(|v| v.is_nan()), "{c:?} {out:?}");
    }
}
