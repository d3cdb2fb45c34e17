//! The kernel table: every explicit-SIMD kernel of one float type on one [`KernelPath`], in
//! one place. A call looks its path's table up once (`F::kernels(path)`, the path chosen by
//! [`crate::kernel::active_kernel`] from the detected CPU) and each product or point-wise pass
//! calls the slot it needs, or its portable loop where the slot is empty. Generic code never
//! reinterprets one float type as another: a kernel only exists in the table of its own type.
//! A new CPU's kernels are one more table here (and a [`KernelPath`] that detects it).
//!
//! Outside the table on purpose: the AMX tile products ([`crate::amx`]), which are not a path
//! but an opt-in compute dtype (a call carries packed tile weights, checked against the CPU and
//! the kernel's permission when packed), and the FMA-peak probe ([`crate::peak`]), which
//! measures each path rather than computing with one.

use crate::bf16::{PackedBf16, WalkArgs};
use crate::kernel::{BwdUnits, CellOps, FwdUnits, KernelPath};

/// Input rows a tile or dot kernel takes at once: each weight load is reused this many times.
pub(crate) const ROW_BLOCK: usize = 8;

/// `out[r][..T] (+)= Σ_k lhs[r][k] · w[k * w_rs..][..T]` for `nr <= ROW_BLOCK` rows and depth
/// `k`: one column tile (128 bytes of columns; 64 for the half-width kernel) with the
/// accumulators in registers. Arguments: `(nr, k, lhs, w, w_rs, out, accumulate)`.
pub(crate) type TileFn<F> =
    unsafe fn(usize, usize, &[*const F; ROW_BLOCK], *const F, usize, &[*mut F; ROW_BLOCK], bool);
/// `sums[r][q] = Σ_k lhs[r][k] · w[q][k]` for `nr` rows and `nj <= 16` weight rows of depth
/// `depth`: `(nr, nj, depth, lhs, w, sums)`.
pub(crate) type DotFn<F> =
    unsafe fn(usize, usize, usize, &[*const F; ROW_BLOCK], &[*const F; 16], &mut [[F; 16]; ROW_BLOCK]);
/// `dst[k * dst_rs + j] = src[j][k]` for a 16 x 16 block.
pub(crate) type TransposeFn<F> = unsafe fn(&[*const F; 16], *mut F, usize);
/// The default cell (sigmoid, tanh, tanh; no peepholes, clip or coupled gates) for `w` units:
/// `(w, z [i, o, f, c], bias, c_prev, c, tanh(c) or None, h)`.
pub(crate) type CellFn<F> =
    unsafe fn(usize, [*mut F; 4], Option<[*const F; 4]>, *const F, *mut F, Option<*mut F>, *mut F);
/// Rounds float32 values to bfloat16 bits.
pub(crate) type Bf16RoundFn = unsafe fn(&[f32], &mut [u16]);
/// The bfloat16-weights product of one step ([`PackedBf16::accumulate`]'s walk).
pub(crate) type Bf16ProductFn = unsafe fn(&PackedBf16, WalkArgs);
/// The generic point-wise forward pass of one step.
pub(crate) type ForwardFn<F> = for<'a, 'b> unsafe fn(FwdUnits<'a, F>, &'b CellOps);
/// Its derivative.
pub(crate) type BackwardFn<F> = for<'a, 'b> unsafe fn(BwdUnits<'a, F>, &'b CellOps);

/// The kernels of float type `F` on one path. Every function in it may only be called on a CPU
/// that supports the path the table was looked up for (the `unsafe` of each call).
pub struct Kernels<F: 'static> {
    /// The point-wise pass (the instruction set's build of the generic body).
    pub(crate) forward_units: ForwardFn<F>,
    /// Its derivative.
    pub(crate) backward_units: BackwardFn<F>,
    /// The whole default cell in registers, where the path has one.
    pub(crate) default_cell: Option<CellFn<F>>,
    /// The full-width tile kernel.
    pub(crate) tile: Option<TileFn<F>>,
    /// The half-width tile kernel.
    pub(crate) tile_half: Option<TileFn<F>>,
    /// The dot-form kernel (weight rows read in place).
    pub(crate) dot: Option<DotFn<F>>,
    /// The 16 x 16 register transpose.
    pub(crate) transpose16: Option<TransposeFn<F>>,
    /// Float32 to bfloat16 rounding (float32 tables only: the bfloat16 weights option is
    /// float32's).
    pub(crate) bf16_round: Option<Bf16RoundFn>,
    /// The product with bfloat16 weights (float32 tables only).
    pub(crate) bf16_product: Option<Bf16ProductFn>,
}

