//! The registered passes: each declared once (name, parameters, facts), in
//! the order a default compile runs them.

use super::recipe::{RecipeError, Step};
use super::{Changed, Compilation, Env, Facts, Pass, PassError, PassInfo};
use crate::coupling::{analyze_with, AnalysisOptions, Coupling};
use crate::prune::{self, Allocation, Criterion, SlicePlan};
use ecospac_ir::{EntityId, Model, Op, ValueId};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

/// A pass built from its parameters.
trait Configured: Pass + Sized + 'static {
    type Params: Serialize + DeserializeOwned + Default;
    const NAME: &'static str;
    const DOC: &'static str;
    fn new(params: Self::Params) -> Self;
}

macro_rules! declare_passes {
    ($($ty:ident),* $(,)?) => {
        /// Every registered pass, in the order a default compile runs them.
        pub const PASS_NAMES: &[&str] = &[$(<$ty as Configured>::NAME),*];

        /// One line on what each registered pass does.
        pub fn pass_doc(name: &str) -> Option<&'static str> {
            match name {
                $(n if n == <$ty as Configured>::NAME => Some(<$ty as Configured>::DOC),)*
                _ => None,
            }
        }

        fn construct(step: usize, s: &Step) -> Result<(Box<dyn Pass>, serde_json::Value), RecipeError> {
            let params = serde_json::Value::Object(s.params.clone());
            let bad = |e: serde_json::Error| RecipeError::BadParam { step, pass: s.pass.clone(), message: e.to_string() };
            match s.pass.as_str() {
                $(n if n == <$ty as Configured>::NAME => {
                    let p: <$ty as Configured>::Params = serde_json::from_value(params).map_err(bad)?;
                    let full = serde_json::to_value(&p).map_err(bad)?;
                    Ok((Box::new(<$ty as Configured>::new(p)), full))
                })*
                other => Err(RecipeError::UnknownPass { step, name: other.to_string(), known: PASS_NAMES.join(", ") }),
            }
        }
    };
}

declare_passes!(
    InferShapes,
    FoldShapeConstants,
    HoistConstants,
    EliminateDeadNodes,
    Prepare,
    AnalyseCoupling,
    Calibrate,
    Score,
    Allocate,
    LoadPlan,
    Refit,
    Slice,
);

/// Builds the pass of one recipe step (1-based `step` for messages).
pub(super) fn build(step: usize, s: &Step) -> Result<Box<dyn Pass>, PassError> {
    Ok(construct(step, s)?.0)
}

/// The step with every parameter written out.
pub(super) fn normalize(step: usize, s: &Step) -> Result<Step, RecipeError> {
    let (_, full) = construct(step, s)?;
    let params = match full {
        serde_json::Value::Object(m) => m,
        _ => Default::default(),
    };
    Ok(Step { pass: s.pass.clone(), params })
}

/// Parameters of passes that take none.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoParams {}

fn info(name: &'static str, doc: &'static str) -> PassInfo {
    PassInfo::new(name, doc)
}

/// A pass that rewrites the graph with a function of the model.
macro_rules! model_pass {
    ($ty:ident, $name:literal, $doc:literal, $invalidates:expr, |$m:ident| $body:expr) => {
        #[doc = $doc]
        pub struct $ty;
        impl Configured for $ty {
            type Params = NoParams;
            const NAME: &'static str = $name;
            const DOC: &'static str = $doc;
            fn new(_: NoParams) -> Self {
                $ty
            }
        }
        impl Pass for $ty {
            fn info(&self) -> PassInfo {
                PassInfo { invalidates: $invalidates, writes_model: true, ..info($name, $doc) }
            }
            fn run(&self, cx: &mut Compilation, _: &Env<'_>) -> Result<Changed, PassError> {
                let $m = &mut cx.model;
                $body
            }
        }
    };
}

