//! `network_forward` / `network_backward`: the one entry point for both the ONNX operator (one
//! layer, ONNX gate order, every attribute) and PyTorch-style stacks (several layers,
//! projections, inter-layer dropout masks).

use lstm_core::{
    network_backward as core_backward, network_forward as core_forward, Activation, CellOps, DirParams, GateOrder,
    LayerShape, NetworkTape, PackedBf16, Real, Schedule, TileWeights, TAPE_USED,
};
use numpy::{Element, IntoPyArray, PyArrayDyn, PyArrayMethods, PyReadonlyArrayDyn};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

use crate::arrays::{borrow, borrow_opt, data};
use std::sync::RwLock;

use crate::errors::{engine_call, to_py, DTypeError, LstmValueError, ShapeError, TapeError};
use crate::packed::{PackedRecurrent, PackedTileWeights, PackedWeights};

/// Settings fixed by the forward pass and reused by the backward pass.
#[derive(Clone, Debug)]
struct NetConfig {
    shape: LayerShape,
    layers: usize,
    reverse: Vec<bool>,
    ops: Vec<CellOps>,
    steps: usize,
    batch: usize,
}

enum TapeData {
    F32(NetworkTape<f32>),
    F64(NetworkTape<f64>),
}

/// What a forward pass saved for its backward pass. Opaque; several may be pending at once.
/// A backward pass that does not retain it frees what it holds.
#[pyclass(module = "pylstm._core", frozen)]
pub struct Tape {
    cfg: NetConfig,
    dtype: &'static str,
    /// `None` once a backward pass used the tape up and freed it.
    data: RwLock<Option<TapeData>>,
}

#[pymethods]
impl Tape {
    /// Bytes of memory the tape holds (0 once a backward pass used it up).
    #[getter]
    fn nbytes(&self) -> usize {
        match self.data.read().as_deref() {
            Ok(Some(TapeData::F32(t))) => t.nbytes(),
            Ok(Some(TapeData::F64(t))) => t.nbytes(),
            _ => 0,
        }
    }

    /// The dtype the tape was made with.
    #[getter]
    fn dtype(&self) -> &'static str {
        self.dtype
    }

    /// Whether a backward pass used the tape up (a further one raises `TapeError`).
    #[getter]
    fn used(&self) -> bool {
        match self.data.read().as_deref() {
            Ok(Some(TapeData::F32(t))) => t.is_used(),
            Ok(Some(TapeData::F64(t))) => t.is_used(),
            _ => true,
        }
    }

    fn __repr__(&self) -> String {
        format!(
            "Tape(layers={}, directions={}, steps={}, batch={}, dtype={}, nbytes={})",
            self.cfg.layers,
            self.cfg.reverse.len(),
            self.cfg.steps,
            self.cfg.batch,
            self.dtype(),
            self.nbytes()
        )
    }
}

fn parse_ops(
    activations: &[Vec<ActivationSpec>],
    clip: Option<f64>,
    input_forget: bool,
    nd: usize,
) -> PyResult<Vec<CellOps>> {
    if activations.len() != nd {
        return Err(LstmValueError::new_err(format!(
            "activations: expected {} functions ({nd} directions x 3), got {}",
            3 * nd,
            3 * activations.len()
        )));
    }
    if let Some(c) = clip {
        if c.is_nan() || c <= 0.0 {
            return Err(LstmValueError::new_err(format!("clip: expected a positive number, got {c}")));
        }
    }
    activations
        .iter()
        .map(|fgh| {
            if fgh.len() != 3 {
                return Err(LstmValueError::new_err(format!(
                    "activations: expected 3 functions per direction, got {}",
                    fgh.len()
                )));
            }
            let act = |k: usize| Activation::from_name(&fgh[k].0, fgh[k].1, fgh[k].2).map_err(to_py);
            Ok(CellOps { f: act(0)?, g: act(1)?, h: act(2)?, clip, input_forget })
        })
        .collect()
}