macro_rules! portable {
    ($t:ty) => {
        Kernels::<$t> {
            forward_units: crate::kernel::forward_portable::<$t>,
            backward_units: crate::kernel::backward_portable::<$t>,
            default_cell: None,
            tile: None,
            tile_half: None,
            dot: None,
            transpose16: None,
            bf16_round: None,
            bf16_product: None,
        }
    };
}

static F32_SCALAR: Kernels<f32> = portable!(f32);
static F64_SCALAR: Kernels<f64> = portable!(f64);

#[cfg(target_arch = "x86_64")]
mod x86_tables {
    use super::*;
    use crate::kernel::{backward_avx2, backward_avx512, forward_avx2, forward_avx512};
    use crate::recurrent::x86 as k;

    pub(super) static F32_AVX512: Kernels<f32> = Kernels {
        forward_units: forward_avx512::<f32>,
        backward_units: backward_avx512::<f32>,
        default_cell: Some(crate::fused::avx512::forward),
        tile: Some(k::f32_avx512),
        tile_half: Some(k::f32_avx512_half),
        dot: Some(k::dot_f32_avx512),
        transpose16: Some(k::transpose16),
        bf16_round: Some(crate::bf16::convert_avx512),
        bf16_product: Some(PackedBf16::run_avx512),
    };
    pub(super) static F64_AVX512: Kernels<f64> = Kernels {
        forward_units: forward_avx512::<f64>,
        backward_units: backward_avx512::<f64>,
        default_cell: None,
        tile: Some(k::f64_avx512),
        tile_half: Some(k::f64_avx512_half),
        dot: Some(k::dot_f64_avx512),
        transpose16: None,
        bf16_round: None,
        bf16_product: None,
    };
    pub(super) static F32_AVX2: Kernels<f32> = Kernels {
        forward_units: forward_avx2::<f32>,
        backward_units: backward_avx2::<f32>,
        default_cell: None,
        tile: Some(k::f32_avx2),
        tile_half: Some(k::f32_avx2_half),
        dot: Some(k::dot_f32_avx2),
        transpose16: None,
        bf16_round: Some(crate::bf16::convert_avx2),
        bf16_product: Some(PackedBf16::run_avx2),
    };
    pub(super) static F64_AVX2: Kernels<f64> = Kernels {
        forward_units: forward_avx2::<f64>,
        backward_units: backward_avx2::<f64>,
        default_cell: None,
        tile: Some(k::f64_avx2),
        tile_half: Some(k::f64_avx2_half),
        dot: Some(k::dot_f64_avx2),
        transpose16: None,
        bf16_round: None,
        bf16_product: None,
    };
}

#[cfg(target_arch = "aarch64")]
mod neon_tables {
    use super::*;
    use crate::kernel::{backward_neon, forward_neon};

    pub(super) static F32_NEON: Kernels<f32> =
        Kernels { forward_units: forward_neon::<f32>, backward_units: backward_neon::<f32>, ..portable!(f32) };
    pub(super) static F64_NEON: Kernels<f64> =
        Kernels { forward_units: forward_neon::<f64>, backward_units: backward_neon::<f64>, ..portable!(f64) };
}

/// The f32 table of `path` (the portable one where this build has no kernels for it).
pub(crate) fn f32_kernels(path: KernelPath) -> &'static Kernels<f32> {
    match path {
        #[cfg(target_arch = "x86_64")]
        KernelPath::Avx512 => &x86_tables::F32_AVX512,
        #[cfg(target_arch = "x86_64")]
        KernelPath::Avx2 => &x86_tables::F32_AVX2,
        #[cfg(target_arch = "aarch64")]
        KernelPath::Neon => &neon_tables::F32_NEON,
        _ => &F32_SCALAR,
    }
}

/// The f64 table of `path` (the portable one where this build has no kernels for it).
pub(crate) fn f64_kernels(path: KernelPath) -> &'static Kernels<f64> {
    match path {
        #[cfg(target_arch = "x86_64")]
        KernelPath::Avx512 => &x86_tables::F64_AVX512,
        #[cfg(target_arch = "x86_64")]
        KernelPath::Avx2 => &x86_tables::F64_AVX2,
        #[cfg(target_arch = "aarch64")]
        KernelPath::Neon => &neon_tables::F64_NEON,
        _ => &F64_SCALAR,
    }
}
