//! Recovery by distillation: a compact model (the student) learns to match
//! its original (the teacher, run without gradients on the same batch) on
//! the graph outputs they share, both executed from their IR graphs on
//! libtorch ([`crate::exec`]), so any model ecospac compiled can be repaired,
//! from ONNX or from a checkpoint, with no labels.
//!
//! Hidden states are matched by row cosine (over the last axis), logits by
//! the KL divergence of their softmaxes at a temperature; AdamW updates the
//! student's float weights (embedding tables stay as they are unless asked),
//! and [`Distiller::into_model`] gives the student's graph with them.
//!
//! With a [`Schedule`], the student also shrinks while it learns (EcoSpa with
//! distillation): it starts as large as it is (the teacher itself, say),
//! coupled Taylor importance is collected from the distillation loss's
//! gradients, and the compiler's slicer removes the weakest slices on the
//! schedule, moments included, down to the target.

use crate::exec::{to_tch, Program};
use crate::net::{self, Net};
use crate::optim::{clip_grad_norm, lr_at, AdamW, AdamWConfig};
use crate::sparsity::{Schedule, Sparsifier, TrainCriterion};
use crate::TrainError;
use ecospac_ir::exec::Batch;
use ecospac_ir::{EntityId, Graph, Model, Op, ValueId};
use ecospac_passes::prune::Allocation;
use tch::{Device, Kind, Tensor};

/// How one output of the student is compared with the teacher's.
#[derive(Copy, Clone, Debug, PartialEq)]
pub enum DistilLoss {
    /// `1 − cos` of each row (the last axis), averaged over rows.
    Cosine,
    /// Mean squared difference, over the teacher's mean square.
    Mse,
    /// `T² · KL(softmax(teacher / T) ‖ softmax(student / T))` per row, averaged.
    Kl {
        /// The temperature `T`.
        temperature: f64,
    },
}

impl DistilLoss {
    /// The loss for an output named `name` when none is chosen: KL at
    /// temperature 2 for logits, cosine otherwise.
    pub fn default_for(name: &str) -> DistilLoss {
        if name.contains("logits") {
            DistilLoss::Kl { temperature: 2.0 }
        } else {
            DistilLoss::Cosine
        }
    }

    /// The loss of `student` against `teacher` (same shape).
    pub fn of(self, student: &Tensor, teacher: &Tensor) -> Result<Tensor, TrainError> {
        let f = |e: tch::TchError| TrainError::Config(format!("distillation loss: {e}"));
        let s = student.f_to_dtype(Kind::Float, false, false).map_err(f)?;
        let t = teacher.f_to_dtype(Kind::Float, false, false).map_err(f)?;
        let loss = match self {
            DistilLoss::Cosine => Tensor::f_cosine_similarity(&s, &t, -1, 1e-8)
                .and_then(|c| c.f_mean(Kind::Float))
                .and_then(|m| m.f_neg())
                .and_then(|m| m.f_add_scalar(1.0)),
            DistilLoss::Mse => (|| {
                let d = s.f_sub(&t)?;
                let scale = t.f_mul(&t)?.f_mean(Kind::Float)?.f_clamp_min(1e-12)?;
                d.f_mul(&d)?.f_mean(Kind::Float)?.f_div(&scale)
            })(),
            DistilLoss::Kl { temperature } => (|| {
                let ls = s.f_div_scalar(temperature)?.f_log_softmax(-1, Kind::Float)?;
                let lt = t.f_div_scalar(temperature)?.f_log_softmax(-1, Kind::Float)?;
                let per_row =
                    lt.f_exp()?.f_mul(&lt.f_sub(&ls)?)?.f_sum_dim_intlist([-1i64].as_slice(), false, Kind::Float)?;
                per_row.f_mean(Kind::Float)?.f_mul_scalar(temperature * temperature)
            })(),
        };
        loss.map_err(f)
    }
}

