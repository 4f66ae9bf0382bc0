//! The EcoSpa schedule: coupled importance accumulated while training, a cubic
//! sparsity schedule, and physical shrinking of parameters and AdamW moments.
//!
//! The groups come from the compiler's coupling analysis on the graph the
//! model runs as ([`Net::ir`]); a shrink slices that graph, its weights
//! included, with the compiler's `slice` pass run by its pipeline (as a
//! compile runs it, verified after), and the program is rebuilt from it, so
//! the model trained is the model exported.

use crate::net::Net;
use crate::optim::AdamW;
use crate::TrainError;
use ecospac_ir::Model as IrModel;
use ecospac_passes::coupling::{analyze_with, AnalysisOptions, Coupling, Role};
use ecospac_passes::pipeline::{Compilation, Env, Facts, Pipeline, Recipe};
use ecospac_passes::prune::{
    plan_with_scores, prunable_parameters, scores, Allocation, Criterion, PlanOptions, SlicePlan,
};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use tch::{Kind, Tensor};

/// How coupled indices are scored during training.
#[derive(Copy, Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TrainCriterion {
    /// EcoSpa: first-order Taylor estimate of removing the whole coupled slice,
    /// `|Σ w·∂L/∂w|` over every matrix the index runs through, averaged (EMA).
    Coupled,
    /// The compiler's weight-only coupled criterion (product of slice norms) on the current weights.
    Magnitude,
    /// Baseline: the same Taylor term on one matrix of the group only (its first writer).
    Uncoupled,
}

impl TrainCriterion {
    /// Parses `coupled`, `magnitude` or `uncoupled`.
    pub fn parse(s: &str) -> Option<TrainCriterion> {
        Some(match s {
            "coupled" => TrainCriterion::Coupled,
            "magnitude" => TrainCriterion::Magnitude,
            "uncoupled" => TrainCriterion::Uncoupled,
            _ => return None,
        })
    }
}

/// Sparsity over training steps: dense until `start`, then a cubic ramp of the
/// kept fraction of prunable parameters down to `target` at `end`, one shrink every `every` steps.
///
/// ```
/// use ecospac_runtime_train::sparsity::Schedule;
/// let s = Schedule { target: 0.5, start: 10, end: 110, every: 25 };
/// assert_eq!(s.density(0), 1.0);
/// assert!((s.density(60) - 0.5625).abs() < 1e-12);
/// assert_eq!(s.density(500), 0.5);
/// assert!(s.shrinks_at(35) && !s.shrinks_at(36));
/// ```
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Schedule {
    /// Kept fraction of the prunable parameters at the end.
    pub target: f64,
    /// First shrink step.
    pub start: usize,
    /// Step at which the target is reached.
    pub end: usize,
    /// Steps between shrinks.
    pub every: usize,
}

impl Schedule {
    /// The kept fraction the schedule asks for after `step`.
    pub fn density(&self, step: usize) -> f64 {
        if step < self.start {
            return 1.0;
        }
        if step >= self.end || self.end <= self.start {
            return self.target;
        }
        let x = (step - self.start) as f64 / (self.end - self.start) as f64;
        self.target + (1.0 - self.target) * (1.0 - x).powi(3)
    }

    /// Whether the model shrinks after `step`.
    pub fn shrinks_at(&self, step: usize) -> bool {
        self.target < 1.0
            && step >= self.start
            && step <= self.end
            && ((step - self.start).is_multiple_of(self.every.max(1)) || step == self.end)
    }

    /// Whether importance is being accumulated at `step`.
    pub fn collects_at(&self, step: usize) -> bool {
        self.target < 1.0 && step + self.every.max(1) >= self.start && step <= self.end
    }
}

/// Importance state and the groups of the model's graph.
pub struct Sparsifier {
    coupling: Coupling,
    /// Plans applied so far, in order (replayed on resume).
    pub plans: Vec<SlicePlan>,
    /// EMA of the importance per group and index.
    pub ema: Vec<Vec<f64>>,
    /// Scoring.
    pub criterion: TrainCriterion,
    /// Spreading over groups.
    pub allocation: Allocation,
    /// Kept counts are multiples of this where a group is twice as large.
    pub align: usize,
    /// EMA decay per collected step.
    pub decay: f64,
    dense_prunable: u64,
}

/// Whole heads are groups while training too: the greedy allocation removes
/// them when their Taylor estimate is the cheapest per parameter (uniform and
/// global keep every head).
const TRAIN_ANALYSIS: AnalysisOptions = AnalysisOptions { heads: true };

/// The analysis of a graph as training uses it; the graph must verify (the
/// analysis takes the verifier's witness).
fn analysed(ir: &IrModel) -> Result<Coupling, TrainError> {
    let proof =
        ecospac_ir::verify(&ir.graph).map_err(|e| TrainError::Config(format!("the graph does not verify: {e}")))?;
    Ok(analyze_with(proof, &TRAIN_ANALYSIS))
}

/// Per (tensor name, axis), the positions a plan removes.
pub type Cuts = BTreeMap<(String, usize), BTreeSet<u32>>;

