//! Data for calibration and checks: `.npz` arrays (as `numpy.savez` or
//! `numpy.savez_compressed` write them), text tokenized with a model's
//! `tokenizer.json`, and the built-in English corpus.
//!
//! Every reader returns whole-dataset arrays (first axis = samples), named by
//! the model input they feed; [`ecospac_ir::exec::split_batches`] cuts them
//! into batches.

use ecospac_ir::{DType, Tensor};
use ndarray::{ArrayD, IxDyn, OwnedRepr};
use std::path::{Path, PathBuf};

/// The built-in calibration corpus: 450 English texts of 4 to 119 words
/// (quotations from Debian's `fortunes` and prose of the Python 3.11
/// documentation, `python3.11-doc`), made by `scripts/make_calibration_corpus.py`.
const CORPUS: &str = include_str!("../data/calibration-en.txt");

/// Why data could not be read.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// An `.npz` that is not one, or an array of a type ecospac cannot feed.
    #[error("{path}: {message}")]
    Npz {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A tokenizer that cannot be loaded or used.
    #[error("tokenizer {path}: {message}")]
    Tokenizer {
        /// The `tokenizer.json`.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A model input that text cannot produce.
    #[error("cannot make the model input `{0}` from text (text makes input_ids, attention_mask, token_type_ids, position_ids); give an .npz instead")]
    NotText(String),
    /// No texts.
    #[error("{0} has no text")]
    Empty(String),
}

/// The texts of the built-in corpus, in a fixed order.
///
/// ```
/// let texts = ecospac_frontends::data::builtin_corpus();
/// assert!(texts.len() >= 400);
/// assert!(texts.iter().all(|t| !t.is_empty()));
/// ```
pub fn builtin_corpus() -> Vec<&'static str> {
    CORPUS.lines().map(str::trim).filter(|l| !l.is_empty()).collect()
}

/// Reads every array of an `.npz`; integer arrays become int64, float arrays float32.
pub fn read_npz(path: &Path) -> Result<Vec<(String, Tensor)>, DataError> {
    let npz_err = |message: String| DataError::Npz { path: path.to_path_buf(), message };
    let file = std::fs::File::open(path).map_err(|source| DataError::Io { path: path.to_path_buf(), source })?;
    let mut npz = ndarray_npy::NpzReader::new(file).map_err(|e| npz_err(format!("not an .npz: {e}")))?;
    let mut names = npz.names().map_err(|e| npz_err(e.to_string()))?;
    names.sort();
    let mut out = Vec::new();
    for name in names {
        let key = name.trim_end_matches(".npy").to_string();
        let dims = |shape: &[usize]| shape.iter().map(|&d| d as i64).collect::<Vec<_>>();
        let tensor = if let Ok(a) = npz.by_name::<OwnedRepr<i64>, IxDyn>(&name) {
            Tensor::from_i64s(dims(a.shape()), &a.iter().copied().collect::<Vec<_>>())
        } else if let Ok(a) = npz.by_name::<OwnedRepr<i32>, IxDyn>(&name) {
            Tensor::from_i64s(dims(a.shape()), &a.iter().map(|&x| i64::from(x)).collect::<Vec<_>>())
        } else if let Ok(a) = npz.by_name::<OwnedRepr<f32>, IxDyn>(&name) {
            Tensor::from_f32s(dims(a.shape()), &a.iter().copied().collect::<Vec<_>>())
        } else if let Ok(a) = npz.by_name::<OwnedRepr<f64>, IxDyn>(&name) {
            Tensor::from_f32s(dims(a.shape()), &a.iter().map(|&x| x as f32).collect::<Vec<_>>())
        } else if let Ok(a) = npz.by_name::<OwnedRepr<bool>, IxDyn>(&name) {
            let bytes = a.iter().map(|&b| b as u8).collect();
            Tensor::from_bytes(DType::Bool, dims(a.shape()), bytes)
        } else {
            return Err(npz_err(format!(
                "array `{key}` is not int64, int32, float32, float64 or bool in C order (little-endian)"
            )));
        };
        out.push((key, tensor));
    }
    if out.is_empty() {
        return Err(npz_err("no arrays".into()));
    }
    Ok(out)
}

/// Writes arrays to an uncompressed `.npz` (integers as int64, floats as float32).
pub fn write_npz(path: &Path, arrays: &[(String, Tensor)]) -> Result<(), DataError> {
    let io = |source| DataError::Io { path: path.to_path_buf(), source };
    let npz_err = |message: String| DataError::Npz { path: path.to_path_buf(), message };
    let file = std::fs::File::create(path).map_err(io)?;
    let mut npz = ndarray_npy::NpzWriter::new(file);
    for (name, t) in arrays {
        let shape: Vec<usize> = t.dims.iter().map(|&d| d.max(0) as usize).collect();
        if let Some(v) = t.dtype.is_float().then(|| t.to_f64s()).flatten() {
            let a = ArrayD::from_shape_vec(shape, v.into_iter().map(|x| x as f32).collect())
                .map_err(|e| npz_err(e.to_string()))?;
            npz.add_array(name.as_str(), &a).map_err(|e| npz_err(e.to_string()))?;
        } else if let Some(v) = t.to_i64s() {
            let a = ArrayD::from_shape_vec(shape, v).map_err(|e| npz_err(e.to_string()))?;
            npz.add_array(name.as_str(), &a).map_err(|e| npz_err(e.to_string()))?;
        } else {
            return Err(npz_err(format!("array `{name}`: {} cannot be written", t.dtype)));
        }
    }
    npz.finish().map_err(|e| npz_err(e.to_string()))?;
    Ok(())
}

