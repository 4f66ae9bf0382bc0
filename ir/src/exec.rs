//! Running a model on data, for the analyses that need activations
//! (calibration statistics, refitting weights) without knowing which engine
//! runs it: a backend implements [`Executor`] (ONNX Runtime, libtorch), and the
//! passes call it.
//!
//! A session returns the graph's outputs in order, as tensors of their own
//! type; the caller builds a model whose outputs are exactly what it wants to
//! read, and decodes float outputs with [`Array::of`].

use crate::graph::Model;
use crate::tensor::Tensor;
use crate::ty::DType;

/// Named inputs of one run: one tensor per graph input, the first axis being
/// the samples of the batch.
pub type Batch = Vec<(String, Tensor)>;

/// One output of a run, as `f32` in row-major order.
#[derive(Clone, Debug, PartialEq)]
pub struct Array {
    /// Dimensions.
    pub dims: Vec<usize>,
    /// Elements.
    pub data: Vec<f32>,
}

impl Array {
    /// The values of a float tensor as `f32` (`None` for other types).
    pub fn of(t: &Tensor) -> Option<Array> {
        let dims = t.dims.iter().map(|&d| d.max(0) as usize).collect();
        let data = match t.dtype {
            DType::F32 => t.bytes().chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect(),
            d if d.is_float() => t.to_f64s()?.into_iter().map(|x| x as f32).collect(),
            _ => return None,
        };
        Some(Array { dims, data })
    }
    /// The size of the last axis (1 for a scalar).
    pub fn last_dim(&self) -> usize {
        self.dims.last().copied().unwrap_or(1).max(1)
    }
    /// Rows of the last axis: the array seen as `[rows, last_dim]`.
    pub fn rows(&self) -> usize {
        self.data.len() / self.last_dim()
    }
}

/// Why a run failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ExecError(pub String);

/// An engine that can run models.
pub trait Executor {
    /// Prepares `model` (which must verify) for running.
    fn load(&self, model: &Model) -> Result<Box<dyn Session + '_>, ExecError>;
}

/// A model ready to run.
pub trait Session {
    /// Runs one batch; returns the graph outputs in order. Feeds the model
    /// does not take are ignored.
    fn run(&mut self, feeds: &Batch) -> Result<Vec<Tensor>, ExecError>;
}

/// Splits whole-dataset arrays (first axis = samples) into batches of at most
/// `rows` samples. Arrays must agree on the sample count.
///
/// ```
/// use ecospac_ir::exec::split_batches;
/// use ecospac_ir::Tensor;
/// let ids = Tensor::from_i64s(vec![3, 2], &[1, 2, 3, 4, 5, 6]);
/// let batches = split_batches(&[("input_ids".to_string(), ids)], 2).unwrap();
/// assert_eq!(batches.len(), 2);
/// assert_eq!(batches[1][0].1.dims, vec![1, 2]);
/// ```
pub fn split_batches(arrays: &[(String, Tensor)], rows: usize) -> Result<Vec<Batch>, ExecError> {
    let Some((_, first)) = arrays.first() else { return Ok(Vec::new()) };
    let n = *first.dims.first().ok_or_else(|| ExecError("a calibration array is a scalar".into()))?;
    for (name, t) in arrays {
        if t.dims.first() != Some(&n) {
            return Err(ExecError(format!("calibration array `{name}` has {:?} samples, others {n}", t.dims.first())));
        }
        t.check_size().map_err(|e| ExecError(format!("calibration array `{name}`: {e}")))?;
    }
    let n = usize::try_from(n).map_err(|_| ExecError("negative sample count".into()))?;
    let rows = rows.max(1);
    let mut out = Vec::new();
    let mut start = 0;
    while start < n {
        let take = rows.min(n - start);
        let batch = arrays
            .iter()
            .map(|(name, t)| {
                let row_bytes = t.bytes().len() / n;
                let bytes = t.bytes()[start * row_bytes..(start + take) * row_bytes].to_vec();
                let mut dims = t.dims.clone();
                dims[0] = take as i64;
                (name.clone(), Tensor::from_bytes(t.dtype, dims, bytes))
            })
            .collect();
        out.push(batch);
        start += take;
    }
    Ok(out)
}

/// `batches` as `exec` runs `model` on them: as they are, or one sample per
/// batch when the first batch fails where its first sample alone runs (some
/// graphs run on one sample only: ONNX Runtime's optimizer computes a fused
/// `RotaryEmbedding`'s positions for one). Returns the batches and whether
/// they were split. Where the model fails either way they are returned as
/// they are, for the run that needs them to report why.
pub fn runnable_batches(exec: &dyn Executor, model: &Model, batches: Vec<Batch>) -> (Vec<Batch>, bool) {
    let Some(first) = batches.first().filter(|b| batch_rows(b) > 1) else { return (batches, false) };
    let Ok(mut session) = exec.load(model) else { return (batches, false) };
    if session.run(first).is_ok() {
        return (batches, false);
    }
    let Ok(one) = split_batches(first, 1) else { return (batches, false) };
    if one.first().is_none_or(|b| session.run(b).is_err()) {
        return (batches, false);
    }
    match batches.iter().map(|b| split_batches(b, 1)).collect::<Result<Vec<_>, _>>() {
        Ok(rows) => (rows.into_iter().flatten().collect(), true),
        Err(_) => (batches, false),
    }
}

/// The number of samples (first axis) of a batch.
pub fn batch_rows(batch: &Batch) -> usize {
    batch.first().and_then(|(_, t)| t.dims.first()).map_or(0, |&d| d.max(0) as usize)
}