/// An activation as Python passes it: name, alpha, beta.
type ActivationSpec = (String, Option<f64>, Option<f64>);
/// `(y, h_n, c_n, tape)`.
type Forward<'py> = (Bound<'py, PyAny>, Bound<'py, PyAny>, Bound<'py, PyAny>, Option<Tape>);

type Borrowed<'py, F> = Vec<Vec<[Option<PyReadonlyArrayDyn<'py, F>>; 5]>>;

fn borrow_layers<'py, F: Element>(layers: &Bound<'py, PyList>, nd: usize) -> PyResult<Borrowed<'py, F>> {
    let names = ["W", "R", "B", "P", "weight_hr"];
    let mut out = Vec::new();
    for (l, layer) in layers.iter().enumerate() {
        let dirs = layer
            .cast::<PyList>()
            .map_err(|_| ShapeError::new_err(format!("layers[{l}]: expected a list of directions")))?;
        if dirs.len() != nd {
            return Err(ShapeError::new_err(format!("layers[{l}]: expected {nd} directions, got {}", dirs.len())));
        }
        let mut per_dir = Vec::new();
        for (d, item) in dirs.iter().enumerate() {
            let parts: Vec<Bound<'py, PyAny>> = item
                .extract()
                .map_err(|_| ShapeError::new_err(format!("layers[{l}][{d}]: expected (W, R, B, P, weight_hr)")))?;
            if parts.len() != 5 {
                return Err(ShapeError::new_err(format!(
                    "layers[{l}][{d}]: expected 5 entries (W, R, B, P, weight_hr), got {}",
                    parts.len()
                )));
            }
            let mut arrs: [Option<PyReadonlyArrayDyn<'py, F>>; 5] = Default::default();
            for k in 0..5 {
                arrs[k] = borrow_opt(names[k], Some(&parts[k]))?;
            }
            if arrs[0].is_none() || arrs[1].is_none() {
                return Err(ShapeError::new_err(format!("layers[{l}][{d}]: W and R are required")));
            }
            per_dir.push(arrs);
        }
        out.push(per_dir);
    }
    Ok(out)
}

