//! Calibration statistics: the model runs on calibration batches (through an
//! [`Executor`]) with the activations the scores need exposed as outputs, and
//! per activation the sums of `x` and `x²` per position of its last axis are
//! accumulated over every row; for the inputs of consumer matrices (what a
//! refit solves against), the whole second-moment matrix `Σ xxᵀ` as well.

use crate::coupling::{Coupling, Member, Role};
use ecospac_ir::exec::{Array, Batch, ExecError, Executor};
use ecospac_ir::op::QLinear;
use ecospac_ir::{DType, EntityId, Model, Node, Op, Value, ValueId};
use faer::{Mat, MatRef};
use std::collections::{BTreeMap, HashMap};

/// The statistics of one activation, over every row of its last axis.
#[derive(Clone, Debug, Default)]
pub struct ActivationStats {
    /// Rows seen.
    pub rows: u64,
    /// `Σ x` per position.
    pub sum: Vec<f64>,
    /// `Σ x²` per position.
    pub sq: Vec<f64>,
    /// `Σ xxᵀ` (width × width), for consumer inputs.
    pub gram: Option<Mat<f64>>,
}

impl ActivationStats {
    fn new(width: usize, full: bool) -> ActivationStats {
        ActivationStats {
            rows: 0,
            sum: vec![0.0; width],
            sq: vec![0.0; width],
            gram: full.then(|| Mat::zeros(width, width)),
        }
    }

    fn add(&mut self, a: &Array) {
        let w = a.last_dim();
        if w != self.sum.len() {
            return;
        }
        for row in a.data.chunks_exact(w) {
            for (p, &x) in row.iter().enumerate() {
                let x = x as f64;
                self.sum[p] += x;
                self.sq[p] += x * x;
            }
        }
        if let Some(g) = self.gram.as_mut() {
            let rows = a.data.len() / w;
            let x = MatRef::from_row_major_slice(&a.data[..rows * w], rows, w);
            let xtx: Mat<f32> = x.transpose() * x;
            for j in 0..w {
                for i in 0..w {
                    g[(i, j)] += xtx[(i, j)] as f64;
                }
            }
        }
        self.rows += (a.data.len() / w) as u64;
    }

    /// Mean of position `p`.
    pub fn mean(&self, p: usize) -> f64 {
        self.sum.get(p).map_or(0.0, |s| s / self.rows.max(1) as f64)
    }

    /// Second moment (`centered`: variance) of position `p`.
    pub fn moment(&self, p: usize, centered: bool) -> f64 {
        let m2 = self.sq.get(p).map_or(0.0, |s| s / self.rows.max(1) as f64);
        if centered {
            (m2 - self.mean(p).powi(2)).max(0.0)
        } else {
            m2
        }
    }

    /// The second-moment (`centered`: covariance) matrix of some positions, when the full matrix was collected.
    pub fn block(&self, positions: &[u32], centered: bool) -> Option<Mat<f64>> {
        let g = self.gram.as_ref()?;
        let rows = self.rows.max(1) as f64;
        Some(Mat::from_fn(positions.len(), positions.len(), |i, j| {
            let (a, b) = (positions[i] as usize, positions[j] as usize);
            let m = g[(a, b)] / rows;
            if centered {
                m - self.mean(a) * self.mean(b)
            } else {
                m
            }
        }))
    }

    /// The whole second-moment (`centered`: covariance) matrix, when collected.
    pub fn matrix(&self, centered: bool) -> Option<Mat<f64>> {
        let all: Vec<u32> = (0..self.sum.len() as u32).collect();
        self.block(&all, centered)
    }
}

/// What calibration measured.
#[derive(Clone, Debug, Default)]
pub struct CalibrationStats {
    /// Per activation.
    pub acts: HashMap<ValueId, ActivationStats>,
    /// Samples run.
    pub samples: usize,
}

