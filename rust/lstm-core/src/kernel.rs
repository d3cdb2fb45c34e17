//! The fused point-wise pass of one time step: gate activations, peepholes, clipping, the cell
//! update and the hidden output in one sweep over a thread's hidden units (forward), and its
//! exact derivative (backward). The same generic body is compiled once per instruction set
//! (`#[target_feature]`) and chosen at run time, so a wheel built for baseline x86-64 still
//! runs AVX-512 code where the CPU has it. The `scalar` path uses library math and is the
//! reference every SIMD path is tested against.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::OnceLock;

use crate::activation::{apply_slice, mul_derivative_slice, Activation, LibMath, MathImpl, PolyMath};
use crate::error::{LstmError, Result};
use crate::real::Real;

/// An instruction-set path for the point-wise kernels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KernelPath {
    /// Library math, no explicit SIMD: the reference.
    Scalar,
    /// x86-64 AVX2 + FMA.
    Avx2,
    /// x86-64 AVX-512 (F, VL, DQ, BW).
    Avx512,
    /// AArch64 NEON.
    Neon,
}

impl KernelPath {
    /// The path's name as `PYLSTM_KERNEL` spells it.
    pub fn name(self) -> &'static str {
        match self {
            KernelPath::Scalar => "scalar",
            KernelPath::Avx2 => "avx2",
            KernelPath::Avx512 => "avx512",
            KernelPath::Neon => "neon",
        }
    }

    /// Parses a `PYLSTM_KERNEL` value.
    pub fn parse(name: &str) -> Result<Self> {
        match name.trim().to_ascii_lowercase().as_str() {
            "scalar" => Ok(KernelPath::Scalar),
            "avx2" => Ok(KernelPath::Avx2),
            "avx512" => Ok(KernelPath::Avx512),
            "neon" => Ok(KernelPath::Neon),
            _ => Err(LstmError::Value(format!("kernel: expected one of scalar, avx2, avx512, neon, got {name:?}"))),
        }
    }

    /// Whether this CPU can run the path.
    pub fn supported(self) -> bool {
        match self {
            KernelPath::Scalar => true,
            #[cfg(target_arch = "x86_64")]
            KernelPath::Avx2 => {
                std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
            }
            #[cfg(target_arch = "x86_64")]
            KernelPath::Avx512 => {
                std::arch::is_x86_feature_detected!("avx512f")
                    && std::arch::is_x86_feature_detected!("avx512vl")
                    && std::arch::is_x86_feature_detected!("avx512dq")
                    && std::arch::is_x86_feature_detected!("avx512bw")
                    && std::arch::is_x86_feature_detected!("fma")
            }
            #[cfg(target_arch = "aarch64")]
            KernelPath::Neon => std::arch::is_aarch64_feature_detected!("neon"),
            #[allow(unreachable_patterns)]
            _ => false,
        }
    }

    /// The best path this CPU supports.
    pub fn detect() -> Self {
        [KernelPath::Avx512, KernelPath::Avx2, KernelPath::Neon]
            .into_iter()
            .find(|p| p.supported())
            .unwrap_or(KernelPath::Scalar)
    }

    fn to_u8(self) -> u8 {
        match self {
            KernelPath::Scalar => 1,
            KernelPath::Avx2 => 2,
            KernelPath::Avx512 => 3,
            KernelPath::Neon => 4,
        }
    }

    fn from_u8(v: u8) -> Self {
        match v {
            2 => KernelPath::Avx2,
            3 => KernelPath::Avx512,
            4 => KernelPath::Neon,
            _ => KernelPath::Scalar,
        }
    }
}

static ACTIVE: AtomicU8 = AtomicU8::new(0);
static ENV_ERROR: OnceLock<Option<String>> = OnceLock::new();

/// The path in use: `PYLSTM_KERNEL` if set (and supported), else the best detected one.
pub fn active_kernel() -> KernelPath {
    let v = ACTIVE.load(Ordering::Relaxed);
    if v != 0 {
        return KernelPath::from_u8(v);
    }
    let chosen = match std::env::var("PYLSTM_KERNEL") {
        Ok(name) if !name.trim().is_empty() => match KernelPath::parse(&name) {
            Ok(p) if p.supported() => p,
            Ok(p) => {
                let _ = ENV_ERROR.set(Some(format!(
                    "PYLSTM_KERNEL={} is not supported by this CPU; using {}",
                    p.name(),
                    KernelPath::detect().name()
                )));
                KernelPath::detect()
            }
            Err(e) => {
                let _ = ENV_ERROR.set(Some(e.to_string()));
                KernelPath::detect()
            }
        },
        _ => KernelPath::detect(),
    };
    ACTIVE.store(chosen.to_u8(), Ordering::Relaxed);
    chosen
}

