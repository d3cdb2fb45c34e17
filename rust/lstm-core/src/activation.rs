//! The eleven activation functions of ONNX recurrent operators, with their alpha/beta
//! parameters, derivatives, and slice-wise application that vectorises.

use crate::error::{LstmError, Result};
use crate::real::Real;

/// An activation function with its parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Activation {
    /// `max(0, x)`.
    Relu,
    /// `tanh(x)`.
    Tanh,
    /// `1 / (1 + e^-x)`.
    Sigmoid,
    /// `alpha * x + beta`.
    Affine {
        /// Slope.
        alpha: f64,
        /// Offset.
        beta: f64,
    },
    /// `x` if `x >= 0` else `alpha * x`.
    LeakyRelu {
        /// Slope for negative inputs.
        alpha: f64,
    },
    /// `x` if `x > alpha` else `0`.
    ThresholdedRelu {
        /// Threshold.
        alpha: f64,
    },
    /// `alpha * tanh(beta * x)`.
    ScaledTanh {
        /// Output scale.
        alpha: f64,
        /// Input scale.
        beta: f64,
    },
    /// `min(max(alpha * x + beta, 0), 1)`.
    HardSigmoid {
        /// Slope.
        alpha: f64,
        /// Offset.
        beta: f64,
    },
    /// `x` if `x >= 0` else `alpha * (e^x - 1)`.
    Elu {
        /// Scale of the negative branch.
        alpha: f64,
    },
    /// `x / (1 + |x|)`.
    Softsign,
    /// `ln(1 + e^x)`.
    Softplus,
}

/// The ONNX names, in the spelling of the specification.
pub const ACTIVATION_NAMES: [&str; 11] = [
    "Relu",
    "Tanh",
    "Sigmoid",
    "Affine",
    "LeakyRelu",
    "ThresholdedRelu",
    "ScaledTanh",
    "HardSigmoid",
    "Elu",
    "Softsign",
    "Softplus",
];

impl Activation {
    /// How many values of `activation_alpha` and `activation_beta` this function consumes.
    pub fn param_counts(name: &str) -> Option<(usize, usize)> {
        Some(match name.to_ascii_lowercase().as_str() {
            "relu" | "tanh" | "sigmoid" | "softsign" | "softplus" => (0, 0),
            "affine" | "scaledtanh" | "hardsigmoid" => (1, 1),
            "leakyrelu" | "thresholdedrelu" | "elu" => (1, 0),
            _ => return None,
        })
    }

    /// Builds an activation from its ONNX name (case-insensitive) and its parameters. Missing
    /// parameters take onnxruntime's values: LeakyRelu 0.01, HardSigmoid 0.2/0.5, Elu 1.0, and
    /// 0 for the others (Affine, ScaledTanh, ThresholdedRelu), which have no default there.
    pub fn from_name(name: &str, alpha: Option<f64>, beta: Option<f64>) -> Result<Self> {
        let a = |d: f64| alpha.unwrap_or(d);
        let b = |d: f64| beta.unwrap_or(d);
        Ok(match name.to_ascii_lowercase().as_str() {
            "relu" => Activation::Relu,
            "tanh" => Activation::Tanh,
            "sigmoid" => Activation::Sigmoid,
            "affine" => Activation::Affine { alpha: a(0.0), beta: b(0.0) },
            "leakyrelu" => Activation::LeakyRelu { alpha: a(0.01) },
            "thresholdedrelu" => Activation::ThresholdedRelu { alpha: a(0.0) },
            "scaledtanh" => Activation::ScaledTanh { alpha: a(0.0), beta: b(0.0) },
            "hardsigmoid" => Activation::HardSigmoid { alpha: a(0.2), beta: b(0.5) },
            "elu" => Activation::Elu { alpha: a(1.0) },
            "softsign" => Activation::Softsign,
            "softplus" => Activation::Softplus,
            _ => {
                return Err(LstmError::Value(format!(
                    "activations: unknown activation function {name:?}; expected one of {}",
                    ACTIVATION_NAMES.join(", ")
                )))
            }
        })
    }

    /// Whether the derivative can be computed from the output alone (so the tape need not keep
    /// the pre-activation values).
    pub fn derivative_from_output(&self) -> bool {
        matches!(self, Activation::Sigmoid | Activation::Tanh)
    }

    /// Scalar reference: the value at `x`, with library math.
    pub fn apply<F: Real>(&self, x: F) -> F {
        apply_one::<F, LibMath>(self, x)
    }

