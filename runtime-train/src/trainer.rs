//! The training loop: gradient accumulation, clipping, AdamW with warmup +
//! cosine, importance collection and shrinking on the EcoSpa schedule,
//! evaluation, JSONL logs, checkpoints, resume, and ONNX export at the end.

use crate::checkpoint::{self, TrainerState};
use crate::data::Dataset;
use crate::net::{Net, Objective};
use crate::optim::{clip_grad_norm, lr_at, AdamW, AdamWConfig};
use crate::sparsity::{Schedule, Sparsifier, TrainCriterion};
use crate::TrainError;
use ecospac_passes::prune::Allocation;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;
use tch::{Device, Reduction, Tensor};

/// Everything a run is configured by.
#[derive(Clone, Debug)]
pub struct TrainConfig {
    /// Output folder (logs, checkpoints, the final model).
    pub out: PathBuf,
    /// Optimizer steps.
    pub steps: usize,
    /// Sequences per micro-batch.
    pub batch: usize,
    /// Micro-batches per step.
    pub accum: usize,
    /// AdamW.
    pub adamw: AdamWConfig,
    /// Warmup steps.
    pub warmup: usize,
    /// Final learning rate as a fraction of the peak.
    pub min_lr_ratio: f64,
    /// Gradient clipping norm (0: off).
    pub clip: f64,
    /// The sparsity schedule (target 1.0: dense).
    pub schedule: Schedule,
    /// Importance.
    pub criterion: TrainCriterion,
    /// Spreading over groups.
    pub allocation: Allocation,
    /// Kept counts are multiples of this where a group is twice as large.
    pub align: usize,
    /// Evaluate every this many steps (and at the end).
    pub eval_every: usize,
    /// Validation sequences per evaluation (0: all).
    pub eval_sequences: usize,
    /// Checkpoint every this many steps (0: only at the end).
    pub checkpoint_every: usize,
    /// Data and initialisation seed.
    pub seed: u64,
    /// Where to train.
    pub device: Device,
    /// bfloat16 matrix products (mixed precision; meant for CUDA).
    pub bf16: bool,
    /// Masked-LM token id (BERT).
    pub mask_id: i64,
    /// Draw a progress bar on stderr.
    pub progress: bool,
}

/// One line of the JSONL log.
#[derive(Clone, Debug, serde::Serialize)]
pub struct StepLog {
    /// Completed steps.
    pub step: usize,
    /// Mean training loss of the step.
    pub loss: f64,
    /// Learning rate used.
    pub lr: f64,
    /// Gradient norm before clipping.
    pub grad_norm: f64,
    /// Tokens per second over the step.
    pub tokens_per_s: f64,
    /// Parameters now.
    pub params: i64,
    /// Kept fraction of the prunable parameters.
    pub density: f64,
    /// Bytes of parameters, gradients and the two moments (float32).
    pub state_bytes: i64,
    /// Peak resident memory of the process so far (bytes, Linux).
    pub peak_rss: u64,
    /// Validation loss, when evaluated at this step.
    pub val_loss: Option<f64>,
}

/// A training run.
pub struct Trainer {
    /// Settings.
    pub cfg: TrainConfig,
    /// The model.
    pub model: Net,
    /// The optimizer.
    pub opt: AdamW,
    /// Importance and the graph.
    pub sparsifier: Sparsifier,
    /// Completed steps.
    pub step: usize,
    /// Every step's log line.
    pub history: Vec<StepLog>,
}

impl Trainer {
    /// A fresh run on `model`.
    pub fn new(cfg: TrainConfig, mut model: Net) -> Result<Trainer, TrainError> {
        model.set_bf16(cfg.bf16);
        let sparsifier = Sparsifier::new(&model, cfg.criterion, cfg.allocation, cfg.align)?;
        let opt = AdamW::new(cfg.adamw.clone(), &model.params);
        Ok(Trainer { cfg, model, opt, sparsifier, step: 0, history: Vec::new() })
    }