/// A problem with `PYLSTM_KERNEL` found when the path was first chosen, if any.
pub fn kernel_env_warning() -> Option<String> {
    active_kernel();
    ENV_ERROR.get().cloned().flatten()
}

/// Pins the point-wise kernels to `path`; an error if this CPU cannot run it.
pub fn set_kernel(path: KernelPath) -> Result<()> {
    if !path.supported() {
        return Err(LstmError::Value(format!(
            "kernel: {} is not supported by this CPU (best available: {})",
            path.name(),
            KernelPath::detect().name()
        )));
    }
    ACTIVE.store(path.to_u8(), Ordering::Relaxed);
    Ok(())
}

/// Cell-level settings shared by every unit of a direction.
#[derive(Debug, Clone, Copy)]
pub struct CellOps {
    /// Gate activation (ONNX `f`), used by the input, output and forget gates.
    pub f: Activation,
    /// Cell-candidate activation (ONNX `g`).
    pub g: Activation,
    /// Cell-output activation (ONNX `h`).
    pub h: Activation,
    /// Clip applied to each gate's input after bias and peephole terms.
    pub clip: Option<f64>,
    /// ONNX `input_forget`: the forget gate is `1 - i`.
    pub input_forget: bool,
}

impl CellOps {
    /// Whether the backward pass needs the pre-activation values.
    pub fn needs_pre(&self) -> bool {
        self.clip.is_some() || !self.f.derivative_from_output() || !self.g.derivative_from_output()
    }
}