/// The activation a member's index shows up in: a writer's product output
/// (last axis), or a reader's product input (last axis).
pub fn member_activation(model: &Model, m: &Member) -> Option<(ValueId, Role)> {
    let g = &model.graph;
    let (mut node, mut input) = m.reader?;
    // Look through a Transpose, Cast or DequantizeLinear of the weight to the product that reads it.
    while matches!(g.node(node).op, Op::Transpose { .. } | Op::Cast(_))
        || (matches!(g.node(node).op, Op::Dequantize(_)) && input == 0)
    {
        let out = g.node(node).outputs.first().copied().flatten()?;
        let consumers = g.consumers();
        let [next] = consumers[out.index()].as_slice() else { return None };
        input = g.node(*next).inputs.iter().position(|v| *v == Some(out))?;
        node = *next;
    }
    let n = g.node(node);
    // Float, or codes that can be dequantised.
    let probed = |v: ValueId| g.value(v).best_ty().is_some_and(|t| t.dtype == DType::F32) || code_scale(g, v).is_some();
    match (&n.op, m.role) {
        // A MatMulNBits reads its input in blocks, not in the positions of its
        // weight's block axis: only its output is a member's activation.
        (Op::MatMul | Op::Gemm(_) | Op::MatMulNBits(_), Role::Writer) if input == 1 => {
            Some((n.outputs.first().copied().flatten()?, Role::Writer))
        }
        (Op::MatMul, Role::Reader) if input == 1 => Some((n.inputs.first().copied().flatten()?, Role::Reader)),
        // Integer products: the float the codes stand for, after the product
        // (`Cast` then the scale's `Mul`) and before its dynamic quantisation.
        (Op::MatMulInteger, Role::Writer) if input == 1 => {
            let (mul, _) = super::integer_product_scaling(g, &g.consumers(), n)?;
            let out = mul.outputs.first().copied().flatten()?;
            g.value(out).best_ty().is_some_and(|t| t.dtype.is_float()).then_some((out, Role::Writer))
        }
        (Op::MatMulInteger, Role::Reader) if input == 1 => {
            let codes = n.inputs.first().copied().flatten()?;
            let q = g.node(g.producers()[codes.index()]?);
            matches!(q.op, Op::DynamicQuantize).then_some((q.inputs.first().copied().flatten()?, Role::Reader))
        }
        (Op::Gemm(gm), Role::Reader) if input == 1 && !gm.trans_a => {
            Some((n.inputs.first().copied().flatten()?, Role::Reader))
        }
        // The quantised operator format: codes, which the probe dequantises.
        (Op::QLinear(QLinear::MatMul | QLinear::Gemm { .. }), Role::Writer) if input == 3 => {
            let out = n.outputs.first().copied().flatten()?;
            probed(out).then_some((out, Role::Writer))
        }
        (Op::QLinear(QLinear::MatMul | QLinear::Gemm { trans_a: false, .. }), Role::Reader) if input == 3 => {
            let codes = n.inputs.first().copied().flatten()?;
            probed(codes).then_some((codes, Role::Reader))
        }
        _ => None,
    }
}

/// How the codes `v` decode to the floats they stand for: the per-tensor
/// scale and zero point with which the quantised operator that makes them
/// writes them, or with which one that reads them (or a `DequantizeLinear`)
/// reads them.
fn code_scale(g: &ecospac_ir::Graph, v: ValueId) -> Option<(ValueId, Option<ValueId>)> {
    let one = |s: ValueId| g.value(s).best_ty().and_then(|t| t.numel()) == Some(1);
    if let Some(n) = g.producers().get(v.index()).copied().flatten().map(|p| g.node(p)) {
        if let Op::QLinear(q) = &n.op {
            let (scale, zero) = q.output_params();
            return (*n.inputs.get(scale)?).filter(|&s| one(s)).map(|s| (s, n.inputs.get(zero).copied().flatten()));
        }
    }
    g.consumers().get(v.index())?.iter().find_map(|&c| {
        let n = g.node(c);
        let input = n.inputs.iter().position(|x| *x == Some(v))?;
        let (scale, zero) = match &n.op {
            Op::QLinear(q) => q.params_of(input)?,
            Op::Dequantize(_) if input == 0 => (1, 2),
            _ => return None,
        };
        let scale = (*n.inputs.get(scale)?).filter(|&s| one(s))?;
        Some((scale, n.inputs.get(zero).copied().flatten()))
    })
}

