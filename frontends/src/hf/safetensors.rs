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
            w.read_file(&single)?;
        } else if index.is_file() {
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
            for shard in shards {
                if shard.contains('/') || shard.contains('\\') || shard == ".." {
                    return Err(HfError::BadFile {
                        path: index.clone(),
                        reason: format!("shard `{shard}` is not a file name in the checkpoint folder"),
                    });
                }
                w.read_file(&dir.join(shard))?;
            }
            for (name, file) in map {
                if !w.tensors.contains_key(name) {
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

    /// Adds the tensors of one safetensors file.
    pub fn read_file(&mut self, path: &Path) -> Result<(), HfError> {
        let bad = |reason: String| HfError::BadFile { path: path.to_path_buf(), reason };
        let file = std::fs::File::open(path).map_err(|source| HfError::Io { path: path.to_path_buf(), source })?;
        // SAFETY: the map is read-only; a checkpoint changed underneath a running
        // compile is outside what any reader can defend against.
        let map =
            Arc::new(unsafe { Mmap::map(&file) }.map_err(|source| HfError::Io { path: path.to_path_buf(), source })?);
        let head: [u8; 8] =
            map.get(..8).and_then(|b| b.try_into().ok()).ok_or_else(|| bad("shorter than 8 bytes".into()))?;
        let header_len = u64::from_le_bytes(head);
        let data_start = 8u64.checked_add(header_len).filter(|&e| e <= map.len() as u64).ok_or_else(|| {
            bad(format!("header length {header_len} runs past the end ({} bytes); truncated?", map.len()))
        })? as usize;
        let header: serde_json::Map<String, serde_json::Value> =
            serde_json::from_slice(&map[8..data_start]).map_err(|e| bad(format!("header is not JSON: {e}")))?;
        let data_len = map.len() - data_start;
        let mut entries: Vec<(usize, String, Tensor)> = Vec::new();
        for (name, info) in header {
            if name == "__metadata__" {
                continue;
            }
            let field = |k: &str| info.get(k).ok_or_else(|| bad(format!("`{name}` has no `{k}`")));
            let dtype_name = field("dtype")?.as_str().unwrap_or_default().to_string();
            let dtype = dtype_from_safetensors(&dtype_name)
                .ok_or_else(|| bad(format!("`{name}` has dtype `{dtype_name}`, which ecospac does not read")))?;
            let dims: Vec<i64> = field("shape")?
                .as_array()
                .and_then(|a| a.iter().map(|d| d.as_i64().filter(|&d| d >= 0)).collect())
                .ok_or_else(|| bad(format!("`{name}` has a malformed shape")))?;
            let offsets: Vec<usize> = field("data_offsets")?
                .as_array()
                .and_then(|a| a.iter().map(|d| d.as_u64().map(|d| d as usize)).collect())
                .filter(|o: &Vec<usize>| o.len() == 2 && o[0] <= o[1] && o[1] <= data_len)
                .ok_or_else(|| bad(format!("`{name}` has data offsets outside the file's {data_len} data bytes")))?;
            let tensor = Tensor {
                dtype,
                dims,
                storage: Storage::Mapped {
                    map: map.clone(),
                    offset: data_start + offsets[0],
                    len: offsets[1] - offsets[0],
                },
                layout: DataLayout::Raw,
                origin: None,
            };
            tensor.check_size().map_err(|e| bad(format!("`{name}`: {e}")))?;
            entries.push((offsets[0], name, tensor));
        }
        entries.sort_by_key(|e| e.0);
        for (_, name, tensor) in entries {
            if self.tensors.insert(name.clone(), tensor).is_some() {
                return Err(bad(format!("`{name}` is stored twice (also in an earlier shard)")));
            }
            self.order.push(name);
        }
        self.files.push(path.to_path_buf());
        Ok(())
    }
}

/// The IR type of a safetensors dtype name.
pub fn dtype_from_safetensors(name: &str) -> Option<DType> {
    Some(match name {
        "F32" => DType::F32,
        "F16" => DType::F16,
        "BF16" => DType::BF16,
        "F64" => DType::F64,
        "I64" => DType::I64,
        "I32" => DType::I32,
        "I16" => DType::I16,
        "I8" => DType::I8,
        "U8" => DType::U8,
        "BOOL" => DType::Bool,
        _ => return None,
    })
}

/// The safetensors dtype name of an IR type.
pub fn dtype_to_safetensors(dtype: DType) -> Option<&'static str> {
    Some(match dtype {
        DType::F32 => "F32",
        DType::F16 => "F16",
        DType::BF16 => "BF16",
        DType::F64 => "F64",
        DType::I64 => "I64",
        DType::I32 => "I32",
        DType::I16 => "I16",
        DType::I8 => "I8",
        DType::U8 => "U8",
        DType::Bool => "BOOL",
        _ => return None,
    })
}