    /// Scalar reference: the derivative at `x`, given `y = self.apply(x)`.
    pub fn derivative<F: Real>(&self, x: F, y: F) -> F {
        derivative_one::<F, LibMath>(self, x, y)
    }
}

/// Where `exp` and `tanh` come from: library calls (the scalar reference) or the vectorising
/// polynomial (the SIMD paths).
pub trait MathImpl {
    /// `e^x`.
    fn exp<F: Real>(x: F) -> F;
    /// `tanh(x)`.
    fn tanh<F: Real>(x: F) -> F;
    /// `a * b + c`, fused where the instruction set has FMA.
    fn fma<F: Real>(a: F, b: F, c: F) -> F;
}

/// Library math: the reference for every SIMD path.
pub struct LibMath;
impl MathImpl for LibMath {
    #[inline(always)]
    fn exp<F: Real>(x: F) -> F {
        x.exp()
    }
    #[inline(always)]
    fn tanh<F: Real>(x: F) -> F {
        x.tanh()
    }
    #[inline(always)]
    fn fma<F: Real>(a: F, b: F, c: F) -> F {
        a * b + c
    }
}

/// Branch-free polynomial math that LLVM vectorises under each `target_feature`.
pub struct PolyMath;
impl MathImpl for PolyMath {
    #[inline(always)]
    fn exp<F: Real>(x: F) -> F {
        x.fast_exp()
    }
    #[inline(always)]
    fn tanh<F: Real>(x: F) -> F {
        // tanh(x) = 1 - 2 / (e^{2x} + 1): absolute error near machine epsilon everywhere.
        let two = F::from_f64(2.0);
        F::ONE - two / ((two * x).fast_exp() + F::ONE)
    }
    #[inline(always)]
    fn fma<F: Real>(a: F, b: F, c: F) -> F {
        a.mul_add(b, c)
    }
}

#[inline(always)]
fn sigmoid<F: Real, M: MathImpl>(x: F) -> F {
    F::ONE / (F::ONE + M::exp(-x))
}

#[inline(always)]
fn apply_one<F: Real, M: MathImpl>(act: &Activation, x: F) -> F {
    match *act {
        Activation::Relu => x.max_v(F::ZERO),
        Activation::Tanh => M::tanh(x),
        Activation::Sigmoid => sigmoid::<F, M>(x),
        Activation::Affine { alpha, beta } => F::from_f64(alpha) * x + F::from_f64(beta),
        Activation::LeakyRelu { alpha } => {
            if x >= F::ZERO {
                x
            } else {
                F::from_f64(alpha) * x
            }
        }
        Activation::ThresholdedRelu { alpha } => {
            if x > F::from_f64(alpha) {
                x
            } else {
                F::ZERO
            }
        }
        Activation::ScaledTanh { alpha, beta } => F::from_f64(alpha) * M::tanh(F::from_f64(beta) * x),
        Activation::HardSigmoid { alpha, beta } => {
            (F::from_f64(alpha) * x + F::from_f64(beta)).max_v(F::ZERO).min_v(F::ONE)
        }
        Activation::Elu { alpha } => {
            if x >= F::ZERO {
                x
            } else {
                F::from_f64(alpha) * (M::exp(x) - F::ONE)
            }
        }
        Activation::Softsign => x / (F::ONE + x.abs()),
        Activation::Softplus => {
            // ln(1 + e^x) = max(x, 0) + ln(1 + e^-|x|): no overflow for large x.
            x.max_v(F::ZERO) + (M::exp(-x.abs())).ln_1p()
        }
    }
}