/// Settings of a distillation run.
#[derive(Clone, Debug)]
pub struct DistilConfig {
    /// Optimizer steps.
    pub steps: usize,
    /// AdamW (its `lr` is the peak learning rate).
    pub adamw: AdamWConfig,
    /// Linear warmup steps, then cosine decay to a tenth.
    pub warmup: usize,
    /// Gradient clipping norm (0: off).
    pub clip: f64,
    /// The loss for every output (`None`: [`DistilLoss::default_for`] each).
    pub loss: Option<DistilLoss>,
    /// Also train the embedding tables (the float initializers `Gather` reads).
    pub train_embeddings: bool,
    /// Also match the layers: every normalisation output (the residual
    /// stream after each block) that both graphs have under one name and
    /// shape, by row cosine, weighted so that all of them together count as
    /// much as one output.
    pub match_layers: bool,
    /// Where both models run.
    pub device: Device,
    /// Shrink the student while it learns, on this schedule.
    pub schedule: Option<Schedule>,
    /// Importance for shrinking (until any is collected, the weights decide:
    /// while the student still equals the teacher there is no gradient).
    pub criterion: TrainCriterion,
    /// Spreading the removals over groups.
    pub allocation: Allocation,
    /// Kept counts are multiples of this where a group is twice as large.
    pub align: usize,
}

impl Default for DistilConfig {
    fn default() -> Self {
        DistilConfig {
            steps: 200,
            adamw: AdamWConfig { lr: 1e-4, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.0 },
            warmup: 10,
            clip: 1.0,
            loss: None,
            train_embeddings: false,
            match_layers: false,
            device: Device::Cpu,
            schedule: None,
            criterion: TrainCriterion::Coupled,
            allocation: Allocation::Uniform,
            align: 8,
        }
    }
}

/// A student learning from a teacher.
pub struct Distiller {
    cfg: DistilConfig,
    student: Net,
    teacher: Program,
    adamw: AdamW,
    /// Matched values, graph outputs first.
    pairs: Vec<Pair>,
    step: usize,
    sparsifier: Option<Sparsifier>,
}

/// A loss at or below this means the student matches the teacher.
const NOTHING_TO_LEARN: f64 = 1e-6;

/// One value of the student matched with the teacher's.
struct Pair {
    student: ValueId,
    teacher: ValueId,
    name: String,
    loss: DistilLoss,
    weight: f64,
}

/// The normalisation outputs of `g` (the residual stream of pre- and post-norm blocks).
fn norm_outputs(g: &Graph) -> Vec<ValueId> {
    g.order
        .iter()
        .map(|&n| g.node(n))
        .filter(|n| matches!(n.op, Op::LayerNorm(_) | Op::SkipLayerNorm(_)))
        .filter_map(|n| n.outputs.first().copied().flatten())
        .collect()
}

fn feeds(batch: &Batch, device: Device) -> Result<Vec<(String, Tensor)>, TrainError> {
    batch.iter().map(|(n, t)| Ok((n.clone(), to_tch(t, device)?))).collect()
}

