//! Stacked (multi-layer, optionally bidirectional) LSTMs as one call: the layers run in turn
//! inside Rust, with PyTorch's inter-layer dropout applied through caller-supplied masks.

use std::sync::atomic::{AtomicBool, Ordering};

use crate::alloc::{copy_of, product, with_capacity, zeroed};
use crate::error::{check_len, LstmError, Result};
use crate::layer::{layer_backward, layer_forward, DirGrads, DirParams, LayerShape, LayerTape};
use crate::real::Real;
use crate::schedule::Schedule;

/// The tape of a whole network. One [`network_backward`] uses it up, unless that call
/// retains it: gradients accumulated twice from one forward pass are almost always a mistake.
#[derive(Debug)]
pub struct NetworkTape<F> {
    /// Input of each layer (layer 0's is a copy of `x`; later ones are dropped-out outputs).
    inputs: Vec<Vec<F>>,
    /// Dropout masks applied between layers (already scaled by `1 / (1 - p)`).
    masks: Vec<Option<Vec<F>>>,
    layers: Vec<LayerTape<F>>,
    /// Set by a backward pass that did not retain the tape.
    used: AtomicBool,
}

/// What a second backward pass on a used tape is told.
pub const TAPE_USED: &str = "tape: already used by backward; pass retain=True to the first backward to call it again";

impl<F> NetworkTape<F> {
    /// Bytes held by the tape.
    pub fn nbytes(&self) -> usize {
        let saved: usize =
            self.inputs.iter().map(Vec::len).sum::<usize>() + self.masks.iter().flatten().map(Vec::len).sum::<usize>();
        saved * std::mem::size_of::<F>() + self.layers.iter().map(LayerTape::nbytes).sum::<usize>()
    }

    /// Number of layers.
    pub fn num_layers(&self) -> usize {
        self.layers.len()
    }

    /// Whether a backward pass used the tape up (see [`network_backward`]'s `retain`).
    pub fn is_used(&self) -> bool {
        self.used.load(Ordering::SeqCst)
    }

    /// Claims the tape for one backward pass: refuses a used tape, and marks it used unless
    /// the pass retains it (a failed pass gives the claim back through [`NetworkTape::release`]).
    fn claim(&self, retain: bool) -> Result<()> {
        let was_used = if retain { self.is_used() } else { self.used.swap(true, Ordering::SeqCst) };
        if was_used {
            return Err(LstmError::Tape(TAPE_USED.into()));
        }
        Ok(())
    }

    fn release(&self, retain: bool) {
        if !retain {
            self.used.store(false, Ordering::SeqCst);
        }
    }
}

/// Outputs of a network's forward pass.
#[derive(Debug)]
pub struct NetworkOutput<F> {
    /// `[T, B, D*P]` of the last layer.
    pub y: Vec<F>,
    /// `[L*D, B, P]`.
    pub hn: Vec<F>,
    /// `[L*D, B, H]`.
    pub cn: Vec<F>,
    /// The tape, when asked for.
    pub tape: Option<NetworkTape<F>>,
}

/// Gradients of a network's backward pass.
#[derive(Debug, Clone)]
pub struct NetworkGrads<F> {
    /// `[T, B, I]`.
    pub dx: Vec<F>,
    /// `[L*D, B, P]`.
    pub dh0: Vec<F>,
    /// `[L*D, B, H]`.
    pub dc0: Vec<F>,
    /// Per layer, per direction.
    pub layers: Vec<Vec<DirGrads<F>>>,
}

/// Shape of layer `l` of a network whose first layer is `first`.
pub fn layer_shape(first: &LayerShape, dirs: usize, l: usize) -> LayerShape {
    LayerShape { input: if l == 0 { first.input } else { dirs * first.out() }, ..*first }
}