    /// Continues from a checkpoint folder written by [`Trainer::save`]. For a
    /// model from a config the dense model is rebuilt and the recorded plans
    /// replayed; a model from an ONNX file is read as it was saved; then
    /// tensors and state are restored.
    pub fn resume(cfg: TrainConfig, dir: &Path) -> Result<Trainer, TrainError> {
        let loaded = checkpoint::load(dir)?;
        let (mut model, mut sparsifier) = match &loaded.source {
            checkpoint::Source::Config(json) => {
                let mut model = Net::init(json, cfg.device)?;
                let mut sparsifier = Sparsifier::new(&model, cfg.criterion, cfg.allocation, cfg.align)?;
                for plan in &loaded.plans {
                    sparsifier.shrink(&mut model, None, plan.clone())?;
                }
                model.set_tensors(&loaded.params.tensors)?;
                (model, sparsifier)
            }
            checkpoint::Source::Onnx(ir, objective) => {
                let model = Net::from_onnx((**ir).clone(), *objective, cfg.device)?;
                let mut sparsifier = Sparsifier::new(&model, cfg.criterion, cfg.allocation, cfg.align)?;
                sparsifier.plans = loaded.plans.clone();
                (model, sparsifier)
            }
        };
        if let Some(dense) = loaded.state.dense_prunable {
            sparsifier.set_dense_prunable(dense);
        }
        model.set_bf16(cfg.bf16);
        let mut opt = AdamW::new(cfg.adamw.clone(), &model.params);
        opt.m = checkpoint::tensors_with_prefix(&loaded.state_tensors, "m.", cfg.device)?;
        opt.v = checkpoint::tensors_with_prefix(&loaded.state_tensors, "v.", cfg.device)?;
        for (name, p) in &model.params {
            let fits = |t: Option<&Tensor>| t.is_some_and(|t| t.size() == p.size());
            if !fits(opt.m.get(name)) || !fits(opt.v.get(name)) {
                return Err(TrainError::Config(format!("the checkpoint's moments of `{name}` do not fit the model")));
            }
        }
        opt.step = loaded.state.adam_step;
        if loaded.state.ema.iter().map(Vec::len).ne(sparsifier.coupling().groups.iter().map(|g| g.size)) {
            return Err(TrainError::Config("the checkpoint's importance does not fit the model's groups".into()));
        }
        sparsifier.ema = loaded.state.ema;
        let mut cfg = cfg;
        cfg.seed = loaded.state.seed;
        Ok(Trainer { cfg, model, opt, sparsifier, step: loaded.state.step, history: Vec::new() })
    }

    /// Loss of one micro-batch of token ids `[B, S]` (`micro`: its global number, seeds MLM masking).
    pub fn loss(&self, ids: &Tensor, micro: usize) -> Result<Tensor, TrainError> {
        // Inputs and targets (-100: not scored): masked tokens for BERT, the next token otherwise.
        let objective = self.model.objective.ok_or_else(|| TrainError::Config("the model has no objective".into()))?;
        let (input, targets) = match objective {
            Objective::Masked => {
                let vocab = self.model.vocab().ok_or_else(|| {
                    TrainError::Config("masked LM training needs the token embedding gathered by `input_ids`".into())
                })?;
                mlm_mask(ids, self.cfg.mask_id, vocab, self.cfg.seed ^ micro as u64)
            }
            // The whole sequence runs (graphs exported with a fixed length need
            // it); the last position predicts nothing.
            Objective::Causal => (ids.shallow_clone(), ids.narrow(1, 1, ids.size()[1] - 1)),
        };
        let mut logits = self.model.logits(&input)?;
        if objective == Objective::Causal {
            logits = logits.narrow(1, 0, logits.size()[1] - 1);
        }
        Ok(logits.flatten(0, 1).cross_entropy_loss::<Tensor>(&targets.flatten(0, 1), None, Reduction::Mean, -100, 0.0))
    }

    fn ids(&self, data: &Dataset, rows: Vec<i64>, batch: usize) -> Tensor {
        Tensor::from_slice(&rows).reshape([batch as i64, data.seq_len as i64]).to_device(self.cfg.device)
    }

    /// One optimizer step; returns its log line (shrinks afterwards when scheduled).
    pub fn train_step(&mut self, data: &Dataset) -> Result<StepLog, TrainError> {
        let t0 = Instant::now();
        let mut total = 0.0;
        for micro in 0..self.cfg.accum {
            let k = self.step * self.cfg.accum + micro;
            let ids = self.ids(data, data.batch(k, self.cfg.batch, self.cfg.seed), self.cfg.batch);
            let loss = self.loss(&ids, k)? / self.cfg.accum as f64;
            loss.backward();
            total += loss.double_value(&[]);
        }
        if self.cfg.schedule.collects_at(self.step + 1) {
            self.sparsifier.collect(&self.model);
        }
        let grad_norm = clip_grad_norm(&self.model.params, self.cfg.clip);
        let lr = lr_at(self.step, self.cfg.adamw.lr, self.cfg.warmup, self.cfg.steps, self.cfg.min_lr_ratio);
        self.opt.update(&mut self.model.params, lr);
        let state_bytes = self.state_bytes();
        for p in self.model.params.values_mut() {
            p.zero_grad();
        }
        self.step += 1;
        if self.cfg.schedule.shrinks_at(self.step) {
            if let Some(plan) = self.sparsifier.plan(&mut self.model, self.cfg.schedule.density(self.step))? {
                self.sparsifier.shrink(&mut self.model, Some(&mut self.opt), plan)?;
            }
        }
        let tokens = (self.cfg.batch * self.cfg.accum * data.seq_len) as f64;
        Ok(StepLog {
            step: self.step,
            loss: total,
            lr,
            grad_norm,
            tokens_per_s: tokens / t0.elapsed().as_secs_f64(),
            params: self.model.num_params(),
            density: self.sparsifier.density(&self.model),
            state_bytes,
            peak_rss: peak_rss(),
            val_loss: None,
        })
    }

    /// Bytes of parameters, gradients and moments as they stand (float32).
    fn state_bytes(&self) -> i64 {
        let n: i64 = self.model.params.values().map(|t| t.numel() as i64).sum();
        n * 4 * 4
    }

