//! safetensors reading: one file or shards with `model.safetensors.index.json`,
//! every tensor a window of the file's memory map (no copy).

use super::HfError;
use ecospac_ir::{DType, DataLayout, Storage, Tensor};
use memmap2::Mmap;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The tensors of a checkpoint, by name, in the order the files list them.
#[derive(Clone, Debug, Default)]
pub struct Weights {
    /// Tensor by name.
    pub tensors: BTreeMap<String, Tensor>,
    /// Names in file order (shard by shard).
    pub order: Vec<String>,
    /// The files read.
    pub files: Vec<PathBuf>,
}

impl Weights {
    /// Reads `model.safetensors`, or the shards its index names, from `dir`.
    pub fn open(dir: &Path) -> Result<Weights, HfError> {
        let single = dir.join("model.safetensors");
        let index = dir.join("model.safetensors.index.json");
        let mut w = Weights::default();
        if single.is_file() {
            w.read_file(&contained(dir, &single)?)?;
        } else if index.is_file() {
            let index = contained(dir, &index)?;
            let text = std::fs::read_to_string(&index).map_err(|source| HfError::Io { path: index.clone(), source })?;
            let json: serde_json::Value = serde_json::from_str(&text)
                .map_err(|e| HfError::BadFile { path: index.clone(), reason: e.to_string() })?;
            let map = json
                .get("weight_map")
                .and_then(|m| m.as_object())
                .ok_or_else(|| HfError::BadFile { path: index.clone(), reason: "no `weight_map` object".into() })?;
            let mut shards: Vec<&str> = Vec::new();
            for file in map.values() {
                let file = file.as_str().ok_or_else(|| HfError::BadFile {
                    path: index.clone(),
                    reason: "`weight_map` values must be file names".into(),
                })?;
                if !shards.contains(&file) {
                    shards.push(file);
                }
            }
            shards.sort_unstable();
            let mut holds: BTreeMap<&str, std::collections::BTreeSet<String>> = BTreeMap::new();
            for shard in shards {
                if shard.contains('/') || shard.contains('\\') || shard == ".." || shard.is_empty() {
                    return Err(HfError::BadFile {
                        path: index.clone(),
                        reason: format!("shard `{shard}` is not a file name in the checkpoint folder"),
                    });
                }
                let added = w.read_file(&contained(dir, &dir.join(shard))?)?;
                holds.insert(shard, added.into_iter().collect());
            }
            for (name, file) in map {
                let file = file.as_str().unwrap_or_default();
                if !holds.get(file).is_some_and(|names| names.contains(name)) {
                    return Err(HfError::BadFile {
                        path: index.clone(),
                        reason: format!("lists `{name}` in {file}, which does not hold it"),
                    });
                }
            }
        } else {
            return Err(HfError::NoWeights { dir: dir.to_path_buf() });
        }
        Ok(w)
    }

    /// Adds the tensors of one safetensors file and returns their names. The
    /// header is parsed and validated by the `safetensors` crate (offsets inside
    /// the file, contiguous and non-overlapping); every tensor is a window of
    /// the file's memory map.
    pub fn read_file(&mut self, path: &Path) -> Result<Vec<String>, HfError> {
        let bad = |reason: String| HfError::BadFile { path: path.to_path_buf(), reason };
        let meta = std::fs::metadata(path).map_err(|source| HfError::Io { path: path.to_path_buf(), source })?;
        if !meta.is_file() {
            return Err(bad("is not a regular file".into()));
        }
        let file = std::fs::File::open(path).map_err(|source| HfError::Io { path: path.to_path_buf(), source })?;
        // SAFETY: the map is read-only; a checkpoint changed underneath a running
        // compile is outside what any reader can defend against.
        let map =
            Arc::new(unsafe { Mmap::map(&file) }.map_err(|source| HfError::Io { path: path.to_path_buf(), source })?);
        let (header_len, meta) = safetensors::SafeTensors::read_metadata(&map[..])
            .map_err(|e| bad(format!("not a valid safetensors file: {e} (truncated or corrupt?)")))?;
        let data_start = 8usize
            .checked_add(header_len)
            .filter(|&e| e <= map.len())
            .ok_or_else(|| bad(format!("header length {header_len} runs past the end ({} bytes)", map.len())))?;
        let mut added = Vec::new();
        for name in meta.offset_keys() {
            let Some(info) = meta.info(&name) else { continue };
            let dtype = dtype_from_safetensors(info.dtype)
                .ok_or_else(|| bad(format!("`{name}` has dtype {:?}, which ecospac does not read", info.dtype)))?;
            let dims: Vec<i64> = info
                .shape
                .iter()
                .map(|&d| i64::try_from(d).map_err(|_| bad(format!("`{name}` has a dimension of {d}"))))
                .collect::<Result<_, _>>()?;
            let (start, end) = info.data_offsets;
            let tensor = Tensor {
                dtype,
                dims,
                storage: Storage::Mapped { map: map.clone(), offset: data_start + start, len: end - start },
                layout: DataLayout::Raw,
                origin: None,
            };
            tensor.check_size().map_err(|e| bad(format!("`{name}`: {e}")))?;
            if self.tensors.insert(name.clone(), tensor).is_some() {
                return Err(bad(format!("`{name}` is stored twice (also in an earlier shard)")));
            }
            self.order.push(name.clone());
            added.push(name);
        }
        self.files.push(path.to_path_buf());
        Ok(added)
    }
}

/// `path` (a file of the checkpoint in `dir`) resolved through links, refused
/// when it resolves outside `dir`, except into the Hugging Face cache's
/// `blobs` folder of the repository when `dir` is one of its snapshots
/// (`<repo>/snapshots/<rev>/x` → `<repo>/blobs/<hash>`).
pub fn contained(dir: &Path, path: &Path) -> Result<PathBuf, HfError> {
    let io = |source| HfError::Io { path: path.to_path_buf(), source };
    let base = dir.canonicalize().map_err(io)?;
    let real = path.canonicalize().map_err(io)?;
    let hub_blobs = base
        .parent()
        .filter(|p| p.file_name().is_some_and(|n| n == "snapshots"))
        .and_then(Path::parent)
        .map(|repo| repo.join("blobs"));
    if real.starts_with(&base) || hub_blobs.is_some_and(|b| real.starts_with(b)) {
        return Ok(real);
    }
    Err(HfError::BadFile {
        path: path.to_path_buf(),
        reason: format!("resolves (through a link) outside the checkpoint folder, to {}", real.display()),
    })
}

/// The IR type of a safetensors dtype.
pub fn dtype_from_safetensors(dtype: safetensors::Dtype) -> Option<DType> {
    use safetensors::Dtype as S;
    Some(match dtype {
        S::F32 => DType::F32,
        S::F16 => DType::F16,
        S::BF16 => DType::BF16,
        S::F64 => DType::F64,
        S::I64 => DType::I64,
        S::I32 => DType::I32,
        S::I16 => DType::I16,
        S::I8 => DType::I8,
        S::U8 => DType::U8,
        S::BOOL => DType::Bool,
        _ => return None,
    })
}
