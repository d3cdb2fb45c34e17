//! The floating-point types the engine runs on (f32 and f64) and the numeric helpers each
//! needs: a branch-free `exp` that vectorises, and a typed entry into the GEMM crate.

use std::fmt::Debug;

/// A floating-point element type the engine supports.
pub trait Real:
    sealed::Sealed
    + Copy
    + Send
    + Sync
    + Debug
    + Default
    + PartialOrd
    + 'static
    + std::ops::Add<Output = Self>
    + std::ops::Sub<Output = Self>
    + std::ops::Mul<Output = Self>
    + std::ops::Div<Output = Self>
    + std::ops::Neg<Output = Self>
    + std::ops::AddAssign
    + std::ops::MulAssign
    + std::ops::SubAssign
{
    /// Whether this is `f32` (else `f64`): what the float32-only options check.
    const IS_F32: bool;
    /// Zero.
    const ZERO: Self;
    /// One.
    const ONE: Self;
    /// Converts from f64 (rounding for f32).
    fn from_f64(v: f64) -> Self;
    /// Widens to f64.
    fn to_f64(self) -> f64;
    /// `exp` with a polynomial written so that LLVM vectorises loops over it.
    fn fast_exp(self) -> Self;
    /// Library `exp` (the scalar reference).
    fn exp(self) -> Self;
    /// Library `tanh` (the scalar reference).
    fn tanh(self) -> Self;
    /// Library `ln_1p`.
    fn ln_1p(self) -> Self;
    /// Library `ln`.
    fn ln(self) -> Self;
    /// Absolute value.
    fn abs(self) -> Self;
    /// Fused multiply-add `self * a + b`.
    fn mul_add(self, a: Self, b: Self) -> Self;
    /// Minimum that vectorises (no NaN special-casing beyond IEEE compare).
    #[inline(always)]
    fn min_v(self, o: Self) -> Self {
        if self < o {
            self
        } else {
            o
        }
    }
    /// Maximum that vectorises.
    #[inline(always)]
    fn max_v(self, o: Self) -> Self {
        if self > o {
            self
        } else {
            o
        }
    }
    /// `dst = alpha_dst * dst + lhs · rhs` on strided matrices (see [`crate::gemm_ops`]).
    ///
    /// # Safety
    /// The pointers and strides must describe valid, non-overlapping matrices of the given sizes.
    #[allow(clippy::too_many_arguments)]
    unsafe fn gemm_raw(
        m: usize,
        n: usize,
        k: usize,
        dst: *mut Self,
        dst_cs: isize,
        dst_rs: isize,
        read_dst: bool,
        lhs: *const Self,
        lhs_cs: isize,
        lhs_rs: isize,
        rhs: *const Self,
        rhs_cs: isize,
        rhs_rs: isize,
        parallel: usize,
    );
}

macro_rules! impl_real {
    ($t:ty, $exp:ident) => {
        impl Real for $t {
            const IS_F32: bool = std::mem::size_of::<$t>() == 4;
            const ZERO: Self = 0.0;
            const ONE: Self = 1.0;
            #[inline(always)]
            fn from_f64(v: f64) -> Self {
                v as $t
            }
            #[inline(always)]
            fn to_f64(self) -> f64 {
                self as f64
            }
            #[inline(always)]
            fn fast_exp(self) -> Self {
                $exp(self)
            }
            #[inline(always)]
            fn exp(self) -> Self {
                <$t>::exp(self)
            }
            #[inline(always)]
            fn tanh(self) -> Self {
                <$t>::tanh(self)
            }
            #[inline(always)]
            fn ln_1p(self) -> Self {
                <$t>::ln_1p(self)
            }
            #[inline(always)]
            fn ln(self) -> Self {
                <$t>::ln(self)
            }
            #[inline(always)]
            fn abs(self) -> Self {
                <$t>::abs(self)
            }
            #[inline(always)]
            fn mul_add(self, a: Self, b: Self) -> Self {
                <$t>::mul_add(self, a, b)
            }
            unsafe fn gemm_raw(
                m: usize,
                n: usize,
                k: usize,
                dst: *mut Self,
                dst_cs: isize,
                dst_rs: isize,
                read_dst: bool,
                lhs: *const Self,
                lhs_cs: isize,
                lhs_rs: isize,
                rhs: *const Self,
                rhs_cs: isize,
                rhs_rs: isize,
                parallel: usize,
            ) {
                if m == 0 || n == 0 {
                    return;
                }
                let par = if parallel > 1 { gemm::Parallelism::Rayon(parallel) } else { gemm::Parallelism::None };
                let ptrs = crate::threads::SyncPtrs([dst as usize, lhs as usize, rhs as usize]);
                let run = || {
                    let [dst, lhs, rhs] = ptrs.0;
                    // SAFETY: forwarded from the caller's contract (the addresses are its
                    // pointers, carried as integers to cross into the pool).
                    unsafe {
                        gemm::gemm(
                            m,
                            n,
                            k,
                            dst as *mut Self,
                            dst_cs,
                            dst_rs,
                            read_dst,
                            lhs as *const Self,
                            lhs_cs,
                            lhs_rs,
                            rhs as *const Self,
                            rhs_cs,
                            rhs_rs,
                            1.0,
                            1.0,
                            false,
                            false,
                            false,
                            par,
                        )
                    }
                };
                if parallel > 1 {
                    // A parallel GEMM runs on the engine's pool (from a helper-team call too,
                    // where it would otherwise start rayon's global pool).
                    crate::threads::in_pool(&run);
                } else {
                    run();
                }
            }
        }
    };
}