fn dir_params<'a, F: Element + Real>(
    b: &'a Borrowed<'_, F>,
    reverse: &[bool],
    ops: &[CellOps],
    halves: &[Vec<&'a PackedBf16>],
    packs: &[Vec<&'a PackedWeights>],
    tiles: &[Vec<&'a TileWeights>],
) -> Vec<Vec<DirParams<'a, F>>> {
    b.iter()
        .enumerate()
        .map(|(l, dirs)| {
            dirs.iter()
                .enumerate()
                .map(|(d, a)| DirParams {
                    w: a[0].as_ref().map(data).unwrap_or(&[]),
                    r: a[1].as_ref().map(data).unwrap_or(&[]),
                    r_bf16: halves.get(l).and_then(|v| v.get(d)).copied(),
                    w_packed: packs.get(l).and_then(|v| v.get(d)).map(|p| &p.w),
                    r_packed: packs.get(l).and_then(|v| v.get(d)).map(|p| &p.r),
                    tiles: tiles.get(l).and_then(|v| v.get(d)).copied(),
                    bias: a[2].as_ref().map(data),
                    peephole: a[3].as_ref().map(data),
                    proj: a[4].as_ref().map(data),
                    reverse: reverse[d],
                    ops: ops[d],
                })
                .collect()
        })
        .collect()
}

/// Packs the caller gave: one per layer and direction.
type Given<'py, P> = Vec<Vec<Bound<'py, P>>>;

/// How a packed-weights option is named in its errors.
struct PackOption {
    /// The argument (`bf16_weights`, `tile_weights`).
    arg: &'static str,
    /// What the inference-only and float32-only errors name (the argument, or the mode it
    /// stands for).
    mode: &'static str,
    /// Why training cannot use it, appended to the inference-only error.
    tape_why: &'static str,
    /// The function that makes its packs.
    packer: &'static str,
}

/// Checks that `given` has one pack per layer and direction.
fn check_layout<P>(arg: &str, given: &Given<'_, P>, cfg: &NetConfig) -> PyResult<()> {
    let nd = cfg.reverse.len();
    if given.len() != cfg.layers || given.iter().any(|l| l.len() != nd) {
        return Err(ShapeError::new_err(format!(
            "{arg}: expected {} layers of {nd} packed weights, got {:?}",
            cfg.layers,
            given.iter().map(Vec::len).collect::<Vec<_>>()
        )));
    }
    Ok(())
}

/// The packs a `bool | packs` option asks for (float32 inference only): those the caller gave
/// (one per layer and direction), or, for `True`, `pack(W, R)` of each direction for this call
/// only; nothing for `None` or `False`.
fn packs_for_call<'py, F: Element + Real, P: pyo3::PyClass, T: Send>(
    py: Python<'py>,
    spec: Option<&Bound<'py, PyAny>>,
    (borrowed, cfg, keep_tape): (&Borrowed<'py, F>, &NetConfig, bool),
    opt: PackOption,
    pack: impl Fn(&[f32], &[f32]) -> lstm_core::Result<T> + Sync,
) -> PyResult<(Given<'py, P>, Vec<Vec<T>>)> {
    let Some(spec) = spec.filter(|v| !v.is_none()) else { return Ok((Vec::new(), Vec::new())) };
    let flag = spec.extract::<bool>().ok();
    if flag == Some(false) {
        return Ok((Vec::new(), Vec::new()));
    }
    if keep_tape {
        return Err(LstmValueError::new_err(format!(
            "{}: inference only, got keep_tape=True{}",
            opt.mode, opt.tape_why
        )));
    }
    if !F::IS_F32 {
        return Err(DTypeError::new_err(format!("{}: expected float32 inputs, got float64", opt.mode)));
    }
    if flag == Some(true) {
        let as_f32 = |a: &Option<PyReadonlyArrayDyn<'py, F>>| {
            let v = a.as_ref().map(data).unwrap_or(&[]);
            F::f32_ptr(v.as_ptr()).map_or(&[][..], |p| {
                // SAFETY: the same pointer and length as `v`, of the same type (F is f32, checked
                // above).
                unsafe { std::slice::from_raw_parts(p, v.len()) }
            })
        };
        let mut owned = Vec::new();
        for dirs in borrowed {
            let mut per_dir = Vec::new();
            for a in dirs {
                let (w, r) = (as_f32(&a[0]), as_f32(&a[1]));
                per_dir.push(py.detach(|| pack(w, r)).map_err(to_py)?);
            }
            owned.push(per_dir);
        }
        return Ok((Vec::new(), owned));
    }
    let given: Given<'py, P> = spec.extract().map_err(|_| {
        LstmValueError::new_err(format!(
            "{}: expected a bool or a list (per layer) of lists (per direction) of packed weights from {}",
            opt.arg, opt.packer
        ))
    })?;
    check_layout(opt.arg, &given, cfg)?;
    Ok((given, Vec::new()))
}

/// The bfloat16 recurrent weights `bf16_weights` asks for (see [`packs_for_call`]).
fn half_weights<'py, F: Element + Real>(
    py: Python<'py>,
    bf16: Option<&Bound<'py, PyAny>>,
    call: (&Borrowed<'py, F>, &NetConfig, bool),
) -> PyResult<(Given<'py, PackedRecurrent>, Vec<Vec<PackedBf16>>)> {
    let (h, p) = (call.1.shape.hidden, call.1.shape.out());
    let opt = PackOption { arg: "bf16_weights", mode: "bf16_weights", tape_why: "", packer: "pack_bf16" };
    packs_for_call(py, bf16, call, opt, |_, r| PackedBf16::new(r, h, p))
}