/// Views of one row's hidden units `[u0, u1)` for the forward point-wise pass.
pub(crate) struct FwdUnits<'a, F> {
    /// Gate pre-activations in, activations out (i, o, f, c).
    pub z: [&'a mut [F]; 4],
    /// Gate biases (i, o, f, c) for these units, added to `z` first: adding them here, where
    /// `z` is already in cache, saves a pass over the gate rows.
    pub bias: Option<[&'a [F]; 4]>,
    /// Where to save the pre-activations (after peepholes, before clip), if the tape needs them.
    pub pre: Option<[&'a mut [F]; 4]>,
    /// Peephole weights (i, o, f) for these units.
    pub peep: Option<[&'a [F]; 3]>,
    /// Previous cell state.
    pub c_prev: &'a [F],
    /// New cell state.
    pub c: &'a mut [F],
    /// `h(c)`, saved for the backward pass if present.
    pub hc: Option<&'a mut [F]>,
    /// Output `o * h(c)`.
    pub out: &'a mut [F],
}

/// Views of one row's hidden units for the backward point-wise pass.
pub(crate) struct BwdUnits<'a, F> {
    /// Gradient with respect to the unit output `o * h(c)`.
    pub dout: &'a [F],
    /// Cell-state gradient from the next step in, gradient for the previous step out.
    pub dc: &'a mut [F],
    /// Gate activations (i, o, f, c).
    pub a: [&'a [F]; 4],
    /// Pre-activations (i, o, f, c) when the tape has them.
    pub pre: Option<[&'a [F]; 4]>,
    /// Peephole weights (i, o, f).
    pub peep: Option<[&'a [F]; 3]>,
    /// Peephole gradient accumulators (i, o, f).
    pub dpeep: Option<[&'a mut [F]; 3]>,
    /// Cell state of this step.
    pub c: &'a [F],
    /// Cell state of the previous step.
    pub c_prev: &'a [F],
    /// `h(c)` of this step.
    pub hc: &'a [F],
    /// Gradients with respect to the gate pre-activations (i, o, f, c), written.
    pub dz: [&'a mut [F]; 4],
}

const CH: usize = 64;

#[inline(always)]
fn clip_slice<F: Real>(xs: &mut [F], clip: Option<F>) {
    if let Some(c) = clip {
        let lo = -c;
        for x in xs.iter_mut() {
            *x = x.max_v(lo).min_v(c);
        }
    }
}

#[inline(always)]
fn forward_impl<F: Real, M: MathImpl>(u: FwdUnits<'_, F>, ops: &CellOps) {
    let FwdUnits { z, bias, mut pre, peep, c_prev, c, mut hc, out } = u;
    let [zi, zo, zf, zc] = z;
    let clip = ops.clip.map(F::from_f64);
    let w = out.len();
    let mut tmp = [F::ZERO; CH];
    let mut hcv = [F::ZERO; CH];
    let mut a = 0;
    while a < w {
        let b = (a + CH).min(w);
        let n = b - a;
        let (zi, zo, zf, zc) = (&mut zi[a..b], &mut zo[a..b], &mut zf[a..b], &mut zc[a..b]);
        let cp = &c_prev[a..b];
        if let Some([bi, bo, bf, bc]) = bias {
            for j in 0..n {
                zi[j] += bi[a + j];
                zo[j] += bo[a + j];
                zf[j] += bf[a + j];
                zc[j] += bc[a + j];
            }
        }
        if let Some([pi, _, pf]) = peep {
            for j in 0..n {
                zi[j] += pi[a + j] * cp[j];
                zf[j] += pf[a + j] * cp[j];
            }
        }
        if let Some(p) = pre.as_mut() {
            p[0][a..b].copy_from_slice(zi);
            p[2][a..b].copy_from_slice(zf);
            p[3][a..b].copy_from_slice(zc);
        }
        clip_slice(zi, clip);
        clip_slice(zc, clip);
        tmp[..n].copy_from_slice(zi);
        apply_slice::<F, M>(&ops.f, &tmp[..n], zi);
        if ops.input_forget {
            for j in 0..n {
                zf[j] = F::ONE - zi[j];
            }
        } else {
            clip_slice(zf, clip);
            tmp[..n].copy_from_slice(zf);
            apply_slice::<F, M>(&ops.f, &tmp[..n], zf);
        }
        tmp[..n].copy_from_slice(zc);
        apply_slice::<F, M>(&ops.g, &tmp[..n], zc);
        let cc = &mut c[a..b];
        for j in 0..n {
            cc[j] = zf[j] * cp[j] + zi[j] * zc[j];
        }
        if let Some([_, po, _]) = peep {
            for j in 0..n {
                zo[j] += po[a + j] * cc[j];
            }
        }
        if let Some(p) = pre.as_mut() {
            p[1][a..b].copy_from_slice(zo);
        }
        clip_slice(zo, clip);
        tmp[..n].copy_from_slice(zo);
        apply_slice::<F, M>(&ops.f, &tmp[..n], zo);
        apply_slice::<F, M>(&ops.h, cc, &mut hcv[..n]);
        let o = &mut out[a..b];
        for j in 0..n {
            o[j] = zo[j] * hcv[j];
        }
        if let Some(h) = hc.as_mut() {
            h[a..b].copy_from_slice(&hcv[..n]);
        }
        a = b;
    }
}

#[inline(always)]
fn backward_impl<F: Real, M: MathImpl>(u: BwdUnits<'_, F>, ops: &CellOps) {
    let BwdUnits { dout, dc, a: acts, pre, peep, mut dpeep, c, c_prev, hc, dz } = u;
    let [ai, ao, af, ac] = acts;
    let [dzi, dzo, dzf, dzc] = dz;
    let clip = ops.clip.map(F::from_f64);
    let w = dout.len();
    let mut xs = [F::ZERO; CH];
    let mut dcv = [F::ZERO; CH];
    let mut t = [F::ZERO; CH];
    let mut a = 0;
    while a < w {
        let b = (a + CH).min(w);
        let n = b - a;
        let r = a..b;
        // Output gate: o * h(c).
        for j in 0..n {
            dzo[a + j] = dout[a + j] * hc[a + j];
        }
        gate_derivative::<F, M>(
            &ops.f,
            pre.map(|p| &p[1][r.clone()]),
            &ao[r.clone()],
            clip,
            &mut xs[..n],
            &mut dzo[r.clone()],
        );
        // Cell: through h(c), the output peephole and the next step.
        for j in 0..n {
            t[j] = dout[a + j] * ao[a + j];
        }
        mul_derivative_slice::<F, M>(&ops.h, &c[r.clone()], &hc[r.clone()], &mut t[..n]);
        for j in 0..n {
            dcv[j] = dc[a + j] + t[j];
        }
        if let Some([_, po, _]) = peep {
            for j in 0..n {
                dcv[j] += dzo[a + j] * po[a + j];
            }
        }
        // c = f * c_prev + i * g.
        for j in 0..n {
            dzi[a + j] = dcv[j] * ac[a + j];
            dzc[a + j] = dcv[j] * ai[a + j];
            dzf[a + j] = dcv[j] * c_prev[a + j];
        }
        if ops.input_forget {
            for j in 0..n {
                dzi[a + j] -= dzf[a + j];
                dzf[a + j] = F::ZERO;
            }
        } else {
            gate_derivative::<F, M>(
                &ops.f,
                pre.map(|p| &p[2][r.clone()]),
                &af[r.clone()],
                clip,
                &mut xs[..n],
                &mut dzf[r.clone()],
            );
        }
        gate_derivative::<F, M>(
            &ops.f,
            pre.map(|p| &p[0][r.clone()]),
            &ai[r.clone()],
            clip,
            &mut xs[..n],
            &mut dzi[r.clone()],
        );
        gate_derivative::<F, M>(
            &ops.g,
            pre.map(|p| &p[3][r.clone()]),
            &ac[r.clone()],
            clip,
            &mut xs[..n],
            &mut dzc[r.clone()],
        );
        for j in 0..n {
            dc[a + j] = dcv[j] * af[a + j];
        }
        if let Some([pi, _, pf]) = peep {
            for j in 0..n {
                dc[a + j] += dzi[a + j] * pi[a + j] + dzf[a + j] * pf[a + j];
            }
        }
        if let Some([dpi, dpo, dpf]) = dpeep.as_mut() {
            for j in 0..n {
                dpi[a + j] += dzi[a + j] * c_prev[a + j];
                dpf[a + j] += dzf[a + j] * c_prev[a + j];
                dpo[a + j] += dzo[a + j] * c[a + j];
            }
        }
        a = b;
    }
}

/// Multiplies `g` by the derivative of `act` at the (clipped) pre-activation, and zeroes it
/// where the clip was active.
#[inline(always)]
fn gate_derivative<F: Real, M: MathImpl>(
    act: &Activation,
    pre: Option<&[F]>,
    y: &[F],
    clip: Option<F>,
    xs: &mut [F],
    g: &mut [F],
) {
    match pre {
        Some(p) => {
            xs.copy_from_slice(p);
            if let Some(c) = clip {
                for (gj, &pj) in g.iter_mut().zip(p) {
                    if pj > c || pj < -c {
                        *gj = F::ZERO;
                    }
                }
                clip_slice(xs, Some(c));
            }
            mul_derivative_slice::<F, M>(act, xs, y, g);
        }
        None => mul_derivative_slice::<F, M>(act, y, y, g),
    }
}

// Each instruction set's build of the generic passes, for the kernel table
// ([`crate::simd::Kernels`]); the portable build (library math) is the reference.
macro_rules! builds {
    ($impl:ident, $args:ty, $portable:ident, $avx512:ident, $avx2:ident, $neon:ident) => {
        /// The portable build (library math).
        ///
        /// # Safety
        /// None beyond the arguments' contract (`unsafe` to share the table's signature).
        pub(crate) unsafe fn $portable<F: Real>(u: $args, ops: &CellOps) {
            $impl::<F, LibMath>(u, ops)
        }
        /// The AVX-512 build.
        ///
        /// # Safety
        /// The CPU must support [`KernelPath::Avx512`].
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx512f,avx512vl,avx512dq,avx512bw,avx2,fma")]
        pub(crate) unsafe fn $avx512<F: Real>(u: $args, ops: &CellOps) {
            $impl::<F, PolyMath>(u, ops)
        }
        /// The AVX2 build.
        ///
        /// # Safety
        /// The CPU must support [`KernelPath::Avx2`].
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx2,fma")]
        pub(crate) unsafe fn $avx2<F: Real>(u: $args, ops: &CellOps) {
            $impl::<F, PolyMath>(u, ops)
        }
        /// The NEON build.
        ///
        /// # Safety
        /// The CPU must support [`KernelPath::Neon`].
        #[cfg(target_arch = "aarch64")]
        #[target_feature(enable = "neon")]
        pub(crate) unsafe fn $neon<F: Real>(u: $args, ops: &CellOps) {
            $impl::<F, PolyMath>(u, ops)
        }
    };
}

builds!(forward_impl, FwdUnits<'_, F>, forward_portable, forward_avx512, forward_avx2, forward_neon);
builds!(backward_impl, BwdUnits<'_, F>, backward_portable, backward_avx512, backward_avx2, backward_neon);

/// The generic forward pass on `path` (which must be supported: see [`KernelPath::supported`]).
pub(crate) fn forward_units_generic<F: Real>(path: KernelPath, u: FwdUnits<'_, F>, ops: &CellOps) {
    // SAFETY: `active_kernel` and `set_kernel` only yield supported paths.
    unsafe { (F::kernels(path).forward_units)(u, ops) }
}

/// The backward pass on `path` (which must be supported).
pub(crate) fn backward_units<F: Real>(path: KernelPath, u: BwdUnits<'_, F>, ops: &CellOps) {
    // SAFETY: as above.
    unsafe { (F::kernels(path).backward_units)(u, ops) }
}

/// The forward point-wise pass on `path`: the fused AVX-512 cell ([`crate::fused`]) where it
/// applies, else the generic pass.
pub(crate) fn forward_units<F: Real>(path: KernelPath, mut u: FwdUnits<'_, F>, ops: &CellOps) {
    if !crate::fused::try_forward_default(path, &mut u, ops) {
        forward_units_generic(path, u, ops);
    }
}

#[cfg(test)]
mod tests;