mod sealed {
    use crate::kernel::KernelPath;
    use crate::simd::Kernels;

    /// Only f32 and f64 implement [`super::Real`]; each gives its own kernel table and the
    /// typed views float32-only data (packed panels, bfloat16 and tile weights) needs.
    pub trait Sealed: Sized + 'static {
        /// This type's kernels on `path` (see [`crate::simd`]).
        fn kernels(path: KernelPath) -> &'static Kernels<Self>;
        /// `Some(p)` where `Self` is f32 (the same pointer, no reinterpretation), else `None`.
        fn f32_ptr(p: *const Self) -> Option<*const f32>;
        /// As [`Sealed::f32_ptr`], for writing.
        fn f32_mut_ptr(p: *mut Self) -> Option<*mut f32>;
        /// `Some(p)` where `Self` is f32, else `None`.
        fn from_f32_ptr(p: *const f32) -> Option<*const Self>;
    }

    impl Sealed for f32 {
        fn kernels(path: KernelPath) -> &'static Kernels<f32> {
            crate::simd::f32_kernels(path)
        }
        fn f32_ptr(p: *const f32) -> Option<*const f32> {
            Some(p)
        }
        fn f32_mut_ptr(p: *mut f32) -> Option<*mut f32> {
            Some(p)
        }
        fn from_f32_ptr(p: *const f32) -> Option<*const f32> {
            Some(p)
        }
    }

    impl Sealed for f64 {
        fn kernels(path: KernelPath) -> &'static Kernels<f64> {
            crate::simd::f64_kernels(path)
        }
        fn f32_ptr(_: *const f64) -> Option<*const f32> {
            None
        }
        fn f32_mut_ptr(_: *mut f64) -> Option<*mut f32> {
            None
        }
        fn from_f32_ptr(_: *const f32) -> Option<*const f64> {
            None
        }
    }
}

impl_real!(f32, exp_f32);
impl_real!(f64, exp_f64);

/// `exp` for f32 by range reduction `x = n ln2 + r` and a degree-6 polynomial; relative error
/// below 2e-7 on the clamped range. Branch-free so loops over it vectorise.
#[inline(always)]
fn exp_f32(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    const MAGIC: f32 = 12_582_912.0; // 1.5 * 2^23: adding it rounds to an integer held in the low bits
    let x = x.clamp(-87.0, 88.0);
    let t = x * LOG2E + MAGIC;
    let n = t - MAGIC;
    let r = x - n * LN2_HI - n * LN2_LO;
    let p = 1.0
        + r * (1.0 + r * (0.5 + r * (0.166_666_67 + r * (0.041_666_668 + r * (0.008_333_334 + r * 0.001_388_889)))));
    // The low 22 bits of t hold n + 2^22; rebuild 2^n as an exponent field.
    let bits = (t.to_bits().wrapping_sub(0x4B40_0000).wrapping_add(127)) << 23;
    p * f32::from_bits(bits)
}

/// `exp` for f64 by the same reduction and a degree-12 Taylor polynomial; relative error near
/// 1e-16 on the clamped range.
#[inline(always)]
fn exp_f64(x: f64) -> f64 {
    const LOG2E: f64 = std::f64::consts::LOG2_E;
    // fdlibm's split of ln 2: the high part has trailing zero bits so n * LN2_HI is exact.
    const LN2_HI: f64 = f64::from_bits(0x3fe6_2e42_fee0_0000);
    const LN2_LO: f64 = f64::from_bits(0x3dea_39ef_3579_3c76);
    const MAGIC: f64 = 6_755_399_441_055_744.0; // 1.5 * 2^52
    let x = x.clamp(-708.0, 709.0);
    let t = x * LOG2E + MAGIC;
    let n = t - MAGIC;
    let r = x - n * LN2_HI - n * LN2_LO;
    let mut p = 1.0 / 479_001_600.0;
    p = p * r + 1.0 / 39_916_800.0;
    p = p * r + 1.0 / 3_628_800.0;
    p = p * r + 1.0 / 362_880.0;
    p = p * r + 1.0 / 40_320.0;
    p = p * r + 1.0 / 5_040.0;
    p = p * r + 1.0 / 720.0;
    p = p * r + 1.0 / 120.0;
    p = p * r + 1.0 / 24.0;
    p = p * r + 1.0 / 6.0;
    p = p * r + 0.5;
    p = p * r + 1.0;
    p = p * r + 1.0;
    let bits = (t.to_bits().wrapping_sub(0x4338_0000_0000_0000).wrapping_add(1023)) << 52;
    p * f64::from_bits(bits)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_exp_f32_matches_libm() {
        let mut x = -87.0f32;
        while x < 88.0 {
            let a = x.fast_exp();
            let b = x.exp();
            assert!(((a - b) / b).abs() < 5e-7, "x={x} fast={a} libm={b}");
            x += 0.0137;
        }
    }

    #[test]
    fn fast_exp_f64_matches_libm() {
        let mut x = -700.0f64;
        while x < 700.0 {
            let a = Real::fast_exp(x);
            let b = x.exp();
            assert!(((a - b) / b).abs() < 4e-15, "x={x} fast={a} libm={b}");
            x += 0.0731;
        }
    }

    #[test]
    fn fast_exp_saturates_without_nan() {
        assert!(Real::fast_exp(1e30f32).is_finite());
        assert!(Real::fast_exp(-1e30f32) >= 0.0);
        assert!(Real::fast_exp(f32::NAN).is_nan());
    }
}