model_pass!(InferShapes, "infer-shapes", "computes every value's type; fails on contradictions", Facts::NONE, |m| {
    crate::infer_shapes::infer_shapes(m).map_err(|e| PassError::failed("infer-shapes", e))
});
model_pass!(
    FoldShapeConstants,
    "fold-shape-constants",
    "replaces integer shape computations with known results by constants",
    Facts::DERIVED,
    |m| Ok(crate::fold::fold_shape_constants(m))
);
model_pass!(HoistConstants, "hoist-constants", "turns float Constant nodes into initializers", Facts::DERIVED, |m| {
    Ok(crate::fold::hoist_constants(m))
});
model_pass!(
    EliminateDeadNodes,
    "eliminate-dead-nodes",
    "removes nodes whose outputs are never read",
    Facts::DERIVED,
    |m| Ok(crate::fold::eliminate_dead(m))
);

/// Brings the model to the form the analysis and the slicer expect.
pub struct Prepare;

impl Configured for Prepare {
    type Params = NoParams;
    const NAME: &'static str = "prepare";
    const DOC: &'static str =
        "infer-shapes, fold-shape-constants, hoist-constants, eliminate-dead-nodes, infer-shapes: the form the analysis needs";
    fn new(_: NoParams) -> Self {
        Prepare
    }
}

impl Pass for Prepare {
    fn info(&self) -> PassInfo {
        PassInfo {
            ensures: Facts::PREPARED,
            invalidates: Facts::DERIVED,
            writes_model: true,
            ..info(Self::NAME, Self::DOC)
        }
    }
    fn run(&self, cx: &mut Compilation, _: &Env<'_>) -> Result<Changed, PassError> {
        let m = &mut cx.model;
        let fail = |e| PassError::failed(Self::NAME, e);
        let mut changed = crate::infer_shapes::infer_shapes(m).map_err(fail)?;
        for step in [crate::fold::fold_shape_constants, crate::fold::hoist_constants, crate::fold::eliminate_dead] {
            if step(m) == Changed::Yes {
                changed = Changed::Yes;
            }
        }
        if crate::infer_shapes::infer_shapes(m).map_err(fail)? == Changed::Yes {
            changed = Changed::Yes;
        }
        Ok(changed)
    }
}

/// Which groups a plan may cut.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scope {
    /// Every group.
    #[default]
    All,
    /// Only groups whose width is one `config.json` key (a checkpoint stock loaders still read).
    Config,
}

/// Parameters of `analyse-coupling`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AnalyseParams {
    /// Analysis settings.
    #[serde(flatten)]
    pub options: AnalysisOptions,
    /// Which groups a plan may cut.
    pub scope: Scope,
}

/// The coupling analysis.
pub struct AnalyseCoupling(AnalyseParams);

impl Configured for AnalyseCoupling {
    type Params = AnalyseParams;
    const NAME: &'static str = "analyse-coupling";
    const DOC: &'static str = "finds the coupling groups (what can be removed together) and the pinned axes";
    fn new(p: AnalyseParams) -> Self {
        AnalyseCoupling(p)
    }
}