/// The weights `packed_weights` gives: one `pack_weights` result per layer and direction
/// (float32 only; their sizes are checked against each layer by the engine).
fn packed_weights<'py, F: Element + Real>(
    spec: Option<&Bound<'py, PyAny>>,
    cfg: &NetConfig,
    keep_tape: bool,
) -> PyResult<Given<'py, PackedWeights>> {
    let Some(spec) = spec.filter(|v| !v.is_none()) else { return Ok(Vec::new()) };
    if keep_tape {
        // The backward pass reads W and R themselves: a stale pack would give gradients of
        // different weights than the forward used.
        return Err(LstmValueError::new_err("packed_weights: inference only, got keep_tape=True"));
    }
    if !F::IS_F32 {
        return Err(DTypeError::new_err("packed_weights: expected float32 inputs, got float64"));
    }
    let given: Given<'py, PackedWeights> = spec.extract().map_err(|_| {
        LstmValueError::new_err(
            "packed_weights: expected a list (per layer) of lists (per direction) of packed weights from pack_weights",
        )
    })?;
    check_layout("packed_weights", &given, cfg)?;
    Ok(given)
}

/// The AMX tile weights `tile_weights` asks for (see [`packs_for_call`]); AMX must be there.
fn tile_weights<'py, F: Element + Real>(
    py: Python<'py>,
    spec: Option<&Bound<'py, PyAny>>,
    call: (&Borrowed<'py, F>, &NetConfig, bool),
) -> PyResult<(Given<'py, PackedTileWeights>, Vec<Vec<TileWeights>>)> {
    let (h, p) = (call.1.shape.hidden, call.1.shape.out());
    let opt = PackOption {
        arg: "tile_weights",
        mode: "compute_dtype='bfloat16'",
        tape_why: " (gradients are computed in float32)",
        packer: "pack_tiles",
    };
    let packs = packs_for_call(py, spec, call, opt, |w, r| {
        lstm_core::amx::require_amx()?;
        TileWeights::new(w, r, h, if h == 0 { 0 } else { w.len() / (4 * h) }, p)
    })?;
    if !packs.0.is_empty() {
        lstm_core::amx::require_amx().map_err(to_py)?;
    }
    Ok(packs)
}

fn to_numpy<'py, F: Element>(py: Python<'py>, v: Vec<F>, shape: Vec<usize>) -> PyResult<Bound<'py, PyAny>> {
    Ok(v.into_pyarray(py).reshape(shape)?.into_any())
}

/// The per-call options of a forward: keep_tape, bf16_weights, packed_weights, tile_weights.
type Options<'a, 'py> =
    (bool, Option<&'a Bound<'py, PyAny>>, Option<&'a Bound<'py, PyAny>>, Option<&'a Bound<'py, PyAny>>);