/// `model` with `values` as its only outputs (cast to float32 where they are
/// not, dequantised where they are codes), and everything they do not need removed.
pub fn probe_model(model: &Model, values: &[ValueId]) -> Result<Model, ExecError> {
    let mut m = model.clone();
    let mut outputs = Vec::with_capacity(values.len());
    for &v in values {
        let dtype = m.graph.value(v).best_ty().map(|t| t.dtype);
        let codes = matches!(dtype, Some(DType::U8 | DType::I8)).then(|| code_scale(&m.graph, v)).flatten();
        // The float the activation stands for: the value itself, its float32
        // cast, or its codes dequantised.
        let (op, inputs) = match (dtype, codes) {
            (Some(DType::F32), _) => {
                outputs.push(v);
                continue;
            }
            (_, Some((scale, zero))) => {
                let quant = ecospac_ir::op::Quant { axis: None, saturate: None, output_dtype: None, block_size: None };
                (Op::Dequantize(quant), vec![Some(v), Some(scale), zero])
            }
            (Some(d), None) if d.is_float() => {
                (Op::Cast(ecospac_ir::op::Cast { to: DType::F32, saturate: None }), vec![Some(v)])
            }
            (other, None) => {
                return Err(ExecError(format!(
                    "activation `{}` is {other:?}, not a float tensor",
                    m.graph.value(v).name
                )))
            }
        };
        let name = format!("{}::ecospac_f32", m.graph.value(v).name);
        let out = m.graph.add_value(Value::named(name.clone()));
        m.graph.add_node(Node { name, op, inputs, outputs: vec![Some(out)], origin: None, captures: Vec::new() });
        outputs.push(out);
    }
    m.graph.outputs = outputs;
    crate::fold::eliminate_dead(&mut m);
    Ok(m)
}

/// Runs `model` on `batches` with the float activations `values` exposed;
/// calls `each` with every batch's arrays (in the order of `values`).
pub fn run_probes(
    exec: &dyn Executor,
    model: &Model,
    values: &[ValueId],
    batches: &[Batch],
    mut each: impl FnMut(usize, &[Array]),
) -> Result<(), ExecError> {
    let probed = probe_model(model, values)?;
    let mut session = exec.load(&probed)?;
    for (i, b) in batches.iter().enumerate() {
        let out = session.run(b)?;
        let arrays: Vec<Array> = out
            .iter()
            .map(|t| Array::of(t).ok_or_else(|| ExecError(format!("an activation came back as {}", t.dtype))))
            .collect::<Result<_, _>>()?;
        each(i, &arrays);
    }
    Ok(())
}

/// Collects the statistics every group's scores need on `batches`.
pub fn collect(
    model: &Model,
    coupling: &Coupling,
    exec: &dyn Executor,
    batches: &[Batch],
) -> Result<CalibrationStats, ExecError> {
    // Per activation: whether a consumer matrix reads it (then the full matrix is kept).
    let mut wanted: BTreeMap<ValueId, bool> = BTreeMap::new();
    for g in &coupling.groups {
        for m in &g.members {
            let Some((act, role)) = member_activation(model, m) else { continue };
            *wanted.entry(act).or_default() |= role == Role::Reader;
        }
    }
    let values: Vec<ValueId> = wanted.keys().copied().collect();
    if values.is_empty() {
        return Ok(CalibrationStats { acts: HashMap::new(), samples: 0 });
    }
    let mut acts: Vec<Option<ActivationStats>> = vec![None; values.len()];
    let mut samples = 0;
    run_probes(exec, model, &values, batches, |bi, arrays| {
        samples += ecospac_ir::exec::batch_rows(&batches[bi]);
        for ((slot, a), v) in acts.iter_mut().zip(arrays).zip(&values) {
            let s = slot.get_or_insert_with(|| ActivationStats::new(a.last_dim(), wanted[v]));
            s.add(a);
        }
    })?;
    let acts = values.into_iter().zip(acts).filter_map(|(v, s)| Some((v, s?))).collect();
    Ok(CalibrationStats { acts, samples })
}
