//! `ecospac train` (feature `train`): pre-train from a config or fine-tune a
//! checkpoint with the EcoSpa schedule, then export the compact model to ONNX
//! and check it in ONNX Runtime against the trained model.

use anyhow::{bail, Context, Result};
use ecospac_passes::prune::Allocation;
use ecospac_runtime_train::data::{text_files, train_bpe, Dataset};
use ecospac_runtime_train::net::{Net, Objective};
use ecospac_runtime_train::optim::AdamWConfig;
use ecospac_runtime_train::sparsity::{Schedule, TrainCriterion};
use ecospac_runtime_train::tch::{self, Device, Tensor};
use ecospac_runtime_train::trainer::{TrainConfig, Trainer};
use std::path::PathBuf;

fn parse_criterion(s: &str) -> Result<TrainCriterion, String> {
    TrainCriterion::parse(s).ok_or_else(|| "one of coupled, magnitude, uncoupled".into())
}

fn parse_objective(s: &str) -> Result<Objective, String> {
    Objective::parse(s).ok_or_else(|| "one of causal, masked".into())
}

fn parse_allocation(s: &str) -> Result<Allocation, String> {
    // Training shrinks without running a second engine: the measured allocation is not offered.
    match s {
        "uniform" => Ok(Allocation::Uniform),
        "global" => Ok(Allocation::Global),
        "greedy" => Ok(Allocation::Greedy),
        _ => Err("one of uniform, global, greedy".into()),
    }
}

