//! Training checkpoints: a folder with the model (for a model from a config:
//! the parameters under their Hugging Face names in `model.safetensors` and
//! `config.json`; for a model from an ONNX file: `model.onnx` as it stands),
//! the plans applied so far, the AdamW moments, and the trainer state (step,
//! importance EMA). Written into a staging folder and renamed into place.

use crate::exec::{to_ir, to_tch};
use crate::net::{Net, Objective};
use crate::optim::AdamW;
use crate::sparsity::Sparsifier;
use crate::TrainError;
use ecospac_backends::write_safetensors;
use ecospac_frontends::hf::Weights;
use ecospac_ir::{Model as IrModel, Tensor as IrTensor};
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
    /// Prunable parameters of the dense model (the density's denominator).
    #[serde(default)]
    pub dense_prunable: Option<u64>,
    /// What the model learns (recorded for models from ONNX files).
    #[serde(default)]
    pub objective: Option<Objective>,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> TrainError + '_ {
    move |e| TrainError::Io(path.to_path_buf(), e)
}

fn write_tensors(path: &Path, tensors: &BTreeMap<String, Tensor>, prefix: &str) -> Result<(), TrainError> {
    let ir =
        tensors.iter().map(|(k, t)| Ok((format!("{prefix}{k}"), to_ir(t)?))).collect::<Result<Vec<_>, TrainError>>()?;
    let refs: Vec<(String, &IrTensor)> = ir.iter().map(|(k, t)| (k.clone(), t)).collect();
    write_safetensors(path, &refs)?;
    Ok(())
}

/// Writes a checkpoint folder `dir` (replacing an older one of that name).
pub fn save(
    dir: &Path,
    net: &mut Net,
    opt: &AdamW,
    sparsifier: &Sparsifier,
    state: &TrainerState,
) -> Result<(), TrainError> {
    let parent = dir.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(io(parent))?;
    let staging = tempfile::Builder::new().prefix(".ecospac-train").tempdir_in(parent).map_err(io(parent))?;
    let s = staging.path();
    let mut state_tensors: BTreeMap<String, Tensor> = BTreeMap::new();
    for (k, t) in &opt.m {
        state_tensors.insert(format!("m.{k}"), t.shallow_clone());
    }
    for (k, t) in &opt.v {
        state_tensors.insert(format!("v.{k}"), t.shallow_clone());
    }
    write_tensors(&s.join("optimizer.safetensors"), &state_tensors, "")?;
    let json = |v: &serde_json::Value| serde_json::to_vec_pretty(v).map_err(|e| TrainError::Config(e.to_string()));
    match &net.config {
        Some(config) => {
            write_tensors(&s.join("model.safetensors"), &net.params, "")?;
            let mut config = config.clone();
            if !sparsifier.plans.is_empty() {
                let shapes: BTreeMap<&String, Vec<i64>> = net.params.iter().map(|(k, t)| (k, t.size())).collect();
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
            std::fs::write(s.join("config.json"), json(&config)?).map_err(io(s))?;
        }
        None => {
            net.sync()?;
            let proof = ecospac_ir::verify(&net.ir.graph)
                .map_err(|e| TrainError::Config(format!("the trained graph does not verify: {e}")))?;
            ecospac_backends::export_onnx(&net.ir, proof, &s.join("model.onnx"), &Default::default())?;
        }
    }
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

/// The model a checkpoint holds.
pub enum Source {
    /// The dense config (without the `ecospac` record); the plans are replayed on it.
    Config(serde_json::Value),
    /// The model as it stood (plans already applied), and its objective.
    Onnx(Box<IrModel>, Objective),
}

/// What [`load`] reads back.
pub struct Loaded {
    /// The model.
    pub source: Source,
    /// Plans applied so far, in order.
    pub plans: Vec<SlicePlan>,
    /// Parameters (empty for a model from an ONNX file, whose graph holds them).
    pub params: Weights,
    /// Moments (`m.*`, `v.*`).
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
    let plans: Vec<SlicePlan> =
        serde_json::from_value(read("plans.json")?).map_err(|e| TrainError::Config(format!("plans.json: {e}")))?;
    let state: TrainerState = serde_json::from_value(read("trainer_state.json")?)
        .map_err(|e| TrainError::Config(format!("trainer_state.json: {e}")))?;
    let onnx = dir.join("model.onnx");
    let (source, params) = if onnx.is_file() && !dir.join("config.json").exists() {
        let objective =
            state.objective.ok_or_else(|| TrainError::Config(format!("{}: no objective recorded", dir.display())))?;
        let model = ecospac_frontends::import_file(&onnx)
            .map_err(|e| TrainError::Config(format!("{}: {e}", onnx.display())))?;
        (Source::Onnx(Box::new(model), objective), Weights::default())
    } else {
        let mut config = read("config.json")?;
        if let Some(obj) = config.as_object_mut() {
            obj.remove("ecospac");
        }
        (Source::Config(config), Weights::open(dir)?)
    };
    let mut state_tensors = Weights::default();
    state_tensors.read_file(&dir.join("optimizer.safetensors"))?;
    Ok(Loaded { source, plans, params, state_tensors, state })
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
            let t = match t.dtype.is_float() && t.dtype != ecospac_ir::DType::F32 {
                true => ecospac_ir::tensor::cast_float(t, ecospac_ir::DType::F32).unwrap_or_else(|| t.clone()),
                false => t.clone(),
            };
            out.insert(name.to_string(), to_tch(&t, device)?);
        }
    }
    Ok(out)
}