    /// Mean validation loss over the first `eval_sequences` validation sequences.
    pub fn evaluate(&self, data: &Dataset) -> Result<f64, TrainError> {
        let n = if self.cfg.eval_sequences == 0 { data.val.len() } else { self.cfg.eval_sequences.min(data.val.len()) };
        let _guard = tch::no_grad_guard();
        let mut sum = 0.0;
        let mut count = 0;
        for (i, chunk) in data.val[..n].chunks(self.cfg.batch.max(1)).enumerate() {
            let rows: Vec<i64> = chunk.iter().flatten().copied().collect();
            let ids = self.ids(data, rows, chunk.len());
            sum += self.loss(&ids, usize::MAX - i)?.double_value(&[]) * chunk.len() as f64;
            count += chunk.len();
        }
        Ok(sum / count.max(1) as f64)
    }

    /// Writes a checkpoint folder.
    pub fn save(&mut self, dir: &Path) -> Result<(), TrainError> {
        let state = TrainerState {
            step: self.step,
            adam_step: self.opt.step,
            ema: self.sparsifier.ema.clone(),
            seed: self.cfg.seed,
            dense_prunable: Some(self.sparsifier.dense_prunable()),
            objective: self.model.objective,
        };
        checkpoint::save(dir, &mut self.model, &self.opt, &self.sparsifier, &state)
    }

    /// Trains to `cfg.steps`, logging to `out/log.jsonl`, checkpointing, and
    /// writing `out/final/` (checkpoint) and `out/model.onnx` at the end.
    pub fn run(&mut self, data: &Dataset) -> Result<(), TrainError> {
        let out = self.cfg.out.clone();
        std::fs::create_dir_all(&out).map_err(|e| TrainError::Io(out.clone(), e))?;
        let log_path = out.join("log.jsonl");
        let mut log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| TrainError::Io(log_path.clone(), e))?;
        let bar = self.cfg.progress.then(|| {
            let b = indicatif::ProgressBar::new(self.cfg.steps as u64);
            b.set_style(
                indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} {msg} [{elapsed_precise}<{eta_precise}]")
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            b.set_position(self.step as u64);
            b
        });
        while self.step < self.cfg.steps {
            let mut line = self.train_step(data)?;
            if line.step % self.cfg.eval_every.max(1) == 0 || line.step == self.cfg.steps {
                line.val_loss = Some(self.evaluate(data)?);
            }
            let json = serde_json::to_string(&line).map_err(|e| TrainError::Config(e.to_string()))?;
            writeln!(log, "{json}").map_err(|e| TrainError::Io(log_path.clone(), e))?;
            if let Some(b) = &bar {
                b.set_position(line.step as u64);
                b.set_message(format!(
                    "loss {:.3} {:.0} tok/s density {:.2} state {:.1} MB rss {:.0} MB",
                    line.loss,
                    line.tokens_per_s,
                    line.density,
                    line.state_bytes as f64 / 1e6,
                    line.peak_rss as f64 / 1e6
                ));
            }
            self.history.push(line);
            if self.cfg.checkpoint_every > 0
                && self.step.is_multiple_of(self.cfg.checkpoint_every)
                && self.step < self.cfg.steps
            {
                self.save(&out.join(format!("checkpoint-{}", self.step)))?;
            }
        }
        if let Some(b) = bar {
            b.finish();
        }
        self.save(&out.join("final"))?;
        self.export_onnx(&out.join("model.onnx"))
    }

    /// Writes the trained (shrunk) model as ONNX through the backends.
    pub fn export_onnx(&mut self, path: &Path) -> Result<(), TrainError> {
        self.model.sync()?;
        let ir = &self.model.ir;
        let proof = ecospac_ir::verify(&ir.graph)
            .map_err(|e| TrainError::Config(format!("the trained graph does not verify: {e}")))?;
        ecospac_backends::export_onnx(ir, proof, path, &Default::default())?;
        Ok(())
    }
}

/// BERT masking: 15 % of positions (seeded) become `mask_id` (80 %), a random token (10 %) or stay (10 %).
fn mlm_mask(ids: &Tensor, mask_id: i64, vocab: i64, seed: u64) -> (Tensor, Tensor) {
    let ids_cpu = ids.to_device(Device::Cpu);
    let n = ids_cpu.numel();
    let mut v = vec![0i64; n];
    ids_cpu.copy_data(&mut v, n);
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut next = || rng.random::<u64>();
    let mut labels = vec![-100i64; n];
    for i in 0..n {
        if next() % 100 < 15 {
            labels[i] = v[i];
            v[i] = match next() % 10 {
                0 => (next() % vocab as u64) as i64,
                1 => v[i],
                _ => mask_id,
            };
        }
    }
    let shape = ids.size();
    let dev = ids.device();
    (
        Tensor::from_slice(&v).reshape(shape.as_slice()).to_device(dev),
        Tensor::from_slice(&labels).reshape(shape.as_slice()).to_device(dev),
    )
}

/// Peak resident set size of this process (Linux `VmHWM`), 0 elsewhere.
pub fn peak_rss() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}