impl Sparsifier {
    /// Analyses the graph of `net` (which must verify).
    pub fn new(
        net: &Net,
        criterion: TrainCriterion,
        allocation: Allocation,
        align: usize,
    ) -> Result<Sparsifier, TrainError> {
        let coupling = analysed(&net.ir)?;
        let dense_prunable = prunable(&net.ir, &coupling);
        let ema = coupling.groups.iter().map(|g| vec![0.0; g.size]).collect();
        Ok(Sparsifier { coupling, plans: Vec::new(), ema, criterion, allocation, align, decay: 0.9, dense_prunable })
    }

    /// Counts the prunable parameters of the dense model as `dense` (for a
    /// sparsifier made on a model that was already shrunk, as on resume).
    pub fn set_dense_prunable(&mut self, dense: u64) {
        self.dense_prunable = dense;
    }

    /// The prunable parameters of the dense model.
    pub fn dense_prunable(&self) -> u64 {
        self.dense_prunable
    }

    /// Coupling groups.
    pub fn coupling(&self) -> &Coupling {
        &self.coupling
    }

    /// Kept fraction of the dense prunable parameters.
    pub fn density(&self, net: &Net) -> f64 {
        prunable(&net.ir, &self.coupling) as f64 / self.dense_prunable.max(1) as f64
    }

    /// Adds this step's importance (gradients must be present) to the EMA.
    pub fn collect(&mut self, model: &Net) {
        if self.criterion == TrainCriterion::Magnitude {
            return;
        }
        let g = &model.ir.graph;
        let mut taylor: HashMap<(String, usize), Vec<f64>> = HashMap::new();
        tch::no_grad(|| {
            for group in &self.coupling.groups {
                for m in &group.members {
                    let name = g.value(m.value).name.clone();
                    if taylor.contains_key(&(name.clone(), m.axis)) {
                        continue;
                    }
                    let Some(p) = model.params.get(&name) else { continue };
                    let grad = p.grad();
                    if !grad.defined() {
                        continue;
                    }
                    let prod = p * grad;
                    let dims: Vec<i64> = (0..prod.dim() as i64).filter(|&d| d != m.axis as i64).collect();
                    let per =
                        if dims.is_empty() { prod } else { prod.sum_dim_intlist(dims.as_slice(), false, Kind::Double) };
                    let per = per.to_kind(Kind::Double).to_device(tch::Device::Cpu);
                    let n = per.numel();
                    let mut v = vec![0f64; n];
                    per.copy_data(&mut v, n);
                    taylor.insert((name, m.axis), v);
                }
            }
        });
        for (gi, group) in self.coupling.groups.iter().enumerate() {
            let members: Vec<_> = match self.criterion {
                TrainCriterion::Uncoupled => group
                    .members
                    .iter()
                    .filter(|m| model.params.get(&g.value(m.value).name).is_some_and(|p| p.dim() >= 2))
                    .find(|m| m.role == Role::Writer)
                    .into_iter()
                    .collect(),
                _ => group.members.iter().collect(),
            };
            let mut joint = vec![0.0f64; group.size];
            for m in members {
                let Some(t) = taylor.get(&(g.value(m.value).name.clone(), m.axis)) else { continue };
                for (i, positions) in m.positions.iter().enumerate() {
                    joint[i] += positions.iter().map(|&p| t[p as usize]).sum::<f64>();
                }
            }
            for (e, j) in self.ema[gi].iter_mut().zip(joint) {
                *e = self.decay * *e + (1.0 - self.decay) * j.abs();
            }
        }
    }

    /// Chooses what to keep so that the kept fraction of the dense prunable
    /// parameters becomes `density`; `None` when nothing would change.
    pub fn plan(&mut self, model: &mut Net, density: f64) -> Result<Option<SlicePlan>, TrainError> {
        let current = self.density(model);
        if density >= current - 1e-9 {
            return Ok(None);
        }
        // With no importance collected yet (every gradient so far was zero), the weights decide.
        let collected = self.ema.iter().flatten().any(|&x| x > 0.0);
        let linear: Vec<Vec<f64>> = if self.criterion == TrainCriterion::Magnitude || !collected {
            model.sync()?;
            scores(&model.ir, &self.coupling, Criterion::Coupled, None, 0)?
        } else {
            self.ema.iter().map(|s| s.iter().map(|x| x + 1e-30).collect()).collect()
        };
        let opts = PlanOptions {
            budget: density / current,
            criterion: Criterion::Coupled,
            allocation: self.allocation,
            align: self.align,
            seed: 0,
        };
        let p = plan_with_scores(&model.ir, &self.coupling, &opts, linear)?;
        Ok(p.groups.iter().any(|g| g.kept.len() < g.size).then_some(p))
    }

