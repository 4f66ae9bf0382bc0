//! Training checkpoints: a folder with the parameters under their Hugging Face
//! names (`model.safetensors`), `config.json`, the plans applied so far, the
//! AdamW moments and buffers, and the trainer state (step, importance EMA).
//! Written into a staging folder and renamed into place.

use crate::model::{from_ir, to_ir};
use crate::optim::AdamW;
use crate::sparsity::Sparsifier;
use crate::TrainError;
use ecospac_backends::write_safetensors;
use ecospac_frontends::hf::Weights;
use ecospac_ir::Tensor as IrTensor;
use ecospac_passes::prune::SlicePlan;
use std::collections::BTreeMap;
use std::path::Path;
use tch::Tensor;

/// What a checkpoint records besides tensors.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct TrainerState {
    /// Completed optimizer steps.
    pub step: usize,
    /// AdamW's step count.
    pub adam_step: i64,
    /// Importance EMA per group and index.
    pub ema: Vec<Vec<f64>>,
    /// Data seed (the batch order depends only on it and the step).
    pub seed: u64,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> TrainError + '_ {
    move |e| TrainError::Io(path.to_path_buf(), e)
}

fn write_tensors(path: &Path, tensors: &BTreeMap<String, Tensor>, prefix: &str) -> Result<(), TrainError> {
    let ir: Vec<(String, IrTensor)> = tensors.iter().map(|(k, t)| (format!("{prefix}{k}"), to_ir(t))).collect();
    let refs: Vec<(String, &IrTensor)> = ir.iter().map(|(k, t)| (k.clone(), t)).collect();
    write_safetensors(path, &refs)?;
    Ok(())
}

/// Writes a checkpoint folder `dir` (replacing an older one of that name).
pub fn save(
    dir: &Path,
    params: &BTreeMap<String, Tensor>,
    buffers: &BTreeMap<String, Tensor>,
    opt: &AdamW,
    sparsifier: &Sparsifier,
    config: &serde_json::Value,
    state: &TrainerState,
) -> Result<(), TrainError> {
    let parent = dir.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(io(parent))?;
    let staging = tempfile::Builder::new().prefix(".ecospac-train").tempdir_in(parent).map_err(io(parent))?;
    let s = staging.path();
    write_tensors(&s.join("model.safetensors"), params, "")?;
    let mut state_tensors: BTreeMap<String, Tensor> = BTreeMap::new();
    for (k, t) in &opt.m {
        state_tensors.insert(format!("m.{k}"), t.shallow_clone());
    }
    for (k, t) in &opt.v {
        state_tensors.insert(format!("v.{k}"), t.shallow_clone());
    }
    for (k, t) in buffers {
        state_tensors.insert(format!("buffer.{k}"), t.shallow_clone());
    }
    write_tensors(&s.join("optimizer.safetensors"), &state_tensors, "")?;
    let mut config = config.clone();
    if !sparsifier.plans.is_empty() {
        let shapes: BTreeMap<&String, Vec<i64>> = params.iter().map(|(k, t)| (k, t.size())).collect();
        if let Some(obj) = config.as_object_mut() {
            obj.insert(
                "ecospac".into(),
                serde_json::json!({
                    "note": "shrunk by ecospac train; the sizes are per tensor (stock loaders will not read them)",
                    "shapes": shapes,
                }),
            );
        }
    }
    let json = |v: &serde_json::Value| serde_json::to_vec_pretty(v).map_err(|e| TrainError::Config(e.to_string()));
    std::fs::write(s.join("config.json"), json(&config)?).map_err(io(s))?;
    let plans = serde_json::to_value(&sparsifier.plans).map_err(|e| TrainError::Config(e.to_string()))?;
    std::fs::write(s.join("plans.json"), json(&plans)?).map_err(io(s))?;
    let st = serde_json::to_value(state).map_err(|e| TrainError::Config(e.to_string()))?;
    std::fs::write(s.join("trainer_state.json"), json(&st)?).map_err(io(s))?;
    if dir.exists() {
        std::fs::remove_dir_all(dir).map_err(io(dir))?;
    }
    let kept = staging.keep();
    std::fs::rename(&kept, dir).map_err(io(dir))?;
    Ok(())
}

/// What [`load`] reads back.
pub struct Loaded {
    /// The dense config (without the `ecospac` record).
    pub config: serde_json::Value,
    /// Plans to replay, in order.
    pub plans: Vec<SlicePlan>,
    /// Parameters.
    pub params: Weights,
    /// Moments (`m.*`, `v.*`) and buffers (`buffer.*`).
    pub state_tensors: Weights,
    /// Step, EMA, seed.
    pub state: TrainerState,
}

/// Reads a checkpoint folder.
pub fn load(dir: &Path) -> Result<Loaded, TrainError> {
    let read = |name: &str| -> Result<serde_json::Value, TrainError> {
        let p = dir.join(name);
        let text = std::fs::read_to_string(&p).map_err(io(&p))?;
        serde_json::from_str(&text).map_err(|e| TrainError::Config(format!("{}: {e}", p.display())))
    };
    let mut config = read("config.json")?;
    if let Some(obj) = config.as_object_mut() {
        obj.remove("ecospac");
    }
    let plans: Vec<SlicePlan> =
        serde_json::from_value(read("plans.json")?).map_err(|e| TrainError::Config(format!("plans.json: {e}")))?;
    let state: TrainerState = serde_json::from_value(read("trainer_state.json")?)
        .map_err(|e| TrainError::Config(format!("trainer_state.json: {e}")))?;
    let params = Weights::open(dir)?;
    let mut state_tensors = Weights::default();
    state_tensors.read_file(&dir.join("optimizer.safetensors"))?;
    Ok(Loaded { config, plans, params, state_tensors, state })
}

/// The tensors of `w` whose names start with `prefix` (prefix removed), as tch tensors.
pub fn tensors_with_prefix(
    w: &Weights,
    prefix: &str,
    device: tch::Device,
) -> Result<BTreeMap<String, Tensor>, TrainError> {
    let mut out = BTreeMap::new();
    for (k, t) in &w.tensors {
        if let Some(name) = k.strip_prefix(prefix) {
            out.insert(name.to_string(), from_ir(t)?.to_device(device));
        }
    }
    Ok(out)
}
