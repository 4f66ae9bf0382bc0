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
    /// Whole-dataset arrays that disagree on their samples.
    #[error("data arrays: {0}")]
    Arrays(String),
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

/// The samples `rows` (indices on the first axis) of whole-dataset `arrays`, in that order.
///
/// ```
/// use ecospac_ir::Tensor;
/// let ids = Tensor::from_i64s(vec![3, 2], &[1, 2, 3, 4, 5, 6]);
/// let picked = ecospac_frontends::data::select_rows(&[("input_ids".into(), ids)], &[2, 0]).unwrap();
/// assert_eq!(picked[0].1.to_i64s().unwrap(), [5, 6, 1, 2]);
/// ```
pub fn select_rows(arrays: &[(String, Tensor)], rows: &[usize]) -> Result<Vec<(String, Tensor)>, DataError> {
    arrays.iter().map(|(name, t)| Ok((name.clone(), gather(name, t, rows, None)?))).collect()
}

/// Batches of `batch` samples, each `padding` columns longer than its
/// longest text (at most as long as the arrays): within every run of
/// `batch × window` consecutive samples (shuffle them first), the samples
/// are sorted by their length (the last real position of `attention_mask`)
/// and cut into batches, and the other padding columns are dropped from the
/// batch's `[samples, length]` arrays. Each sample's real positions are as
/// they were; only padding goes.
/// Without an `attention_mask` the batches are [`split_batches`]'s.
///
/// [`split_batches`]: ecospac_ir::exec::split_batches
///
/// ```
/// use ecospac_ir::Tensor;
/// let ids = Tensor::from_i64s(vec![4, 4], &[1, 7, 2, 0, 1, 2, 0, 0, 1, 7, 7, 2, 1, 2, 0, 0]);
/// let mask = Tensor::from_i64s(vec![4, 4], &[1, 1, 1, 0, 1, 1, 0, 0, 1, 1, 1, 1, 1, 1, 0, 0]);
/// let arrays = [("input_ids".to_string(), ids), ("attention_mask".to_string(), mask)];
/// let batches = ecospac_frontends::data::length_grouped_batches(&arrays, 2, 2, 0).unwrap();
/// // The two texts of two tokens, then those of three and four.
/// assert_eq!(batches[0][0].1.dims, [2, 2]);
/// assert_eq!(batches[0][0].1.to_i64s().unwrap(), [1, 2, 1, 2]);
/// assert_eq!(batches[1][0].1.to_i64s().unwrap(), [1, 7, 2, 0, 1, 7, 7, 2]);
/// // With a column of padding kept (where there is one).
/// let padded = ecospac_frontends::data::length_grouped_batches(&arrays, 2, 2, 1).unwrap();
/// assert_eq!(padded[0][1].1.to_i64s().unwrap(), [1, 1, 0, 1, 1, 0]);
/// assert_eq!(padded[1][1].1.dims, [2, 4]);
/// ```
pub fn length_grouped_batches(
    arrays: &[(String, Tensor)],
    batch: usize,
    window: usize,
    padding: usize,
) -> Result<Vec<ecospac_ir::exec::Batch>, DataError> {
    let split = |a: &[(String, Tensor)]| {
        ecospac_ir::exec::split_batches(a, batch).map_err(|e| DataError::Arrays(e.to_string()))
    };
    let Some((_, mask)) = arrays.iter().find(|(n, t)| n == "attention_mask" && t.dims.len() == 2) else {
        return split(arrays);
    };
    let (n, width) = (usize::try_from(mask.dims[0]).unwrap_or(0), usize::try_from(mask.dims[1]).unwrap_or(0));
    let values = mask.to_i64s().ok_or_else(|| DataError::Arrays(format!("attention_mask is {}", mask.dtype)))?;
    if n == 0 || width == 0 || n.checked_mul(width) != Some(values.len()) {
        return split(arrays);
    }
    let lengths: Vec<usize> =
        values.chunks(width).map(|row| row.iter().rposition(|&m| m != 0).map_or(0, |p| p + 1)).collect();
    let batch = batch.max(1);
    let mut out = Vec::new();
    for run in (0..n).collect::<Vec<_>>().chunks(batch.saturating_mul(window.max(1))) {
        let mut run = run.to_vec();
        run.sort_by_key(|&i| lengths[i]);
        for rows in run.chunks(batch) {
            let longest = rows.iter().map(|&i| lengths[i]).max().unwrap_or(width).max(1).saturating_add(padding);
            let b = arrays
                .iter()
                .map(|(name, t)| {
                    let cut = (t.dims == mask.dims).then_some(longest);
                    Ok((name.clone(), gather(name, t, rows, cut)?))
                })
                .collect::<Result<_, DataError>>()?;
            out.push(b);
        }
    }
    Ok(out)
}

/// Rows `rows` of `t` (first axis = samples), of a 2-D `t` only its first `columns` when given.
fn gather(name: &str, t: &Tensor, rows: &[usize], columns: Option<usize>) -> Result<Tensor, DataError> {
    let bad = |what: String| DataError::Arrays(format!("`{name}`: {what}"));
    t.check_size().map_err(|e| bad(e.to_string()))?;
    let n = t.dims.first().and_then(|&d| usize::try_from(d).ok()).ok_or_else(|| bad("no sample axis".into()))?;
    if let Some(&r) = rows.iter().find(|&&r| r >= n) {
        return Err(bad(format!("sample {r} of {n}")));
    }
    let row_bytes = t.bytes().len().checked_div(n).unwrap_or(0);
    let (keep, cols) = match (columns, t.dims.get(1).and_then(|&d| usize::try_from(d).ok())) {
        (Some(c), Some(w)) if t.dims.len() == 2 && w > 0 => (row_bytes / w * c.min(w), c.min(w) as i64),
        _ => (row_bytes, t.dims.get(1).copied().unwrap_or(0)),
    };
    let mut bytes = Vec::with_capacity(keep * rows.len());
    for &r in rows {
        bytes.extend_from_slice(&t.bytes()[r * row_bytes..r * row_bytes + keep]);
    }
    let mut dims = t.dims.clone();
    dims[0] = rows.len() as i64;
    if t.dims.len() == 2 {
        dims[1] = cols;
    }
    Ok(Tensor::from_bytes(t.dtype, dims, bytes))
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