/// Settings of `ecospac train`.
#[derive(clap::Args)]
pub struct TrainArgs {
    /// A config.json to pre-train from scratch (model_type gpt2, llama, mistral, qwen2,
    /// qwen3, phi3 or bert).
    #[arg(long, conflicts_with = "from")]
    pub(crate) config: Option<PathBuf>,
    /// A checkpoint folder to fine-tune (its tokenizer.json is used unless --tokenizer), or an
    /// ONNX file (with --tokenizer and --objective); with --teacher, the compact ONNX model to repair.
    #[arg(long)]
    pub(crate) from: Option<PathBuf>,
    /// What an ONNX model learns: causal (next token, from its `logits`) or masked
    /// (masked tokens, from `logits` or through the tied token embedding).
    #[arg(long, value_parser = parse_objective)]
    pub(crate) objective: Option<Objective>,
    /// Distil: the --from model learns to match this original ONNX model on the outputs
    /// they share (hidden states by cosine, logits by KL), with no labels.
    #[arg(long, requires = "from")]
    pub(crate) teacher: Option<PathBuf>,
    /// With --teacher: train the embedding tables too (they stay as they are by default).
    #[arg(long, requires = "teacher")]
    pub(crate) train_embeddings: bool,
    /// With --teacher: also match every block's output (the normalised residual stream) by
    /// cosine, together weighted as one output.
    #[arg(long, requires = "teacher")]
    pub(crate) match_layers: bool,
    /// With --teacher and text: batch texts of like length, each batch padded to 4 tokens past
    /// its longest only, not to --seq-len (more texts a second where they are short; the
    /// padding rows, outputs too, are then learnt less).
    #[arg(long, requires = "teacher")]
    pub(crate) group_by_length: bool,
    /// With --teacher: validate on the input arrays of this .npz (e.g. held-out text of
    /// your own) instead of on 64 samples held out of --data.
    #[arg(long, requires = "teacher")]
    pub(crate) validation: Option<PathBuf>,
    /// Training text: a UTF-8 file, or a folder of .txt/.rst/.md files.
    #[arg(long)]
    pub(crate) data: PathBuf,
    /// A tokenizer.json; without one (and without --from), a byte-level BPE is trained on the data.
    #[arg(long)]
    pub(crate) tokenizer: Option<PathBuf>,
    /// Vocabulary of the BPE trained when no tokenizer is given.
    #[arg(long, default_value_t = 8192)]
    pub(crate) vocab: usize,
    /// Output folder: log.jsonl, checkpoint-N/, final/, model.onnx.
    #[arg(short, long)]
    pub(crate) output: PathBuf,
    /// Continue from a checkpoint folder of an earlier run.
    #[arg(long)]
    pub(crate) resume: Option<PathBuf>,
    /// Optimizer steps.
    #[arg(long, default_value_t = 1000)]
    pub(crate) steps: usize,
    /// Sequences per micro-batch.
    #[arg(long, default_value_t = 8)]
    pub(crate) batch: usize,
    /// Micro-batches per step (gradient accumulation).
    #[arg(long, default_value_t = 1)]
    pub(crate) accum: usize,
    /// Tokens per sequence.
    #[arg(long, default_value_t = 128)]
    pub(crate) seq_len: usize,
    /// Peak learning rate.
    #[arg(long, default_value_t = 3e-4)]
    pub(crate) lr: f64,
    /// Warmup steps.
    #[arg(long, default_value_t = 100)]
    pub(crate) warmup: usize,
    /// AdamW weight decay.
    #[arg(long, default_value_t = 0.1)]
    pub(crate) weight_decay: f64,
    /// Gradient clipping norm (0: off).
    #[arg(long, default_value_t = 1.0)]
    pub(crate) clip: f64,
    /// Kept fraction of the prunable parameters at the end (1.0: dense training).
    #[arg(long, default_value_t = 1.0)]
    pub(crate) target: f64,
    /// First shrink step (default: 10 % of the steps).
    #[arg(long)]
    pub(crate) start: Option<usize>,
    /// Step at which the target is reached (default: 70 % of the steps).
    #[arg(long)]
    pub(crate) end: Option<usize>,
    /// Steps between shrinks.
    #[arg(long, default_value_t = 50)]
    pub(crate) every: usize,
    /// Importance: coupled (EcoSpa Taylor over the whole coupled slice), magnitude, uncoupled.
    /// Until any importance is collected (with --teacher, while the student still equals the
    /// teacher there is no gradient), the coupled weight magnitude decides.
    #[arg(long, default_value = "coupled", value_parser = parse_criterion)]
    pub(crate) criterion: TrainCriterion,
    /// Budget allocation: uniform (every group keeps the same fraction, every head stays),
    /// global (one ranking of scores normalised per group), or greedy (the cheapest
    /// importance per parameter first, across layers and groups, whole heads included;
    /// with the coupled criterion the scores are Taylor estimates of the loss, one scale).
    #[arg(long, default_value = "uniform", value_parser = parse_allocation)]
    pub(crate) allocation: Allocation,
    /// Kept counts are multiples of this where a group is at least twice as large.
    #[arg(long, default_value_t = 8)]
    pub(crate) align: usize,
    /// Evaluate every this many steps.
    #[arg(long, default_value_t = 100)]
    pub(crate) eval_every: usize,
    /// Validation sequences per evaluation (0: all).
    #[arg(long, default_value_t = 64)]
    pub(crate) eval_sequences: usize,
    /// Checkpoint every this many steps (0: only at the end); with --teacher, the student
    /// as it stands is written to step-N.onnx.
    #[arg(long, default_value_t = 500)]
    pub(crate) checkpoint_every: usize,
    /// Seed of initialisation and data order.
    #[arg(long, default_value_t = 0)]
    pub(crate) seed: u64,
    /// cpu, cuda or auto.
    #[arg(long, default_value = "auto")]
    pub(crate) device: String,
    /// bfloat16 matrix products (mixed precision, for CUDA).
    #[arg(long)]
    pub(crate) bf16: bool,
    /// Validation fraction of the data.
    #[arg(long, default_value_t = 0.05)]
    pub(crate) val_fraction: f64,
    /// The ONNX Runtime shared library for the final check (else $ORT_DYLIB_PATH, else .venv).
    #[arg(long)]
    pub(crate) ort_lib: Option<PathBuf>,
}