/// The student's values matched with the teacher's: float graph outputs of
/// one name, then (with `match_layers`) normalisation outputs of one name and width.
fn pairs(sg: &Graph, tg: &Graph, cfg: &DistilConfig) -> Result<Vec<Pair>, TrainError> {
    let by_name = |g: &Graph, ids: &[ValueId], name: &str| ids.iter().copied().find(|&w| g.value(w).name == name);
    let mut pairs = Vec::new();
    for &v in &sg.outputs {
        let value = sg.value(v);
        if !value.best_ty().is_some_and(|ty| ty.dtype.is_float()) {
            continue;
        }
        let Some(w) = by_name(tg, &tg.outputs, &value.name) else { continue };
        let loss = cfg.loss.unwrap_or_else(|| DistilLoss::default_for(&value.name));
        pairs.push(Pair { student: v, teacher: w, name: value.name.clone(), loss, weight: 1.0 });
    }
    if pairs.is_empty() {
        return Err(TrainError::Config(
            "the student and the teacher share no float output by name, so there is nothing to match".into(),
        ));
    }
    if cfg.match_layers {
        let teacher_norms = norm_outputs(tg);
        let (sf, _) = ecospac_ir::infer::facts(sg);
        let (tf, _) = ecospac_ir::infer::facts(tg);
        // Rank and last (known) dim as inferred: the residual width both keep.
        let form = |facts: &[Option<ecospac_ir::infer::Fact>], v: ValueId| {
            let shape = facts.get(v.index())?.as_ref()?.ty.as_ref()?.shape.clone()?;
            Some((shape.len(), shape.last()?.as_known()?))
        };
        let layers: Vec<(ValueId, ValueId)> = norm_outputs(sg)
            .into_iter()
            .filter(|v| !sg.outputs.contains(v))
            .filter_map(|v| {
                let w = by_name(tg, &teacher_norms, &sg.value(v).name)?;
                let a = form(&sf, v)?;
                (Some(a) == form(&tf, w)).then_some((v, w))
            })
            .collect();
        let weight = 1.0 / layers.len().max(1) as f64;
        for (v, w) in layers {
            let name = sg.value(v).name.clone();
            pairs.push(Pair { student: v, teacher: w, name, loss: DistilLoss::Cosine, weight });
        }
    }
    Ok(pairs)
}

impl Distiller {
    /// Pairs the student's float outputs with the teacher's of the same name.
    pub fn new(student: &Model, teacher: &Model, cfg: DistilConfig) -> Result<Distiller, TrainError> {
        let t = Program::new(teacher, cfg.device)?;
        let mut trainable = net::weights(student);
        if !cfg.train_embeddings {
            let tables = crate::exec::embedding_tables(&student.graph).into_iter().map(str::to_string).collect();
            trainable = trainable.difference(&tables).cloned().collect();
        }
        if trainable.is_empty() {
            return Err(TrainError::Config("the student has no float weights to train".into()));
        }
        let s = Net::new(student.clone(), trainable, None, None, cfg.device)?;
        let pairs = pairs(s.program().graph(), t.graph(), &cfg)?;
        let adamw = AdamW::new(cfg.adamw.clone(), &s.params);
        let sparsifier = cfg
            .schedule
            .as_ref()
            .filter(|sc| sc.target < 1.0)
            .map(|_| Sparsifier::new(&s, cfg.criterion, cfg.allocation, cfg.align))
            .transpose()?;
        Ok(Distiller { cfg, student: s, teacher: t, adamw, pairs, step: 0, sparsifier })
    }

    /// The matched values (graph outputs first) and their losses.
    pub fn matched(&self) -> impl Iterator<Item = (&str, DistilLoss)> {
        self.pairs.iter().map(|p| (p.name.as_str(), p.loss))
    }

    /// Trainable parameters (elements).
    pub fn trainable_parameters(&self) -> i64 {
        self.student.num_params()
    }

    /// The kept fraction of the student's prunable parameters when it
    /// shrinks while distilling (1 before the first shrink), else `None`.
    pub fn density(&self) -> Option<f64> {
        self.sparsifier.as_ref().map(|sp| sp.density(&self.student))
    }

    /// The summed loss of the matched outputs on one batch (with gradients when `train`).
    fn loss(&self, batch: &[(String, Tensor)]) -> Result<Tensor, TrainError> {
        let ids = |f: fn(&Pair) -> ValueId| self.pairs.iter().map(f).collect::<Vec<_>>();
        let teacher = tch::no_grad(|| self.teacher.forward_values(batch, &ids(|p| p.teacher)))?;
        let student = self.student.program().forward_values(batch, &ids(|p| p.student))?;
        let mut total: Option<Tensor> = None;
        for ((s, t), p) in student.iter().zip(&teacher).zip(&self.pairs) {
            let name = &p.name;
            if s.size() != t.size() {
                return Err(TrainError::Config(format!(
                    "output `{name}`: the student's shape {:?} differs from the teacher's {:?}",
                    s.size(),
                    t.size()
                )));
            }
            let mut l = p.loss.of(s, &t.detach())?;
            if p.weight != 1.0 {
                l = l.f_mul_scalar(p.weight).map_err(|e| TrainError::Config(format!("distillation loss: {e}")))?;
            }
            total = Some(match total {
                None => l,
                Some(x) => x.f_add(&l).map_err(|e| TrainError::Config(format!("distillation loss: {e}")))?,
            });
        }
        total.ok_or_else(|| TrainError::Config("no output to match".into()))
    }