impl Pass for AnalyseCoupling {
    fn info(&self) -> PassInfo {
        PassInfo { requires: Facts::PREPARED, ensures: Facts::COUPLING, ..info(Self::NAME, Self::DOC) }
    }
    fn run(&self, cx: &mut Compilation, env: &Env<'_>) -> Result<Changed, PassError> {
        // The analysis takes the verifier's witness: the graph it indexes is whole.
        let proof =
            ecospac_ir::verify(&cx.model.graph).map_err(|errors| PassError::Verify { pass: Self::NAME, errors })?;
        let coupling = analyze_with(proof, &self.0.options);
        let (opaque_ops, opaque_pinned) = opaque_pins(&cx.model, &coupling);
        let unmodelled = if opaque_ops.is_empty() {
            String::new()
        } else {
            let ops: Vec<String> = opaque_ops.iter().map(|(op, n)| format!("{op} ×{n}")).collect();
            format!(
                "; {opaque_pinned} weight parameters reach ops ecospac does not model or slice ({})",
                ops.join(", ")
            )
        };
        if coupling.groups.is_empty() {
            return Err(PassError::failed(
                Self::NAME,
                format!(
                    "nothing in this model can be pruned: every weight axis is pinned{unmodelled} \
                     (see `ecospac inspect --groups`)"
                ),
            ));
        }
        cx.in_scope = match self.0.scope {
            Scope::All => vec![true; coupling.groups.len()],
            Scope::Config => {
                let sizes = env.config_sizes.ok_or_else(|| {
                    PassError::failed(Self::NAME, "scope `config` needs a checkpoint folder (config.json) as input")
                })?;
                (0..coupling.groups.len()).map(|gi| coupling.config_key(&cx.model, sizes, gi).is_some()).collect()
            }
        };
        if !cx.in_scope.contains(&true) {
            return Err(PassError::failed(
                Self::NAME,
                "no group's width is a config.json key, so scope `config` leaves nothing to prune; try scope `all`",
            ));
        }
        let (prunable, _) = prune::prunable_parameters(&cx.model, &coupling, &vec![Vec::new(); coupling.groups.len()]);
        cx.report.insert(
            "analysis".into(),
            serde_json::json!({
                "groups": coupling.groups.len(),
                "head_groups": coupling.groups.iter().filter(|g| g.outer).count(),
                "in_scope": cx.in_scope.iter().filter(|&&s| s).count(),
                "pinned_weight_axes": coupling.pinned.len(),
                "prunable_parameters": prunable,
                "unmodelled_ops": opaque_ops,
                "unmodelled_pinned_parameters": opaque_pinned,
            }),
        );
        cx.coupling = Some(coupling);
        Ok(Changed::No)
    }
}

/// The ops that pin weights only because ecospac does not see inside them (ops
/// outside the closed set, fused ONNX Runtime ops not sliced) as
/// `domain.op_type` and count, and the parameters of the weights they leave
/// with no prunable axis (each tensor once). Ops outside the closed set count
/// whenever such weights exist; a fused `EmbedLayerNormalization` when it
/// reads one, a fused `Attention` when it pins its packed weight's heads, a
/// `MultiHeadAttention` or `GroupQueryAttention` when a projection that feeds
/// it reads one.
fn opaque_pins(model: &Model, coupling: &Coupling) -> (BTreeMap<String, usize>, u128) {
    use ecospac_ir::axes::PinReason;
    let opaque =
        |p: &crate::coupling::PinnedAxis| p.reasons.iter().any(|r| matches!(r, PinReason::Opaque | PinReason::Fused));
    let in_groups: BTreeSet<ValueId> = coupling.groups.iter().flat_map(|g| g.members.iter().map(|m| m.value)).collect();
    let tensors: BTreeSet<ValueId> =
        coupling.pinned.iter().filter(|p| opaque(p) && !in_groups.contains(&p.value)).map(|p| p.value).collect();
    let heads_pinned: BTreeSet<ValueId> =
        coupling.pinned.iter().filter(|p| p.axis == 1 && opaque(p)).map(|p| p.value).collect();
    let producers = model.graph.producers();
    let mut ops = BTreeMap::new();
    for (_, n) in model.graph.nodes() {
        let counts = match &n.op {
            Op::Opaque(_) => !tensors.is_empty(),
            // Fed by projections: counted when a projection's weight is pinned.
            Op::GroupQueryAttention(_) | Op::MultiHeadAttention(_) => n.inputs.iter().take(3).flatten().any(|&v| {
                producers[v.index()]
                    .is_some_and(|p| model.graph.node(p).inputs.iter().flatten().any(|w| tensors.contains(w)))
            }),
            Op::EmbedLayerNorm(_) => n.inputs.iter().flatten().any(|v| tensors.contains(v)),
            Op::FusedAttention(_) => n.inputs.get(1).copied().flatten().is_some_and(|w| heads_pinned.contains(&w)),
            _ => false,
        };
        if counts {
            let (d, t) = (n.op.domain(), n.op.op_type());
            let name = if d.is_empty() { t.to_string() } else { format!("{d}.{t}") };
            *ops.entry(name).or_insert(0) += 1;
        }
    }
    if ops.is_empty() {
        return (ops, 0);
    }
    let params = tensors.iter().filter_map(|&v| model.graph.value(v).constant.as_ref()).map(|t| t.numel()).sum();
    (ops, params)
}