/// The device named by `--device`.
pub(crate) fn device(name: &str) -> Result<Device> {
    Ok(match name {
        "cpu" => Device::Cpu,
        "cuda" => Device::Cuda(0),
        "auto" => Device::cuda_if_available(),
        other => bail!("unknown --device `{other}` (cpu, cuda, auto)"),
    })
}

/// The sparsity schedule the flags ask for (defaults: from 10 % to 70 % of the steps).
pub(crate) fn schedule(a: &TrainArgs) -> Schedule {
    let start = a.start.unwrap_or(a.steps / 10);
    Schedule { target: a.target, start, end: a.end.unwrap_or(a.steps * 7 / 10).max(start), every: a.every.max(1) }
}

/// Runs `ecospac train`.
pub fn train(a: &TrainArgs) -> Result<()> {
    if !(a.target > 0.0 && a.target <= 1.0) {
        bail!("--target must be in (0, 1], got {}", a.target);
    }
    if a.teacher.is_some() {
        return crate::distil_cmd::distil(a);
    }
    let device = device(&a.device)?;
    let (criterion, allocation) = (a.criterion, a.allocation);
    let onnx_from = a.from.as_ref().filter(|p| p.is_file());
    if onnx_from.is_some() && a.resume.is_none() {
        if a.objective.is_none() {
            bail!("training an ONNX file needs --objective causal or masked");
        }
        if a.tokenizer.is_none() {
            bail!("training an ONNX file needs its tokenizer: give --tokenizer tokenizer.json");
        }
    }
    if a.objective.is_some() && onnx_from.is_none() {
        bail!("--objective is for ONNX files; a config or checkpoint's family decides it");
    }
    std::fs::create_dir_all(&a.output).with_context(|| format!("cannot create {}", a.output.display()))?;
    let files = text_files(&a.data)?;
    // The tokenizer: given; else the fine-tuned checkpoint's; else, when resuming, the run's own.
    let tok_path = a.tokenizer.clone().or_else(|| a.from.as_ref().map(|d| d.join("tokenizer.json"))).or_else(|| {
        let run_dir = a.resume.as_ref()?.parent()?;
        Some(run_dir.join("tokenizer.json")).filter(|p| p.exists())
    });
    let tokenizer = match &tok_path {
        Some(p) => {
            tokenizers::Tokenizer::from_file(p).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", p.display()))?
        }
        None => {
            eprintln!("training a byte-level BPE of {} tokens on {} files", a.vocab, files.len());
            train_bpe(&files, a.vocab, &a.output.join("tokenizer.json"))?
        }
    };
    if let Some(p) = &tok_path {
        std::fs::copy(p, a.output.join("tokenizer.json")).with_context(|| format!("cannot copy {}", p.display()))?;
    }
    let data = Dataset::build(&files, &tokenizer, a.seq_len, a.val_fraction)?;
    eprintln!(
        "data: {} training and {} validation sequences of {} tokens ({} training tokens)",
        data.train.len(),
        data.val.len(),
        a.seq_len,
        data.train_tokens()
    );
    tch::manual_seed(a.seed as i64);
    let cfg = TrainConfig {
        out: a.output.clone(),
        steps: a.steps,
        batch: a.batch,
        accum: a.accum.max(1),
        adamw: AdamWConfig { lr: a.lr, weight_decay: a.weight_decay, ..AdamWConfig::default() },
        warmup: a.warmup,
        min_lr_ratio: 0.1,
        clip: a.clip,
        schedule: schedule(a),
        criterion,
        allocation,
        align: a.align.max(1),
        eval_every: a.eval_every,
        eval_sequences: a.eval_sequences,
        checkpoint_every: a.checkpoint_every,
        seed: a.seed,
        device,
        bf16: a.bf16,
        mask_id: tokenizer.token_to_id("[MASK]").map_or(0, i64::from),
        progress: true,
    };
    let mut trainer = match &a.resume {
        Some(dir) => Trainer::resume(cfg, dir)?,
        None => {
            let model = match (&a.config, &a.from) {
                (Some(c), None) => {
                    let text = std::fs::read_to_string(c).with_context(|| format!("cannot read {}", c.display()))?;
                    let mut json: serde_json::Value =
                        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", c.display()))?;
                    json["vocab_size"] = serde_json::json!(tokenizer.get_vocab_size(true));
                    Net::init(&json, device)?
                }
                (None, Some(path)) if path.is_file() => {
                    let objective = a.objective.context("training an ONNX file needs --objective causal or masked")?;
                    Net::from_onnx(crate::load(path)?, objective, device)?
                }
                (None, Some(dir)) => {
                    let hf = crate::import_checkpoint(dir)?;
                    Net::load(&hf.checkpoint.config, &hf.checkpoint.weights, device)?
                }
                _ => bail!("give --config config.json (pre-training) or --from checkpoint_dir (fine-tuning)"),
            };
            let vocab = model.vocab().context("the model has no token embedding gathered by `input_ids`")?;
            if (tokenizer.get_vocab_size(true) as i64) > vocab {
                bail!("the tokenizer has {} tokens but the model only {vocab}", tokenizer.get_vocab_size(true));
            }
            Trainer::new(cfg, model)?
        }
    };
    eprintln!(
        "model: {} parameters on {device:?}; schedule {:?}; criterion {:?}",
        trainer.model.num_params(),
        trainer.cfg.schedule,
        trainer.cfg.criterion
    );
    trainer.run(&data)?;
    let last = trainer.history.last();
    eprintln!(
        "done: {} parameters, density {:.3}, final validation loss {}",
        trainer.model.num_params(),
        trainer.sparsifier.density(&trainer.model),
        last.and_then(|l| l.val_loss).map_or("-".into(), |v| format!("{v:.4} (perplexity {:.2})", v.exp()))
    );
    check_onnx(&trainer, &data, a)
}

