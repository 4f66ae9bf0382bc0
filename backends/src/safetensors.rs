//! Checkpoint folders: the (sliced) weights as safetensors under their
//! checkpoint names, `config.json` with the new sizes, the slice plan, and the
//! tokenizer and other side files copied. Written into a temporary folder
//! beside the destination, then renamed into place.
//!
//! The writer knows neither the reader nor the passes: the caller describes
//! the source folder ([`CheckpointSource`]) and what the plan resized
//! ([`Resized`]), and hands over the plan's files as bytes.

use crate::onnx::ExportError;
use ecospac_ir::{DType, Model, Tensor, Verified};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// What [`export_checkpoint`] wrote.
#[derive(Debug, Clone)]
pub struct CheckpointReport {
    /// The folder.
    pub dir: PathBuf,
    /// True when the standard config describes the weights (stock loaders read them).
    pub stock_loadable: bool,
    /// Config keys given new values.
    pub updated_keys: BTreeMap<String, usize>,
    /// Why stock loaders cannot read it, when they cannot.
    pub reason: Option<String>,
    /// Bytes of `model.safetensors`.
    pub weight_bytes: u64,
}

/// The checkpoint folder a compact one is made from.
pub struct CheckpointSource<'a> {
    /// The folder; its side files (tokenizer, ...) are copied.
    pub dir: &'a Path,
    /// `config.json` as read.
    pub config: &'a serde_json::Value,
    /// Its stored tensors by name, in file order (also those the graph does not read).
    pub tensors: Vec<(&'a str, &'a Tensor)>,
}

/// A group the plan cut, as the config sees it.
#[derive(Clone, Debug)]
pub struct Resized {
    /// The config key that sizes every weight axis of the group, if one does.
    pub key: Option<String>,
    /// The group's size.
    pub size: usize,
    /// Indices kept.
    pub kept: usize,
    /// The weights it cuts.
    pub weights: Vec<String>,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ExportError + '_ {
    move |source| ExportError::Io { path: path.to_path_buf(), source }
}

/// The safetensors dtype of an IR type.
fn dtype_to_safetensors(dtype: DType) -> Option<safetensors::Dtype> {
    use safetensors::Dtype as S;
    Some(match dtype {
        DType::F32 => S::F32,
        DType::F16 => S::F16,
        DType::BF16 => S::BF16,
        DType::F64 => S::F64,
        DType::I64 => S::I64,
        DType::I32 => S::I32,
        DType::I16 => S::I16,
        DType::I8 => S::I8,
        DType::U8 => S::U8,
        DType::Bool => S::BOOL,
        _ => return None,
    })
}

/// Writes tensors as one safetensors file (by the `safetensors` crate),
/// atomically; returns its size in bytes.
pub fn write_safetensors(path: &Path, tensors: &[(String, &Tensor)]) -> Result<u64, ExportError> {
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = tensors
        .iter()
        .map(|(name, t)| {
            let bad = |message: String| ExportError::Encode { what: name.clone(), message };
            let dtype =
                dtype_to_safetensors(t.dtype).ok_or_else(|| bad(format!("safetensors has no {} type", t.dtype)))?;
            let shape: Vec<usize> = t.dims.iter().map(|&d| d.max(0) as usize).collect();
            let view = safetensors::tensor::TensorView::new(dtype, shape, t.bytes()).map_err(|e| bad(e.to_string()))?;
            Ok((name.clone(), view))
        })
        .collect::<Result<_, ExportError>>()?;
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let tmp = crate::onnx::staging_file(dir).map_err(io(path))?;
    let metadata = HashMap::from([("format".to_string(), "pt".to_string())]);
    safetensors::serialize_to_file(views, Some(metadata), tmp.path())
        .map_err(|e| ExportError::Encode { what: path.display().to_string(), message: e.to_string() })?;
    std::fs::File::open(tmp.path()).and_then(|f| f.sync_all()).map_err(io(path))?;
    let bytes = std::fs::metadata(tmp.path()).map_err(io(path))?.len();
    tmp.persist(path).map_err(|e| ExportError::Io { path: path.to_path_buf(), source: e.error })?;
    Ok(bytes)
}