#[allow(clippy::too_many_arguments)]
fn forward_typed<'py, F: Element + Real>(
    py: Python<'py>,
    x: &Bound<'py, PyAny>,
    layers: &Bound<'py, PyList>,
    cfg: NetConfig,
    h0: Option<&Bound<'py, PyAny>>,
    c0: Option<&Bound<'py, PyAny>>,
    lengths: Option<Vec<i64>>,
    masks: Option<&Bound<'py, PyList>>,
    (keep_tape, bf16, packed, tiled): Options<'_, 'py>,
    (wrap, dtype): (fn(NetworkTape<F>) -> TapeData, &'static str),
) -> PyResult<Forward<'py>> {
    let nd = cfg.reverse.len();
    let xa = borrow::<F>("X", x)?;
    let h0a = borrow_opt::<F>("initial_h", h0)?;
    let c0a = borrow_opt::<F>("initial_c", c0)?;
    let borrowed = borrow_layers::<F>(layers, nd)?;
    let mut mask_arrays = Vec::new();
    if let Some(ms) = masks {
        for (k, m) in ms.iter().enumerate() {
            mask_arrays.push(borrow_opt::<F>(&format!("dropout mask {k}"), Some(&m))?);
        }
    }
    let lengths: Option<Vec<usize>> = match lengths {
        None => None,
        Some(v) => Some(
            v.iter()
                .enumerate()
                .map(|(b, &n)| {
                    usize::try_from(n).map_err(|_| {
                        LstmValueError::new_err(format!(
                            "sequence_lens: expected each length in 1..={}, got {n} at batch index {b}",
                            cfg.steps
                        ))
                    })
                })
                .collect::<PyResult<_>>()?,
        ),
    };
    let sched = Schedule::new(cfg.steps, cfg.batch, lengths.as_deref()).map_err(to_py)?;
    let (given, owned) = half_weights::<F>(py, bf16, (&borrowed, &cfg, keep_tape))?;
    let halves: Vec<Vec<&PackedBf16>> = if given.is_empty() {
        owned.iter().map(|l| l.iter().collect()).collect()
    } else {
        given.iter().map(|l| l.iter().map(|p| &p.get().inner).collect()).collect()
    };
    let given_packs = packed_weights::<F>(packed, &cfg, keep_tape)?;
    let packs: Vec<Vec<&PackedWeights>> = given_packs.iter().map(|l| l.iter().map(|p| p.get()).collect()).collect();
    let (given_tiles, owned_tiles) = tile_weights::<F>(py, tiled, (&borrowed, &cfg, keep_tape))?;
    let tiles: Vec<Vec<&TileWeights>> = if given_tiles.is_empty() {
        owned_tiles.iter().map(|l| l.iter().collect()).collect()
    } else {
        given_tiles.iter().map(|l| l.iter().map(|p| &p.get().inner).collect()).collect()
    };
    let params = dir_params(&borrowed, &cfg.reverse, &cfg.ops, &halves, &packs, &tiles);
    let xs = data(&xa);
    let h0s = h0a.as_ref().map(data);
    let c0s = c0a.as_ref().map(data);
    let ms: Vec<Option<&[F]>> = mask_arrays.iter().map(|m| m.as_ref().map(data)).collect();
    let shape = cfg.shape;
    let out = py.detach(|| core_forward(&shape, &params, &sched, xs, h0s, c0s, &ms, keep_tape)).map_err(to_py)?;
    let (t, b, p, h, l) = (cfg.steps, cfg.batch, shape.out(), shape.hidden, cfg.layers);
    let tape = out.tape.map(|tp| Tape { cfg: cfg.clone(), dtype, data: RwLock::new(Some(wrap(tp))) });
    Ok((
        to_numpy(py, out.y, vec![t, b, nd * p])?,
        to_numpy(py, out.hn, vec![l * nd, b, p])?,
        to_numpy(py, out.cn, vec![l * nd, b, h])?,
        tape,
    ))
}

