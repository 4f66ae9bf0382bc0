//! Calibration for activation-aware scores: reads model inputs from an `.npz`
//! (as `numpy.savez` writes it), runs the model in ONNX Runtime with the
//! activations the criterion needs exposed as outputs, and sums their squares
//! per position of the last axis.

use anyhow::{bail, Context, Result};
use ecospac_ir::{Model, ValueId};
use ort::session::Session;
use ort::value::{DynValue, Tensor as OrtTensor};
use std::borrow::Cow;
use std::collections::HashMap;
use std::io::Read;
use std::path::Path;

/// One array of an `.npz`.
pub enum Array {
    /// int64 (int32 is widened).
    I64(Vec<i64>, Vec<i64>),
    /// float32.
    F32(Vec<i64>, Vec<f32>),
}

/// Parses one `.npy` (format 1.0–3.0, little-endian, C order; int64/int32/float32).
fn parse_npy(bytes: &[u8], name: &str) -> Result<Array> {
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        bail!("`{name}` is not a .npy array");
    }
    let (header_len, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 if bytes.len() >= 12 => (u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize, 12),
        v => bail!("`{name}`: .npy version {v} is not supported"),
    };
    let header = std::str::from_utf8(bytes.get(start..start + header_len).context("truncated .npy header")?)?;
    let field = |key: &str| -> Option<&str> {
        let i = header.find(&format!("'{key}'"))? + key.len() + 2;
        Some(header[i..].trim_start_matches([':', ' ']))
    };
    let descr = field("descr").and_then(|d| d.split('\'').nth(1)).context("no descr in .npy header")?;
    if field("fortran_order").is_some_and(|f| f.starts_with("True")) {
        bail!("`{name}`: Fortran-ordered arrays are not supported");
    }
    let shape_text =
        field("shape").and_then(|s| s.strip_prefix('(')).and_then(|s| s.split(')').next()).context("no shape")?;
    let dims: Vec<i64> =
        shape_text.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::parse).collect::<Result<_, _>>()?;
    let data = &bytes[start + header_len..];
    let n: usize = dims.iter().product::<i64>() as usize;
    Ok(match descr {
        "<i8" if data.len() >= n * 8 => Array::I64(
            dims,
            data.chunks_exact(8).take(n).map(|c| i64::from_le_bytes(c.try_into().unwrap_or_default())).collect(),
        ),
        "<i4" if data.len() >= n * 4 => Array::I64(
            dims,
            data.chunks_exact(4).take(n).map(|c| i32::from_le_bytes(c.try_into().unwrap_or_default()) as i64).collect(),
        ),
        "<f4" if data.len() >= n * 4 => Array::F32(
            dims,
            data.chunks_exact(4).take(n).map(|c| f32::from_le_bytes(c.try_into().unwrap_or_default())).collect(),
        ),
        other => {
            bail!("`{name}`: element type {other} (or a short payload) is not supported; use int64, int32 or float32")
        }
    })
}

/// Reads every array of an `.npz` (uncompressed, as `numpy.savez` writes).
pub fn read_npz(path: &Path) -> Result<HashMap<String, Array>> {
    let file = std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut zip =
        zip::ZipArchive::new(file).with_context(|| format!("{} is not an .npz (zip) file", path.display()))?;
    let mut out = HashMap::new();
    for i in 0..zip.len() {
        let mut entry = zip
            .by_index(i)
            .with_context(|| format!("{}: entry {i} cannot be read (compressed? use numpy.savez)", path.display()))?;
        let name = entry.name().trim_end_matches(".npy").to_string();
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes)?;
        out.insert(name.clone(), parse_npy(&bytes, &name)?);
    }
    Ok(out)
}