/// Runs the exported model in ONNX Runtime and the trained graph on libtorch
/// (CPU, float32) on validation tokens and compares their first output.
fn check_onnx(trainer: &Trainer, data: &Dataset, a: &TrainArgs) -> Result<()> {
    let path = a.output.join("model.onnx");
    let rows: Vec<i64> = data.val.iter().take(2).flatten().copied().collect();
    let n = rows.len() / data.seq_len;
    let ids = Tensor::from_slice(&rows).reshape([n as i64, data.seq_len as i64]);
    let g = &trainer.model.ir.graph;
    let output = g.outputs.first().map(|&v| g.value(v).name.clone()).context("the trained graph has no output")?;
    let want = tch::no_grad(|| trainer.model.reference_output(&ids, &output))?;
    let want = Vec::<f32>::try_from(&want.flatten(0, -1)).context("the trained model's output")?;
    use ecospac_ir::exec::Session;
    let exec = ecospac_backends::ort::OrtExecutor::new(a.ort_lib.as_deref(), 0)?;
    let mut session = exec.open(&path)?;
    let shape = vec![n as i64, data.seq_len as i64];
    let mut feeds: ecospac_ir::exec::Batch = Vec::new();
    for name in session.input_names().to_vec() {
        let v = match name.as_str() {
            "input_ids" => rows.clone(),
            "attention_mask" => vec![1; rows.len()],
            _ => vec![0; rows.len()],
        };
        feeds.push((name, ecospac_ir::Tensor::from_i64s(shape.clone(), &v)));
    }
    let at = session
        .output_names()
        .iter()
        .position(|n| *n == output)
        .with_context(|| format!("the exported model has no {output}"))?;
    let out = session.run(&feeds)?;
    let got = ecospac_ir::exec::Array::of(&out[at]).with_context(|| format!("{output} is not float"))?.data;
    let diff = got.iter().zip(&want).fold(0f32, |m, (x, y)| m.max((x - y).abs()));
    println!("wrote {}; ONNX Runtime vs the trained model: max |Δ| {diff:.3e} on {output}", path.display());
    if diff > 1e-3 {
        bail!("the exported ONNX differs from the trained model by {diff:.3e}");
    }
    Ok(())
}