/// Tokenizes `texts` with `tokenizer` (a `tokenizer.json`), padded or truncated
/// to `length` tokens, into the arrays the named model `inputs` take.
pub fn tokenize(
    tokenizer: &Path,
    texts: &[&str],
    length: usize,
    inputs: &[String],
) -> Result<Vec<(String, Tensor)>, DataError> {
    use tokenizers::{PaddingParams, PaddingStrategy, Tokenizer, TruncationParams};
    let tok_err = |message: String| DataError::Tokenizer { path: tokenizer.to_path_buf(), message };
    if texts.is_empty() {
        return Err(DataError::Empty("the calibration text".into()));
    }
    let mut tok = Tokenizer::from_file(tokenizer).map_err(|e| tok_err(e.to_string()))?;
    let pad_id = ["[PAD]", "<pad>", "<|endoftext|>", "</s>"].iter().find_map(|t| tok.token_to_id(t)).unwrap_or(0);
    tok.with_padding(Some(PaddingParams { strategy: PaddingStrategy::Fixed(length), pad_id, ..Default::default() }));
    tok.with_truncation(Some(TruncationParams { max_length: length, ..Default::default() }))
        .map_err(|e| tok_err(e.to_string()))?;
    let enc = tok.encode_batch(texts.to_vec(), true).map_err(|e| tok_err(e.to_string()))?;
    let dims = vec![enc.len() as i64, length as i64];
    let collect = |f: &dyn Fn(&tokenizers::Encoding) -> Vec<i64>| -> Vec<i64> { enc.iter().flat_map(f).collect() };
    let mut out = Vec::new();
    for name in inputs {
        let values = match name.as_str() {
            "input_ids" => collect(&|e| e.get_ids().iter().map(|&x| i64::from(x)).collect()),
            "attention_mask" => collect(&|e| e.get_attention_mask().iter().map(|&x| i64::from(x)).collect()),
            "token_type_ids" => collect(&|e| e.get_type_ids().iter().map(|&x| i64::from(x)).collect()),
            "position_ids" => collect(&|_| (0..length as i64).collect()),
            other => return Err(DataError::NotText(other.to_string())),
        };
        out.push((name.clone(), Tensor::from_i64s(dims.clone(), &values)));
    }
    Ok(out)
}

/// Reads one text per non-empty line.
pub fn read_lines(path: &Path) -> Result<Vec<String>, DataError> {
    let text = std::fs::read_to_string(path).map_err(|source| DataError::Io { path: path.to_path_buf(), source })?;
    let lines: Vec<String> = text.lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_string).collect();
    if lines.is_empty() {
        return Err(DataError::Empty(path.display().to_string()));
    }
    Ok(lines)
}

/// `path` itself when it is a file, else every `.txt`, `.rst` and `.md`
/// file under the folder, sorted (none: empty).
pub fn text_files(path: &Path) -> Result<Vec<PathBuf>, DataError> {
    if path.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut files = Vec::new();
    let mut stack = vec![path.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let entries = std::fs::read_dir(&dir).map_err(|source| DataError::Io { path: dir.clone(), source })?;
        for p in entries.flatten().map(|e| e.path()) {
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "txt" || x == "rst" || x == "md") {
                files.push(p);
            }
        }
    }
    files.sort();
    Ok(files)
}

/// The paragraphs (blank-line separated, lines joined, at least three
/// words; in a file with no blank line, its lines) of a text file, or of
/// every `.txt`, `.rst` and `.md` file under a folder (in sorted order):
/// the texts that distillation and the calibration for it read.
///
/// ```
/// let dir = std::env::temp_dir().join("ecospac-doc-paragraphs");
/// std::fs::create_dir_all(&dir).unwrap();
/// std::fs::write(dir.join("a.txt"), "One two three.\n\nToo short\n\nA line\nand its next.").unwrap();
/// std::fs::write(dir.join("b.txt"), "A text a line.\nAnd another one.").unwrap();
/// let texts = ecospac_frontends::data::read_paragraphs(&dir).unwrap();
/// assert_eq!(texts, ["One two three.", "A line and its next.", "A text a line.", "And another one."]);
/// ```
pub fn read_paragraphs(path: &Path) -> Result<Vec<String>, DataError> {
    fn io(path: &Path) -> impl FnOnce(std::io::Error) -> DataError + '_ {
        move |source| DataError::Io { path: path.to_path_buf(), source }
    }
    let files = text_files(path)?;
    let mut out = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f).map_err(io(f))?;
        let text = text.replace("\r\n", "\n");
        let blocks: Vec<&str> =
            if text.contains("\n\n") { text.split("\n\n").collect() } else { text.lines().collect() };
        for p in blocks {
            let joined = p.split_whitespace().collect::<Vec<_>>().join(" ");
            if joined.split(' ').count() >= 3 {
                out.push(joined);
            }
        }
    }
    if out.is_empty() {
        return Err(DataError::Empty(path.display().to_string()));
    }
    Ok(out)
}