    /// The positions `plan` removes, per tensor name and axis.
    pub fn cuts(&self, model: &Net, plan: &SlicePlan) -> Result<Cuts, TrainError> {
        let mut cuts = Cuts::new();
        let ir = &model.ir;
        let removed = plan.bind(ir, &self.coupling).map_err(ecospac_passes::prune::SliceError::from)?;
        for (g, removed) in self.coupling.groups.iter().zip(removed) {
            for m in &g.members {
                let set = cuts.entry((ir.graph.value(m.value).name.clone(), m.axis)).or_default();
                for &i in &removed {
                    set.extend(m.positions[i as usize].iter().copied());
                }
            }
        }
        cuts.retain(|_, s| !s.is_empty());
        Ok(cuts)
    }

    /// Applies `plan`: the compiler's slicer slices the graph with its
    /// weights, and the optimizer moments the same way (each put in place of
    /// its parameter in a copy of the graph that is sliced alike, so a weight
    /// whose uses are sliced differently gets one moment per use); then the
    /// program is rebuilt and the sliced graph analysed for the next round.
    pub fn shrink(&mut self, model: &mut Net, opt: Option<&mut AdamW>, plan: SlicePlan) -> Result<(), TrainError> {
        plan.bind(&model.ir, &self.coupling).map_err(ecospac_passes::prune::SliceError::from)?;
        model.sync()?;
        let moments = match &opt {
            Some(opt) => Some((self.slice_like(model, &plan, &opt.m)?, self.slice_like(model, &plan, &opt.v)?)),
            None => None,
        };
        let before: BTreeSet<String> = model.params.keys().cloned().collect();
        model.ir = self.slice(std::mem::take(&mut model.ir), &plan)?;
        // A weight whose uses were sliced differently is now one copy per use, each trainable.
        model.adopt_copies(&before);
        model.rebuild()?;
        if let (Some(opt), Some((m, v))) = (opt, moments) {
            opt.m = m;
            opt.v = v;
            for (name, p) in &model.params {
                let fits = |t: Option<&Tensor>| t.is_some_and(|t| t.size() == p.size());
                if !fits(opt.m.get(name)) || !fits(opt.v.get(name)) {
                    return Err(TrainError::Config(format!("the optimizer moments of `{name}` no longer fit it")));
                }
            }
            opt.m.retain(|k, _| model.params.contains_key(k));
            opt.v.retain(|k, _| model.params.contains_key(k));
        }
        self.coupling = analysed(&model.ir)?;
        self.ema = self.coupling.groups.iter().map(|g| vec![0.0; g.size]).collect();
        self.plans.push(plan);
        Ok(())
    }

    /// `model` sliced by `plan` with the compiler's `slice` pass, run by the
    /// pipeline as a compile runs it (the graph verified after it). The
    /// analysis stays this sparsifier's: it describes the graph before slicing.
    fn slice(&mut self, model: IrModel, plan: &SlicePlan) -> Result<IrModel, TrainError> {
        let facts = Facts::PREPARED.with(Facts::COUPLING).with(Facts::PLAN);
        let env = Env::default();
        let mut pipeline = Pipeline::starting_from(&Recipe::of(&["slice"]), &env, facts)?.verify_each(true);
        let mut cx = Compilation::new(model);
        cx.facts = facts;
        cx.plan = Some(plan.clone());
        // The analysis lends itself to the compilation (an empty one stands in meanwhile).
        cx.coupling = Some(std::mem::take(&mut self.coupling));
        let result = pipeline.run(&mut cx, &env);
        if let Some(c) = cx.coupling.take() {
            self.coupling = c;
        }
        result?;
        Ok(cx.model)
    }

    /// `tensors` (one per parameter, by name) sliced by `plan` as the
    /// parameters are: a copy of the graph holding them in the parameters'
    /// places goes through the slicer.
    fn slice_like(
        &mut self,
        model: &Net,
        plan: &SlicePlan,
        tensors: &BTreeMap<String, Tensor>,
    ) -> Result<BTreeMap<String, Tensor>, TrainError> {
        let mut copy = model.ir.clone();
        let g = &mut copy.graph;
        for v in g.initializers.clone() {
            let value = g.value_mut(v);
            if let Some(t) = tensors.get(&value.name) {
                value.constant = Some(crate::exec::to_ir(t)?);
            }
        }
        let copy = self.slice(copy, plan)?;
        let g = &copy.graph;
        let mut out = BTreeMap::new();
        for &v in &g.initializers {
            let value = g.value(v);
            let Some(t) = &value.constant else { continue };
            if tensors.contains_key(&value.name) || tensors.contains_key(sliced_from(g, v)) {
                out.insert(value.name.clone(), model.to_device(t)?);
            }
        }
        Ok(out)
    }
}

/// The name of the weight that the slicer made `v` from as a per-use copy,
/// or of `v` itself.
pub fn sliced_from(g: &ecospac_ir::Graph, v: ecospac_ir::ValueId) -> &str {
    &g.value(g.original(v)).name
}

/// Parameters of the prunable groups as they stand, each counted once where
/// groups nest (a head's dims are inside the head).
fn prunable(ir: &IrModel, coupling: &Coupling) -> u64 {
    prunable_parameters(ir, coupling, &vec![Vec::new(); coupling.groups.len()]).0
}