    /// One optimizer step on `batch`; returns the loss before the update.
    pub fn step(&mut self, batch: &Batch) -> Result<f64, TrainError> {
        let feeds = feeds(batch, self.cfg.device)?;
        for p in self.student.params.values_mut() {
            p.zero_grad();
        }
        let loss = self.loss(&feeds)?;
        let value = loss.double_value(&[]);
        if !value.is_finite() {
            return Err(TrainError::Config(format!("the distillation loss is {value} at step {}", self.step)));
        }
        // Where the student matches the teacher (as it does before its first
        // shrink when it starts as the teacher) the gradients are rounding
        // noise, which AdamW would scale up into steps of the full learning
        // rate: nothing is learnt, and nothing is collected.
        if value > NOTHING_TO_LEARN {
            loss.backward();
            if let (Some(sp), Some(sc)) = (self.sparsifier.as_mut(), self.cfg.schedule.as_ref()) {
                if sc.collects_at(self.step + 1) {
                    sp.collect(&self.student);
                }
            }
            if self.cfg.clip > 0.0 {
                clip_grad_norm(&self.student.params, self.cfg.clip);
            }
            let lr = lr_at(self.step, self.cfg.adamw.lr, self.cfg.warmup, self.cfg.steps, 0.1);
            self.adamw.update(&mut self.student.params, lr);
        }
        self.step += 1;
        if let (Some(sp), Some(sc)) = (self.sparsifier.as_mut(), self.cfg.schedule.as_ref()) {
            if sc.shrinks_at(self.step) {
                if let Some(plan) = sp.plan(&mut self.student, sc.density(self.step))? {
                    sp.shrink(&mut self.student, Some(&mut self.adamw), plan)?;
                    self.pairs = pairs(self.student.program().graph(), self.teacher.graph(), &self.cfg)?;
                }
            }
        }
        Ok(value)
    }

    /// Mean row cosine of the student's first matched output against the
    /// teacher's over `batches` (all rows).
    pub fn fidelity(&self, batches: &[Batch]) -> Result<f64, TrainError> {
        let (i, j) = (self.pairs[0].student, self.pairs[0].teacher);
        let (mut sum, mut rows) = (0f64, 0f64);
        for b in batches {
            let f = feeds(b, self.cfg.device)?;
            let (s, t) = tch::no_grad(|| {
                let s = self.student.program().forward_values(&f, &[i])?;
                Ok::<_, TrainError>((s, self.teacher.forward_values(&f, &[j])?))
            })?;
            let c = s[0]
                .f_to_dtype(Kind::Float, false, false)
                .and_then(|x| Tensor::f_cosine_similarity(&x, &t[0].f_to_dtype(Kind::Float, false, false)?, -1, 1e-8))
                .map_err(|e| TrainError::Config(format!("fidelity: {e}")))?;
            sum += c.sum(Kind::Double).double_value(&[]);
            rows += c.numel() as f64;
        }
        Ok(if rows > 0.0 { sum / rows } else { 0.0 })
    }

    /// A copy of the student's graph with the weights as they stand.
    pub fn model(&mut self) -> Result<Model, TrainError> {
        self.student.sync()?;
        Ok(self.student.ir.clone())
    }

    /// The student's graph with the trained weights (prepared, and shrunk
    /// when it shrank while distilling).
    pub fn into_model(mut self) -> Result<Model, TrainError> {
        self.student.sync()?;
        Ok(self.student.ir)
    }
}