/// Parameters of `calibrate`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CalibrateParams {
    /// Samples to run (0: every sample of the calibration data). Scores and
    /// the measured allocation need fewer samples than the refit.
    pub samples: usize,
}

impl Default for CalibrateParams {
    fn default() -> Self {
        CalibrateParams { samples: 128 }
    }
}

/// Runs the model on calibration data and collects the statistics scores need.
pub struct Calibrate(CalibrateParams);

impl Configured for Calibrate {
    type Params = CalibrateParams;
    const NAME: &'static str = "calibrate";
    const DOC: &'static str = "runs the model on calibration data; collects the activation statistics the scores need";
    fn new(p: CalibrateParams) -> Self {
        Calibrate(p)
    }
}

fn engine<'e>(
    env: &'e Env<'_>,
    pass: &'static str,
) -> Result<(&'e dyn ecospac_ir::exec::Executor, &'e super::CalibrationData), PassError> {
    match (env.executor, env.data) {
        (Some(e), Some(d)) => Ok((e, d)),
        _ => Err(PassError::failed(pass, "needs an engine and calibration data")),
    }
}

impl Pass for Calibrate {
    fn info(&self) -> PassInfo {
        PassInfo { requires: Facts::COUPLING, ensures: Facts::STATS, runs_model: true, ..info(Self::NAME, Self::DOC) }
    }
    fn run(&self, cx: &mut Compilation, env: &Env<'_>) -> Result<Changed, PassError> {
        let (exec, data) = engine(env, Self::NAME)?;
        let batches = data.first(self.0.samples);
        env.progress("calibrating", 0, 1);
        let stats =
            prune::collect(&cx.model, cx.coupling()?, exec, batches).map_err(|e| PassError::failed(Self::NAME, e))?;
        cx.report.insert(
            "calibration".into(),
            serde_json::json!({"source": data.source, "samples": stats.samples, "activations": stats.acts.len()}),
        );
        cx.stats = Some(stats);
        Ok(Changed::No)
    }
}

/// Parameters of `score`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScoreParams {
    /// The criterion.
    pub criterion: Criterion,
    /// Seed of the random criterion.
    pub seed: u64,
    /// The refit's ridge that `obs` anticipates, in units of the mean diagonal.
    pub lambda: f64,
}

impl Default for ScoreParams {
    fn default() -> Self {
        ScoreParams { criterion: Criterion::Obs, seed: 0, lambda: 1.0 }
    }
}

/// Scores every index of every group.
pub struct Score(ScoreParams);

impl Configured for Score {
    type Params = ScoreParams;
    const NAME: &'static str = "score";
    const DOC: &'static str = "scores every index of every group (variance, energy, coupled-act, coupled, random, ...)";
    fn new(p: ScoreParams) -> Self {
        Score(p)
    }
}

impl Pass for Score {
    fn info(&self) -> PassInfo {
        let requires = if self.0.criterion.needs_data() { Facts::COUPLING.with(Facts::STATS) } else { Facts::COUPLING };
        PassInfo { requires, ensures: Facts::SCORES, ..info(Self::NAME, Self::DOC) }
    }
    fn run(&self, cx: &mut Compilation, _: &Env<'_>) -> Result<Changed, PassError> {
        let p = &self.0;
        let s = prune::scores_with(&cx.model, cx.coupling()?, p.criterion, cx.stats.as_ref(), p.seed, p.lambda)
            .map_err(|e| PassError::failed(Self::NAME, e))?;
        cx.report.insert("scores".into(), serde_json::json!({"criterion": self.0.criterion.name()}));
        cx.scores = Some(s);
        Ok(Changed::No)
    }
}