/// Runs `model` on the calibration arrays and returns, for each probe, the sum
/// of squares of each position of its last axis.
pub fn activation_energy(
    env: &ort::environment::Environment,
    model: &Model,
    probes: &[ValueId],
    data: &HashMap<String, Array>,
) -> Result<HashMap<ValueId, Vec<f64>>> {
    let mut m = model.clone();
    for &v in probes {
        if !m.graph.outputs.contains(&v) {
            m.graph.outputs.push(v);
        }
    }
    let proof = ecospac_ir::verify(&m.graph).map_err(|e| anyhow::anyhow!("{e}"))?;
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("probed.onnx");
    ecospac_backends::export_onnx(&m, proof, &path, &Default::default())?;
    let mut session = Session::builder(env)
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .commit_from_file(&path)
        .map_err(|e| anyhow::anyhow!("ONNX Runtime cannot load the probed model: {e}"))?;
    let mut feeds: Vec<(Cow<'_, str>, ort::session::SessionInputValue<'_>)> = Vec::new();
    for &v in &model.graph.inputs {
        let name = &model.graph.value(v).name;
        let value: DynValue =
            match data.get(name).with_context(|| format!("the calibration data has no array `{name}`"))? {
                Array::I64(d, x) => OrtTensor::from_array((d.clone(), x.clone())).map(|t| t.into_dyn()),
                Array::F32(d, x) => OrtTensor::from_array((d.clone(), x.clone())).map(|t| t.into_dyn()),
            }
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        feeds.push((Cow::Owned(name.clone()), value.into()));
    }
    let outputs = session.run(feeds).map_err(|e| anyhow::anyhow!("calibration run failed: {e}"))?;
    let mut energy = HashMap::new();
    for &v in probes {
        let name = &model.graph.value(v).name;
        let (shape, x) =
            outputs[name.as_str()].try_extract_tensor::<f32>().map_err(|e| anyhow::anyhow!("{name}: {e}"))?;
        let n = shape.last().copied().unwrap_or(1).max(1) as usize;
        let mut e = vec![0.0f64; n];
        for (k, &val) in x.iter().enumerate() {
            e[k % n] += (val as f64) * (val as f64);
        }
        energy.insert(v, e);
    }
    Ok(energy)
}

/// Tokenizes one text per non-empty line with a model's `tokenizer.json`,
/// padded or truncated to `length` tokens, into the arrays a text model takes
/// (`input_ids`, `attention_mask`, `token_type_ids`, for those of `model`'s inputs).
pub fn read_text(text: &Path, tokenizer: &Path, length: usize, model: &Model) -> Result<HashMap<String, Array>> {
    use tokenizers::{PaddingParams, PaddingStrategy, Tokenizer, TruncationParams};
    let lines: Vec<String> = std::fs::read_to_string(text)
        .with_context(|| format!("cannot read {}", text.display()))?
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect();
    if lines.is_empty() {
        bail!("{} has no text", text.display());
    }
    let mut tok =
        Tokenizer::from_file(tokenizer).map_err(|e| anyhow::anyhow!("cannot load {}: {e}", tokenizer.display()))?;
    let pad_id = tok.token_to_id("[PAD]").or_else(|| tok.token_to_id("<pad>")).unwrap_or(0);
    tok.with_padding(Some(PaddingParams { strategy: PaddingStrategy::Fixed(length), pad_id, ..Default::default() }));
    tok.with_truncation(Some(TruncationParams { max_length: length, ..Default::default() }))
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let enc =
        tok.encode_batch(lines.clone(), true).map_err(|e| anyhow::anyhow!("tokenizing {}: {e}", text.display()))?;
    let dims = vec![enc.len() as i64, length as i64];
    let collect = |f: &dyn Fn(&tokenizers::Encoding) -> Vec<u32>| -> Vec<i64> {
        enc.iter().flat_map(|e| f(e).into_iter().map(i64::from)).collect()
    };
    let mut out = HashMap::new();
    for &v in &model.graph.inputs {
        let name = model.graph.value(v).name.as_str();
        let values = match name {
            "input_ids" => collect(&|e| e.get_ids().to_vec()),
            "attention_mask" => collect(&|e| e.get_attention_mask().to_vec()),
            "token_type_ids" => collect(&|e| e.get_type_ids().to_vec()),
            other => bail!("cannot make input `{other}` from text; give --calibration FILE.npz instead"),
        };
        out.insert(name.to_string(), Array::I64(dims.clone(), values));
    }
    Ok(out)
}