fn check_layers<F>(first: &LayerShape, layers: &[Vec<DirParams<'_, F>>]) -> Result<usize> {
    let nd = layers
        .first()
        .map(Vec::len)
        .ok_or_else(|| LstmError::Value("num_layers: expected at least 1, got 0".into()))?;
    if layers.iter().any(|l| l.len() != nd) {
        return Err(LstmError::Value("layers: every layer must have the same number of directions".into()));
    }
    let _ = first;
    Ok(nd)
}

/// Runs the network forward. `masks[l]` (for `l < L-1`) multiplies layer `l`'s output before it
/// enters layer `l+1`; `h0`/`c0` are `[L*D, B, P]`/`[L*D, B, H]`.
#[allow(clippy::too_many_arguments)]
pub fn network_forward<F: Real>(
    first: &LayerShape,
    layers: &[Vec<DirParams<'_, F>>],
    sched: &Schedule,
    x: &[F],
    h0: Option<&[F]>,
    c0: Option<&[F]>,
    masks: &[Option<&[F]>],
    keep_tape: bool,
) -> Result<NetworkOutput<F>> {
    let nd = check_layers(first, layers)?;
    let nl = layers.len();
    let (b, h, p) = (sched.batch, first.hidden, first.out());
    if let Some(v) = h0 {
        check_len("h0", nl * nd * b * p, v.len())?;
    }
    if let Some(v) = c0 {
        check_len("c0", nl * nd * b * h, v.len())?;
    }
    let out_len = product("dropout mask", &[sched.steps, b, nd, p])?;
    for m in masks.iter().flatten() {
        check_len("dropout mask", out_len, m.len())?;
    }
    let mut hn = with_capacity("Y_h", product("Y_h", &[nl, nd, b, p])?)?;
    let mut cn = with_capacity("Y_c", product("Y_c", &[nl, nd, b, h])?)?;
    let mut inputs: Vec<Vec<F>> = Vec::new();
    let mut tapes = Vec::new();
    let mut saved_masks = Vec::new();
    let mut current: Vec<F> = Vec::new();
    for (l, dirs) in layers.iter().enumerate() {
        let shape = layer_shape(first, nd, l);
        let xin: &[F] = if l == 0 { x } else { &current };
        let h0l = h0.map(|v| &v[l * nd * b * p..(l + 1) * nd * b * p]);
        let c0l = c0.map(|v| &v[l * nd * b * h..(l + 1) * nd * b * h]);
        let out = layer_forward(&shape, dirs, sched, xin, h0l, c0l, keep_tape)?;
        hn.extend_from_slice(&out.hn);
        cn.extend_from_slice(&out.cn);
        if keep_tape {
            inputs.push(copy_of("the tape's copy of the layer input", xin)?);
            tapes.extend(out.tape);
        }
        let mut y = out.y;
        if l + 1 < nl {
            let mask = masks.get(l).copied().flatten();
            if let Some(mk) = mask {
                for (v, &f) in y.iter_mut().zip(mk) {
                    *v *= f;
                }
            }
            if keep_tape {
                saved_masks.push(mask.map(|m| copy_of("the tape's dropout mask", m)).transpose()?);
            }
        }
        current = y;
    }
    let tape =
        keep_tape.then_some(NetworkTape { inputs, masks: saved_masks, layers: tapes, used: AtomicBool::new(false) });
    Ok(NetworkOutput { y: current, hn, cn, tape })
}

/// Runs the network backward from gradients of its outputs (`dy` `[T, B, D*P]`, `dhn`/`dcn`
/// `[L*D, B, P]`/`[L*D, B, H]`, each zero when absent).
///
/// A tape serves one backward pass: a second call on it is an [`LstmError::Tape`], unless
/// every earlier call passed `retain = true`. A call that fails leaves the tape as it was.
#[allow(clippy::too_many_arguments)]
pub fn network_backward<F: Real>(
    first: &LayerShape,
    layers: &[Vec<DirParams<'_, F>>],
    tape: &NetworkTape<F>,
    dy: Option<&[F]>,
    dhn: Option<&[F]>,
    dcn: Option<&[F]>,
    retain: bool,
) -> Result<NetworkGrads<F>> {
    tape.claim(retain)?;
    let out = backward_claimed(first, layers, tape, dy, dhn, dcn);
    if out.is_err() {
        tape.release(retain);
    }
    out
}

fn backward_claimed<F: Real>(
    first: &LayerShape,
    layers: &[Vec<DirParams<'_, F>>],
    tape: &NetworkTape<F>,
    dy: Option<&[F]>,
    dhn: Option<&[F]>,
    dcn: Option<&[F]>,
) -> Result<NetworkGrads<F>> {
    let nd = check_layers(first, layers)?;
    let nl = layers.len();
    if tape.layers.len() != nl {
        return Err(LstmError::Tape(format!(
            "tape: made by a {}-layer network, used with {nl} layers",
            tape.layers.len()
        )));
    }
    let sched = &tape.layers[0].sched;
    let (b, h, p) = (sched.batch, first.hidden, first.out());
    if let Some(v) = dhn {
        check_len("dh_n", nl * nd * b * p, v.len())?;
    }
    if let Some(v) = dcn {
        check_len("dc_n", nl * nd * b * h, v.len())?;
    }
    let mut dh0 = zeroed::<F>("dinitial_h", nl * nd * b * p)?;
    let mut dc0 = zeroed::<F>("dinitial_c", nl * nd * b * h)?;
    let mut grads: Vec<Vec<DirGrads<F>>> = Vec::with_capacity(nl);
    let mut upstream: Option<Vec<F>> = None;
    for l in (0..nl).rev() {
        let shape = layer_shape(first, nd, l);
        let dyl: Option<&[F]> = if l + 1 == nl { dy } else { upstream.as_deref() };
        let dhl = dhn.map(|v| &v[l * nd * b * p..(l + 1) * nd * b * p]);
        let dcl = dcn.map(|v| &v[l * nd * b * h..(l + 1) * nd * b * h]);
        let g = layer_backward(&shape, &layers[l], &tape.layers[l], &tape.inputs[l], dyl, dhl, dcl)?;
        dh0[l * nd * b * p..(l + 1) * nd * b * p].copy_from_slice(&g.dh0);
        dc0[l * nd * b * h..(l + 1) * nd * b * h].copy_from_slice(&g.dc0);
        let mut dx = g.dx;
        if l > 0 {
            if let Some(mk) = &tape.masks[l - 1] {
                for (v, &f) in dx.iter_mut().zip(mk) {
                    *v *= f;
                }
            }
        }
        upstream = Some(dx);
        grads.push(g.dirs);
    }
    grads.reverse();
    Ok(NetworkGrads { dx: upstream.unwrap_or_default(), dh0, dc0, layers: grads })
}