/// Parameters of `allocate`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AllocateParams {
    /// Fraction of the prunable parameters to keep, in (0, 1].
    pub budget: f64,
    /// How the budget is spread over groups.
    pub allocation: Allocation,
    /// Kept counts are multiples of this where a block is at least twice as large.
    pub align: usize,
    /// Samples the measured allocation runs per group (0: all).
    pub measure_samples: usize,
    /// The measured allocation refits each cut group's consumers with this
    /// ridge, as the `refit` pass will (0: bias compensation only).
    pub measure_refit_lambda: f64,
}

impl Default for AllocateParams {
    fn default() -> Self {
        AllocateParams {
            budget: 0.5,
            allocation: Allocation::Measured,
            align: 8,
            measure_samples: 32,
            measure_refit_lambda: 1.0,
        }
    }
}

/// Chooses how many indices each group keeps, and which.
pub struct Allocate(AllocateParams);

impl Configured for Allocate {
    type Params = AllocateParams;
    const NAME: &'static str = "allocate";
    const DOC: &'static str =
        "spreads the budget over groups (measured exchange rates, global or uniform); makes the plan";
    fn new(p: AllocateParams) -> Self {
        Allocate(p)
    }
}

impl Pass for Allocate {
    fn info(&self) -> PassInfo {
        PassInfo {
            requires: Facts::SCORES,
            ensures: Facts::PLAN,
            runs_model: self.0.allocation == Allocation::Measured,
            ..info(Self::NAME, Self::DOC)
        }
    }
    fn run(&self, cx: &mut Compilation, env: &Env<'_>) -> Result<Changed, PassError> {
        let p = &self.0;
        if !(p.budget > 0.0 && p.budget <= 1.0) {
            return Err(PassError::failed(Self::NAME, format!("the budget must be in (0, 1], got {}", p.budget)));
        }
        let coupling = cx.coupling()?;
        let scores = cx.scores.as_ref().ok_or(PassError::Missing { what: "scores", pass: "score" })?;
        let scope = &cx.in_scope;
        // Groups out of scope are not measured (their infinite scores say so) and keep everything.
        let scoped: Vec<Vec<f64>> = scores
            .iter()
            .zip(scope)
            .map(|(s, &ins)| if ins { s.clone() } else { vec![f64::INFINITY; s.len()] })
            .collect();
        let per_block = match p.allocation {
            Allocation::Uniform => prune::uniform(coupling, p.budget, p.align),
            Allocation::Global => prune::global(&cx.model, coupling, scores, scope, p.budget, p.align),
            Allocation::Greedy => prune::greedy(&cx.model, coupling, scores, scope, p.budget, p.align),
            Allocation::Measured => {
                let (exec, data) = engine(env, Self::NAME)?;
                let rates = prune::exchange_rates(
                    &cx.model,
                    coupling,
                    &scoped,
                    cx.stats.as_ref(),
                    p.budget,
                    p.align,
                    (p.measure_refit_lambda > 0.0).then_some(p.measure_refit_lambda),
                    exec,
                    data.first(p.measure_samples),
                    |i, n| env.progress("measuring exchange rates", i, n),
                )
                .map_err(|e| PassError::failed(Self::NAME, e))?;
                prune::measured(&cx.model, coupling, scores, &rates, scope, p.budget, p.align)
            }
        };
        let per_block: Vec<usize> = per_block
            .into_iter()
            .zip(&coupling.groups)
            .zip(scope)
            .map(|((n, g), &ins)| if ins { n } else { g.block })
            .collect();
        let plan = prune::keep_strongest(&cx.model, coupling, scores, &per_block);
        if p.allocation != Allocation::Uniform {
            let removed = plan.bind(&cx.model, coupling).map_err(|e| PassError::failed(Self::NAME, e))?;
            let (before, after) = prune::prunable_parameters_in(&cx.model, coupling, &removed, Some(scope));
            let largest_step = coupling
                .groups
                .iter()
                .map(|g| g.cost_per_index(&cx.model) * (prune::step(g.block, p.align) * g.blocks()) as u64)
                .max()
                .unwrap_or(0);
            if after as f64 > p.budget * before as f64 + largest_step as f64 {
                return Err(PassError::failed(
                    Self::NAME,
                    format!(
                        "the budget {} cannot be met: {after} of the {before} parameters of the weights the groups \
                         in scope cut must stay (every group keeps at least one step per block, and parts of these \
                         weights no group can cut; see `ecospac inspect --groups` for what is pinned and why)",
                        p.budget
                    ),
                ));
            }
        }
        report_plan(cx, &plan)?;
        cx.plan = Some(plan);
        Ok(Changed::No)
    }
}