/// Writes the compact checkpoint of a sliced `model` made from `src`:
/// its tensors under the checkpoint's names, `config.json` with the sizes
/// `resized` gives (standard keys when every group of a key keeps one count,
/// else an `ecospac` record), `files` (the plan) and the source's side files.
pub fn export_checkpoint(
    model: &Model,
    _proof: Verified<'_>,
    src: &CheckpointSource<'_>,
    resized: &[Resized],
    files: &[(String, Vec<u8>)],
    dir: &Path,
) -> Result<CheckpointReport, ExportError> {
    let g = &model.graph;
    let by_name: HashMap<&str, &Tensor> = g
        .initializers
        .iter()
        .filter_map(|&v| g.value(v).constant.as_ref().map(|t| (g.value(v).name.as_str(), t)))
        .collect();
    let original: HashMap<&str, &Tensor> = src.tensors.iter().copied().collect();
    for &v in &g.initializers {
        let from = g.original(v);
        let base = g.value(from).name.as_str();
        if from != v && original.contains_key(base) {
            return Err(ExportError::Encode {
                what: base.to_string(),
                message: "its uses were sliced differently, so it is no longer one checkpoint tensor".into(),
            });
        }
    }
    let mut tensors: Vec<(String, &Tensor)> = Vec::new();
    let mut sliced: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for &(name, orig) in &src.tensors {
        let t = by_name.get(name).copied().unwrap_or(orig);
        if t.dims != orig.dims {
            sliced.insert(name.to_string(), t.dims.clone());
        }
        tensors.push((name.to_string(), t));
    }

    // Config: a key per group when every group of that key keeps one count.
    let mut updated: BTreeMap<String, usize> = BTreeMap::new();
    let mut reason: Option<String> = None;
    let mut per_group = Vec::new();
    for (gi, r) in resized.iter().enumerate().filter(|(_, r)| r.kept < r.size) {
        per_group.push(serde_json::json!({"key": r.key, "size": r.size, "kept": r.kept, "weights": r.weights}));
        match &r.key {
            None => {
                reason.get_or_insert_with(|| {
                    let named = r.weights.iter().find(|w| original.contains_key(w.as_str())).or(r.weights.first());
                    format!("group {gi} (with {}) has no config key of its own", named.map_or("", String::as_str))
                });
            }
            Some(k) => match updated.get(k) {
                Some(&n) if n != r.kept => {
                    reason.get_or_insert_with(|| format!("`{k}` differs between layers ({n} and {})", r.kept));
                }
                _ => {
                    updated.insert(k.clone(), r.kept);
                }
            },
        }
    }
    let mut config = src.config.clone();
    let stock_loadable = reason.is_none();
    if let Some(obj) = config.as_object_mut() {
        if stock_loadable {
            for (k, n) in &updated {
                obj.insert(k.clone(), serde_json::json!(n));
            }
        } else {
            obj.insert(
                "ecospac".into(),
                serde_json::json!({
                    "note": "sliced by ecospac with sizes the standard config cannot express; stock loaders will not read these weights",
                    "groups": per_group,
                    "shapes": sliced,
                }),
            );
        }
    }

    // Everything goes into a fresh folder beside `dir`, renamed into place at the end.
    let parent = dir.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let staging = ecospac_ir::staging::dir(parent).map_err(io(dir))?;
    let weight_bytes = write_safetensors(&staging.path().join("model.safetensors"), &tensors)?;
    let json = serde_json::to_vec_pretty(&config)
        .map_err(|e| ExportError::Encode { what: "config.json".into(), message: e.to_string() })?;
    write_file(&staging.path().join("config.json"), &json)?;
    for (name, bytes) in files {
        write_file(&staging.path().join(name), bytes)?;
    }
    let entries = std::fs::read_dir(src.dir).map_err(io(src.dir))?;
    for entry in entries {
        let entry = entry.map_err(io(src.dir))?;
        let name = entry.file_name();
        let s = name.to_string_lossy();
        let skip = s.ends_with(".safetensors")
            || s == "model.safetensors.index.json"
            || s == "config.json"
            || files.iter().any(|(f, _)| f.as_str() == s);
        if skip || !entry.file_type().map_err(io(&entry.path()))?.is_file() {
            continue;
        }
        std::fs::copy(entry.path(), staging.path().join(&name)).map_err(io(&entry.path()))?;
    }
    if dir.exists() {
        // Only an empty folder may be replaced.
        std::fs::remove_dir(dir).map_err(io(dir))?;
    }
    let staged = staging.keep();
    std::fs::rename(&staged, dir).map_err(io(dir))?;
    Ok(CheckpointReport { dir: dir.to_path_buf(), stock_loadable, updated_keys: updated, reason, weight_bytes })
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<(), ExportError> {
    use std::io::Write;
    let mut f = std::fs::File::create(path).map_err(io(path))?;
    f.write_all(bytes).map_err(io(path))?;
    f.sync_all().map_err(io(path))
}