/// Runs a stack of LSTM layers forward.
///
/// `layers[l][d]` is `(W, R, B, P, weight_hr)` (B, P and weight_hr may be None), `x` is
/// `[T, B, I]`. Returns `(y [T, B, D*P], h_n [L*D, B, P], c_n [L*D, B, H], tape or None)`.
/// `bf16_weights` (float32 inference only): `True` rounds each R to bfloat16 for this call, or
/// a list per layer of lists per direction of `pack_bf16` results, packed once by the caller.
/// `packed_weights` (float32): a list per layer of lists per direction of `pack_weights`
/// results; the call then reads W and R from them instead of packing its own.
/// `tile_weights` (float32 inference only, where AMX is available): `True` rounds each W and R
/// to bfloat16 and packs them as tiles for this call, or a list per layer of lists per direction
/// of `pack_tiles` results; every product then runs in bfloat16 on AMX tiles.
#[pyfunction]
#[pyo3(signature = (x, layers, *, hidden_size, proj_size, order, reverse, activations, clip=None, input_forget=false, h0=None, c0=None, lengths=None, masks=None, keep_tape=false, bf16_weights=None, packed_weights=None, tile_weights=None))]
#[allow(clippy::too_many_arguments)]
pub fn network_forward<'py>(
    py: Python<'py>,
    x: &Bound<'py, PyAny>,
    layers: &Bound<'py, PyList>,
    hidden_size: usize,
    proj_size: usize,
    order: &str,
    reverse: Vec<bool>,
    activations: Vec<Vec<ActivationSpec>>,
    clip: Option<f64>,
    input_forget: bool,
    h0: Option<&Bound<'py, PyAny>>,
    c0: Option<&Bound<'py, PyAny>>,
    lengths: Option<Vec<i64>>,
    masks: Option<&Bound<'py, PyList>>,
    keep_tape: bool,
    bf16_weights: Option<&Bound<'py, PyAny>>,
    packed_weights: Option<&Bound<'py, PyAny>>,
    tile_weights: Option<&Bound<'py, PyAny>>,
) -> PyResult<Forward<'py>> {
    let nd = reverse.len();
    if nd == 0 || nd > 2 {
        return Err(LstmValueError::new_err(format!("direction: expected 1 or 2 directions, got {nd}")));
    }
    if layers.is_empty() {
        return Err(LstmValueError::new_err("num_layers: expected at least 1, got 0"));
    }
    let order = match order {
        "onnx" => GateOrder::ONNX,
        "torch" => GateOrder::TORCH,
        other => return Err(LstmValueError::new_err(format!("order: expected 'onnx' or 'torch', got {other:?}"))),
    };
    let ops = parse_ops(&activations, clip, input_forget, nd)?;
    let dims: Vec<usize> = x.getattr("shape")?.extract()?;
    if dims.len() != 3 {
        return Err(ShapeError::new_err(format!(
            "X: expected 3 dimensions [seq_length, batch_size, input_size], got shape {dims:?}"
        )));
    }
    let cfg = NetConfig {
        shape: LayerShape { input: dims[2], hidden: hidden_size, proj: proj_size, order },
        layers: layers.len(),
        reverse,
        ops,
        steps: dims[0],
        batch: dims[1],
    };
    let opts = (keep_tape, bf16_weights, packed_weights, tile_weights);
    // A type check, not the dtype's name: this runs on every call, single steps included.
    if x.cast::<PyArrayDyn<f32>>().is_ok() {
        engine_call(|| {
            forward_typed::<f32>(py, x, layers, cfg, h0, c0, lengths, masks, opts, (TapeData::F32, "float32"))
        })
    } else if x.cast::<PyArrayDyn<f64>>().is_ok() {
        engine_call(|| {
            forward_typed::<f64>(py, x, layers, cfg, h0, c0, lengths, masks, opts, (TapeData::F64, "float64"))
        })
    } else {
        let got = match x.getattr("dtype").and_then(|d| d.str()) {
            Ok(d) if x.cast::<numpy::PyUntypedArray>().is_ok() => format!("dtype {d}"),
            _ => format!("a {}", x.get_type().name()?),
        };
        Err(DTypeError::new_err(format!("X: expected a numpy array of dtype float32 or float64, got {got}")))
    }
}

type Grads<'py> = (Bound<'py, PyAny>, Bound<'py, PyAny>, Bound<'py, PyAny>, Vec<Vec<Bound<'py, PyDict>>>);

#[allow(clippy::too_many_arguments)]
fn backward_typed<'py, F: Element + Real>(
    py: Python<'py>,
    cfg: &NetConfig,
    tape: &NetworkTape<F>,
    layers: &Bound<'py, PyList>,
    dy: Option<&Bound<'py, PyAny>>,
    dhn: Option<&Bound<'py, PyAny>>,
    dcn: Option<&Bound<'py, PyAny>>,
    retain: bool,
) -> PyResult<Grads<'py>> {
    let nd = cfg.reverse.len();
    if layers.len() != cfg.layers {
        return Err(TapeError::new_err(format!(
            "layers: the tape was made by {} layers, got {}",
            cfg.layers,
            layers.len()
        )));
    }
    let borrowed = borrow_layers::<F>(layers, nd)?;
    let dya = borrow_opt::<F>("dy", dy)?;
    let dha = borrow_opt::<F>("dh_n", dhn)?;
    let dca = borrow_opt::<F>("dc_n", dcn)?;
    let params = dir_params(&borrowed, &cfg.reverse, &cfg.ops, &[], &[], &[]);
    let (dys, dhs, dcs) = (dya.as_ref().map(data), dha.as_ref().map(data), dca.as_ref().map(data));
    let shape = cfg.shape;
    let g = py.detach(|| core_backward(&shape, &params, tape, dys, dhs, dcs, retain)).map_err(to_py)?;
    let (t, b, p, h, l) = (cfg.steps, cfg.batch, shape.out(), shape.hidden, cfg.layers);
    let mut grads = Vec::new();
    for (li, dirs) in g.layers.into_iter().enumerate() {
        let input = if li == 0 { shape.input } else { nd * p };
        let mut per_dir = Vec::new();
        for dg in dirs {
            let dict = PyDict::new(py);
            dict.set_item("W", to_numpy(py, dg.w, vec![4 * h, input])?)?;
            dict.set_item("R", to_numpy(py, dg.r, vec![4 * h, p])?)?;
            dict.set_item("B", to_numpy(py, dg.bias, vec![4 * h])?)?;
            if let Some(v) = dg.peephole {
                dict.set_item("P", to_numpy(py, v, vec![3 * h])?)?;
            }
            if let Some(v) = dg.proj {
                dict.set_item("weight_hr", to_numpy(py, v, vec![p, h])?)?;
            }
            per_dir.push(dict);
        }
        grads.push(per_dir);
    }
    Ok((
        to_numpy(py, g.dx, vec![t, b, shape.input])?,
        to_numpy(py, g.dh0, vec![l * nd, b, p])?,
        to_numpy(py, g.dc0, vec![l * nd, b, h])?,
        grads,
    ))
}