fn report_plan(cx: &mut Compilation, plan: &SlicePlan) -> Result<(), PassError> {
    let coupling = cx.coupling()?;
    let removed = plan.bind(&cx.model, coupling).map_err(|e| PassError::failed("allocate", e))?;
    let (before, after) = prune::prunable_parameters(&cx.model, coupling, &removed);
    let (scope_before, scope_after) = prune::prunable_parameters_in(&cx.model, coupling, &removed, Some(&cx.in_scope));
    let groups: Vec<serde_json::Value> = coupling
        .groups
        .iter()
        .zip(&removed)
        .map(|(g, r)| {
            serde_json::json!({
                "first_weight": g.members.first().map(|m| cx.model.graph.value(m.value).name.clone()),
                "kind": if g.outer { "heads" } else if g.blocks() > 1 { "dims per head" } else { "channels" },
                "size": g.size, "blocks": g.blocks(), "kept": g.size - r.len(),
            })
        })
        .collect();
    cx.report.insert(
        "plan".into(),
        serde_json::json!({
            "prunable_parameters": {"before": before, "after": after},
            "in_scope_parameters": {"before": scope_before, "after": scope_after},
            "groups": groups,
        }),
    );
    Ok(())
}

/// Parameters of `load-plan`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoadPlanParams {
    /// The plan file (JSON, as `--emit-plan` writes it).
    pub path: PathBuf,
}

/// Reads a plan instead of choosing one.
pub struct LoadPlan(LoadPlanParams);

impl Configured for LoadPlan {
    type Params = LoadPlanParams;
    const NAME: &'static str = "load-plan";
    const DOC: &'static str = "reads a slice plan (checked against this model's analysis) instead of choosing one";
    fn new(p: LoadPlanParams) -> Self {
        LoadPlan(p)
    }
}

impl Pass for LoadPlan {
    fn info(&self) -> PassInfo {
        PassInfo { requires: Facts::COUPLING, ensures: Facts::PLAN, ..info(Self::NAME, Self::DOC) }
    }
    fn run(&self, cx: &mut Compilation, _: &Env<'_>) -> Result<Changed, PassError> {
        let plan = SlicePlan::load(&self.0.path).map_err(|e| PassError::failed(Self::NAME, e))?;
        plan.bind(&cx.model, cx.coupling()?).map_err(|e| PassError::failed(Self::NAME, e))?;
        report_plan(cx, &plan)?;
        cx.plan = Some(plan);
        Ok(Changed::No)
    }
}

/// How consumers are reconstructed.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RefitMethod {
    /// Ridge regression toward the original weights, layer by layer on the compact model's own inputs.
    #[default]
    Ridge,
    /// Bias compensation: the mean of the removed contributions moves into the bias.
    Bias,
}

/// Parameters of `refit`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RefitParams {
    /// The method.
    pub method: RefitMethod,
    /// Ridge strength, in units of the mean diagonal of `XᵀX`.
    pub lambda: f64,
    /// Samples to fit on (0: all).
    pub samples: usize,
    /// Fit a consumer that feeds a residual connection to what the original
    /// sum needs, correcting the error the residual stream carries from earlier layers.
    pub residual: bool,
}