#[inline(always)]
fn derivative_one<F: Real, M: MathImpl>(act: &Activation, x: F, y: F) -> F {
    match *act {
        Activation::Relu => {
            if x > F::ZERO {
                F::ONE
            } else {
                F::ZERO
            }
        }
        Activation::Tanh => F::ONE - y * y,
        Activation::Sigmoid => y * (F::ONE - y),
        Activation::Affine { alpha, .. } => F::from_f64(alpha),
        Activation::LeakyRelu { alpha } => {
            if x >= F::ZERO {
                F::ONE
            } else {
                F::from_f64(alpha)
            }
        }
        Activation::ThresholdedRelu { alpha } => {
            if x > F::from_f64(alpha) {
                F::ONE
            } else {
                F::ZERO
            }
        }
        Activation::ScaledTanh { alpha, beta } => {
            let t = M::tanh(F::from_f64(beta) * x);
            F::from_f64(alpha * beta) * (F::ONE - t * t)
        }
        Activation::HardSigmoid { alpha, beta } => {
            let z = F::from_f64(alpha) * x + F::from_f64(beta);
            if z > F::ZERO && z < F::ONE {
                F::from_f64(alpha)
            } else {
                F::ZERO
            }
        }
        Activation::Elu { alpha } => {
            if x >= F::ZERO {
                F::ONE
            } else {
                y + F::from_f64(alpha)
            }
        }
        Activation::Softsign => {
            let d = F::ONE + x.abs();
            F::ONE / (d * d)
        }
        Activation::Softplus => sigmoid::<F, M>(x),
    }
}

/// Applies `act` to every element of `xs` into `ys`. The match is outside the loop so each arm
/// is a plain loop that vectorises.
#[inline(always)]
pub(crate) fn apply_slice<F: Real, M: MathImpl>(act: &Activation, xs: &[F], ys: &mut [F]) {
    let n = xs.len().min(ys.len());
    let (xs, ys) = (&xs[..n], &mut ys[..n]);
    match act {
        Activation::Sigmoid => {
            for (y, &x) in ys.iter_mut().zip(xs) {
                *y = sigmoid::<F, M>(x);
            }
        }
        Activation::Tanh => {
            for (y, &x) in ys.iter_mut().zip(xs) {
                *y = M::tanh(x);
            }
        }
        other => {
            for (y, &x) in ys.iter_mut().zip(xs) {
                *y = apply_one::<F, M>(other, x);
            }
        }
    }
}

/// Multiplies `gs` by the derivative of `act` at `xs` (with outputs `ys`), element-wise.
#[inline(always)]
pub(crate) fn mul_derivative_slice<F: Real, M: MathImpl>(act: &Activation, xs: &[F], ys: &[F], gs: &mut [F]) {
    let n = gs.len();
    match act {
        Activation::Sigmoid => {
            for (g, &y) in gs.iter_mut().zip(&ys[..n]) {
                *g *= y * (F::ONE - y);
            }
        }
        Activation::Tanh => {
            for (g, &y) in gs.iter_mut().zip(&ys[..n]) {
                *g *= F::ONE - y * y;
            }
        }
        other => {
            for ((g, &x), &y) in gs.iter_mut().zip(&xs[..n]).zip(&ys[..n]) {
                *g *= derivative_one::<F, M>(other, x, y);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all() -> Vec<Activation> {
        ACTIVATION_NAMES.iter().map(|n| Activation::from_name(n, Some(0.7), Some(0.3)).unwrap()).collect()
    }

    #[test]
    fn derivative_matches_finite_difference() {
        for act in all() {
            for &x in &[-2.3f64, -0.4, 0.2, 0.9, 1.7] {
                let h = 1e-6;
                let fd = (act.apply(x + h) - act.apply(x - h)) / (2.0 * h);
                let an = act.derivative(x, act.apply(x));
                assert!((fd - an).abs() < 1e-6, "{act:?} at {x}: fd {fd} analytic {an}");
            }
        }
    }

    #[test]
    fn poly_math_matches_library_math() {
        for act in all() {
            let xs: Vec<f32> = (-400..400).map(|i| i as f32 * 0.05).collect();
            let mut a = vec![0f32; xs.len()];
            let mut b = vec![0f32; xs.len()];
            apply_slice::<f32, PolyMath>(&act, &xs, &mut a);
            apply_slice::<f32, LibMath>(&act, &xs, &mut b);
            for i in 0..xs.len() {
                assert!((a[i] - b[i]).abs() <= 2e-6 * (1.0 + b[i].abs()), "{act:?} x={}", xs[i]);
            }
        }
    }

    #[test]
    fn unknown_name_is_an_error_naming_the_choices() {
        let e = Activation::from_name("Swish", None, None).unwrap_err();
        assert!(e.to_string().contains("Swish") && e.to_string().contains("Softplus"));
    }

    #[test]
    fn names_are_case_insensitive() {
        assert_eq!(Activation::from_name("tAnH", None, None).unwrap(), Activation::Tanh);
        assert_eq!(Activation::from_name("leakyrelu", None, None).unwrap(), Activation::LeakyRelu { alpha: 0.01 });
    }
}
