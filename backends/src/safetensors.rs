//! Checkpoint folders: the (sliced) weights as safetensors under their
//! checkpoint names, `config.json` with the new sizes, the slice plan, and the
//! tokenizer and other side files copied. Written into a temporary folder
//! beside the destination, then renamed into place.

use crate::onnx::ExportError;
use ecospac_frontends::hf::safetensors::dtype_to_safetensors;
use ecospac_frontends::hf::Checkpoint;
use ecospac_ir::{Model, Tensor, Verified};
use ecospac_passes::coupling::Coupling;
use ecospac_passes::prune::SlicePlan;
use std::collections::{BTreeMap, HashMap};
use std::io::{BufWriter, Write};
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

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ExportError + '_ {
    move |source| ExportError::Io { path: path.to_path_buf(), source }
}

/// Writes tensors as one safetensors file (header sorted by name, data in the given order).
pub fn write_safetensors(path: &Path, tensors: &[(String, &Tensor)]) -> Result<u64, ExportError> {
    let mut header = serde_json::Map::new();
    let mut offset = 0u64;
    for (name, t) in tensors {
        let dtype = dtype_to_safetensors(t.dtype).ok_or_else(|| ExportError::Encode {
            what: name.clone(),
            message: format!("safetensors has no {} type", t.dtype),
        })?;
        let len = t.bytes().len() as u64;
        header.insert(
            name.clone(),
            serde_json::json!({"dtype": dtype, "shape": t.dims, "data_offsets": [offset, offset + len]}),
        );
        offset += len;
    }
    header.insert("__metadata__".into(), serde_json::json!({"format": "pt"}));
    let mut head = serde_json::to_vec(&header)
        .map_err(|e| ExportError::Encode { what: "header".into(), message: e.to_string() })?;
    while head.len() % 8 != 0 {
        head.push(b' ');
    }
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let tmp = crate::onnx::staging_file(dir).map_err(io(path))?;
    let mut w = BufWriter::with_capacity(1 << 20, tmp);
    w.write_all(&(head.len() as u64).to_le_bytes()).map_err(io(path))?;
    w.write_all(&head).map_err(io(path))?;
    for (_, t) in tensors {
        w.write_all(t.bytes()).map_err(io(path))?;
    }
    let tmp = w.into_inner().map_err(|e| ExportError::Io { path: path.to_path_buf(), source: e.into_error() })?;
    tmp.as_file().sync_all().map_err(io(path))?;
    tmp.persist(path).map_err(|e| ExportError::Io { path: path.to_path_buf(), source: e.error })?;
    Ok(8 + head.len() as u64 + offset)
}

/// The config key that sizes every weight axis of group `gi`, if one does.
pub fn group_size_key(model: &Model, ckpt: &Checkpoint, coupling: &Coupling, gi: usize) -> Option<String> {
    let g = coupling.groups.get(gi)?;
    if g.blocks() != 1 {
        return None;
    }
    let mut key: Option<&String> = None;
    for m in &g.members {
        let name = &model.graph.value(m.value).name;
        let k = ckpt.size_keys.get(&(name.clone(), m.axis))?;
        if key.is_some_and(|prev| prev != k) {
            return None;
        }
        key = Some(k);
    }
    let key = key?;
    (ckpt.key_sizes.get(key) == Some(&g.size)).then(|| key.clone())
}

/// Writes the compact checkpoint of a sliced `model` imported from `ckpt`.
/// `coupling` and `plan` are the analysis and plan that sliced it.
pub fn export_checkpoint(
    model: &Model,
    _proof: Verified<'_>,
    ckpt: &Checkpoint,
    coupling: &Coupling,
    plan: &SlicePlan,
    dir: &Path,
) -> Result<CheckpointReport, ExportError> {
    let g = &model.graph;
    let by_name: HashMap<&str, &Tensor> = g
        .initializers
        .iter()
        .filter_map(|&v| g.value(v).constant.as_ref().map(|t| (g.value(v).name.as_str(), t)))
        .collect();
    for name in by_name.keys() {
        if let Some((base, _)) = name.split_once("::ecospac") {
            if ckpt.weights.tensors.contains_key(base) {
                return Err(ExportError::Encode {
                    what: base.to_string(),
                    message: "its uses were sliced differently, so it is no longer one checkpoint tensor".into(),
                });
            }
        }
    }
    let mut tensors: Vec<(String, &Tensor)> = Vec::new();
    let mut sliced: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for name in &ckpt.weights.order {
        let original = &ckpt.weights.tensors[name];
        let t = by_name.get(name.as_str()).copied().unwrap_or(original);
        if t.dims != original.dims {
            sliced.insert(name.clone(), t.dims.clone());
        }
        tensors.push((name.clone(), t));
    }

    // Config: a key per group when every group of that key keeps one count.
    let mut updated: BTreeMap<String, usize> = BTreeMap::new();
    let mut reason: Option<String> = None;
    let mut per_group = Vec::new();
    for (gi, g) in coupling.groups.iter().enumerate() {
        let key_of_group = ecospac_passes::prune::group_key(model, g);
        let Some(gp) = plan.groups.iter().find(|gp| gp.cuts == key_of_group && gp.size == g.size) else { continue };
        if gp.kept.len() == gp.size {
            continue;
        }
        let key = group_size_key(model, ckpt, coupling, gi);
        let weights: Vec<&str> = gp.cuts.iter().map(|c| c.weight.as_str()).collect();
        per_group.push(serde_json::json!({"key": key, "size": gp.size, "kept": gp.kept.len(), "weights": weights}));
        match key {
            None => {
                reason.get_or_insert_with(|| {
                    let named = weights.iter().find(|w| ckpt.weights.tensors.contains_key(**w)).or(weights.first());
                    format!("group {gi} (with {}) has no config key of its own", named.copied().unwrap_or(""))
                });
            }
            Some(k) => match updated.get(&k) {
                Some(&n) if n != gp.kept.len() => {
                    reason.get_or_insert_with(|| format!("`{k}` differs between layers ({n} and {})", gp.kept.len()));
                }
                _ => {
                    updated.insert(k, gp.kept.len());
                }
            },
        }
    }
    let mut config = ckpt.config.clone();
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
    let staging = tempfile::Builder::new().prefix(".ecospac-checkpoint").tempdir_in(parent).map_err(io(dir))?;
    let weight_bytes = write_safetensors(&staging.path().join("model.safetensors"), &tensors)?;
    let json = |v: &serde_json::Value| {
        serde_json::to_vec_pretty(v).map_err(|e| ExportError::Encode { what: "json".into(), message: e.to_string() })
    };
    write_file(&staging.path().join("config.json"), &json(&config)?)?;
    plan.save(&staging.path().join("slice_plan.json"))
        .map_err(|e| ExportError::Encode { what: "plan".into(), message: e.to_string() })?;
    let entries = std::fs::read_dir(&ckpt.dir).map_err(io(&ckpt.dir))?;
    for entry in entries {
        let entry = entry.map_err(io(&ckpt.dir))?;
        let name = entry.file_name();
        let s = name.to_string_lossy();
        let skip = s.ends_with(".safetensors")
            || s == "model.safetensors.index.json"
            || s == "config.json"
            || s.starts_with("slice_plan.json");
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
    let mut f = std::fs::File::create(path).map_err(io(path))?;
    f.write_all(bytes).map_err(io(path))?;
    f.sync_all().map_err(io(path))
}