impl Default for RefitParams {
    fn default() -> Self {
        RefitParams { method: RefitMethod::Ridge, lambda: 0.1, samples: 0, residual: true }
    }
}

/// Gives the consumers of the cut groups new weights (recorded in the plan).
pub struct Refit(RefitParams);

impl Configured for Refit {
    type Params = RefitParams;
    const NAME: &'static str = "refit";
    const DOC: &'static str =
        "solves the consumers of the cut groups (output and down projections, biases) anew; the plan records them";
    fn new(p: RefitParams) -> Self {
        Refit(p)
    }
}

impl Pass for Refit {
    fn info(&self) -> PassInfo {
        let (requires, runs_model) = match self.0.method {
            RefitMethod::Ridge => (Facts::PLAN, true),
            RefitMethod::Bias => (Facts::PLAN.with(Facts::STATS), false),
        };
        PassInfo { requires, runs_model, ..info(Self::NAME, Self::DOC) }
    }
    fn run(&self, cx: &mut Compilation, env: &Env<'_>) -> Result<Changed, PassError> {
        let coupling = cx.coupling()?;
        let plan = cx.plan.as_ref().ok_or(PassError::Missing { what: "slice plan", pass: "allocate" })?;
        let removed = plan.bind(&cx.model, coupling).map_err(|e| PassError::failed(Self::NAME, e))?;
        let refits = match self.0.method {
            RefitMethod::Bias => {
                let stats = cx
                    .stats
                    .as_ref()
                    .ok_or(PassError::Missing { what: "calibration statistics", pass: "calibrate" })?;
                prune::compensation(&cx.model, coupling, stats, &removed)
            }
            RefitMethod::Ridge => {
                let (exec, data) = engine(env, Self::NAME)?;
                prune::refit(
                    &cx.model,
                    coupling,
                    &removed,
                    exec,
                    data.first(self.0.samples),
                    self.0.lambda,
                    self.0.residual,
                    |i, n, _| env.progress("refitting", i, n),
                )
                .map_err(|e| PassError::failed(Self::NAME, e))?
            }
        };
        cx.report.insert(
            "refit".into(),
            serde_json::json!({"method": self.0.method, "weights": refits.len(), "lambda": self.0.lambda}),
        );
        if let Some(plan) = cx.plan.as_mut() {
            plan.refits = refits;
        }
        Ok(Changed::No)
    }
}

/// Applies the plan.
pub struct Slice;

impl Configured for Slice {
    type Params = NoParams;
    const NAME: &'static str = "slice";
    const DOC: &'static str = "applies the plan: slices weights and the shape constants that encode their sizes";
    fn new(_: NoParams) -> Self {
        Slice
    }
}

impl Pass for Slice {
    fn info(&self) -> PassInfo {
        PassInfo {
            requires: Facts::PLAN,
            ensures: Facts::SLICED,
            invalidates: Facts::DERIVED,
            writes_model: true,
            ..info(Self::NAME, Self::DOC)
        }
    }
    fn run(&self, cx: &mut Compilation, _: &Env<'_>) -> Result<Changed, PassError> {
        let plan = cx.plan.as_ref().ok_or(PassError::Missing { what: "slice plan", pass: "allocate" })?;
        let coupling =
            cx.coupling.as_mut().ok_or(PassError::Missing { what: "coupling analysis", pass: "analyse-coupling" })?;
        prune::apply_plan(&mut cx.model, coupling, plan).map_err(|e| PassError::failed(Self::NAME, e))?;
        crate::infer_shapes::infer_shapes(&mut cx.model).map_err(|e| PassError::failed(Self::NAME, e))?;
        crate::fold::eliminate_dead(&mut cx.model);
        Ok(Changed::Yes)
    }
}