/// Runs the backward pass of the forward pass that made `tape`, with the same weights.
/// Returns `(dx [T, B, I], dh0 [L*D, B, P], dc0 [L*D, B, H], grads)`, `grads[l][d]` a dict with
/// keys `W`, `R`, `B` and, where present, `P` and `weight_hr`.
///
/// The call uses the tape up and frees it, unless `retain=True`: a second call on a used tape
/// raises `TapeError` (gradients would otherwise accumulate twice without a word).
#[pyfunction]
#[pyo3(signature = (tape, layers, dy=None, dh_n=None, dc_n=None, *, retain=None))]
#[allow(clippy::too_many_arguments)]
pub fn network_backward<'py>(
    py: Python<'py>,
    tape: &Bound<'py, PyAny>,
    layers: &Bound<'py, PyAny>,
    dy: Option<&Bound<'py, PyAny>>,
    dh_n: Option<&Bound<'py, PyAny>>,
    dc_n: Option<&Bound<'py, PyAny>>,
    retain: Option<&Bound<'py, PyAny>>,
) -> PyResult<Grads<'py>> {
    let type_name = |o: &Bound<'py, PyAny>| o.get_type().name().map(|n| n.to_string()).unwrap_or_default();
    let tape = tape.cast::<Tape>().map_err(|_| {
        TapeError::new_err(format!(
            "tape: expected a Tape from network_forward(..., keep_tape=True), got {}",
            type_name(tape)
        ))
    })?;
    let layers = layers
        .cast::<PyList>()
        .map_err(|_| ShapeError::new_err(format!("layers: expected a list of layers, got {}", type_name(layers))))?;
    let retain = match retain {
        None => false,
        Some(r) => r
            .cast::<pyo3::types::PyBool>()
            .map_err(|_| DTypeError::new_err(format!("retain: expected a bool, got {}", type_name(r))))?
            .is_true(),
    };
    let t = tape.get();
    let out = engine_call(|| {
        let guard = t.data.read().map_err(|_| TapeError::new_err("tape: unusable after an earlier failure"))?;
        match guard.as_ref() {
            Some(TapeData::F32(tp)) => backward_typed::<f32>(py, &t.cfg, tp, layers, dy, dh_n, dc_n, retain),
            Some(TapeData::F64(tp)) => backward_typed::<f64>(py, &t.cfg, tp, layers, dy, dh_n, dc_n, retain),
            None => Err(TapeError::new_err(TAPE_USED)),
        }
    })?;
    if !retain {
        // Used up: free what it holds. (Skipped, harmlessly, while another call reads it.)
        if let Ok(mut data) = t.data.try_write() {
            *data = None;
        }
    }
    Ok(out)
}
