//! Constant tensors (weights, shape constants) without needless copies.

use crate::ty::DType;
use memmap2::Mmap;
use std::sync::Arc;

/// Where a tensor's bytes live.
#[derive(Clone, Debug)]
pub enum Storage {
    /// Bytes owned by the IR (decoded from the model file or computed by a pass).
    Owned(Arc<Vec<u8>>),
    /// A window of a memory-mapped file (external data, safetensors).
    Mapped {
        /// The mapping, shared by every tensor of the file.
        map: Arc<Mmap>,
        /// Start of the window.
        offset: usize,
        /// Length of the window in bytes.
        len: usize,
    },
}

impl Storage {
    /// The bytes, little-endian as ONNX stores them.
    pub fn bytes(&self) -> &[u8] {
        match self {
            Storage::Owned(v) => v,
            Storage::Mapped { map, offset, len } => &map[*offset..*offset + *len],
        }
    }
}

/// How the source file encoded the data, so a round trip keeps it.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum DataLayout {
    /// One packed little-endian byte string (`raw_data`).
    Raw,
    /// ONNX's typed repeated fields (`float_data`, `int64_data`, ...).
    Typed,
}

/// Encoded source message kept opaque by the IR so a backend can write back
/// what the IR does not model (names, doc strings, unknown fields).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin(pub Vec<u8>);

/// A constant tensor.
#[derive(Clone, Debug)]
pub struct Tensor {
    /// Element type.
    pub dtype: DType,
    /// Dimensions (all known).
    pub dims: Vec<i64>,
    /// The data.
    pub storage: Storage,
    /// How the source encoded the data.
    pub layout: DataLayout,
    /// The source message without its data, when imported.
    pub origin: Option<Origin>,
}

/// A tensor whose byte length disagrees with its type and shape.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.describe())]
pub struct SizeMismatch {
    /// Element type.
    pub dtype: DType,
    /// Dimensions.
    pub dims: Vec<i64>,
    /// Bytes implied by type and shape (`u128::MAX`: more than can be counted).
    pub expected: u128,
    /// Bytes present.
    pub actual: usize,
}

impl SizeMismatch {
    fn describe(&self) -> String {
        let (t, d) = (self.dtype, &self.dims);
        if d.iter().any(|&x| x < 0) {
            format!("{t}{d:?} has a negative dimension")
        } else if self.expected == u128::MAX {
            format!("{t}{d:?} has more elements than any file can hold")
        } else {
            format!("{t}{d:?} needs {} bytes but {} are present", self.expected, self.actual)
        }
    }
}

/// Tensors are equal when type, shape and bytes are (storage and source record aside).
impl PartialEq for Tensor {
    fn eq(&self, other: &Tensor) -> bool {
        self.dtype == other.dtype && self.dims == other.dims && self.bytes() == other.bytes()
    }
}

impl Tensor {
    /// A tensor owning its bytes.
    pub fn from_bytes(dtype: DType, dims: Vec<i64>, bytes: Vec<u8>) -> Tensor {
        Tensor { dtype, dims, storage: Storage::Owned(Arc::new(bytes)), layout: DataLayout::Raw, origin: None }
    }
    /// A 1-D or scalar int64 tensor.
    pub fn from_i64s(dims: Vec<i64>, values: &[i64]) -> Tensor {
        Tensor::from_bytes(DType::I64, dims, values.iter().flat_map(|v| v.to_le_bytes()).collect())
    }
    /// A float32 tensor.
    pub fn from_f32s(dims: Vec<i64>, values: &[f32]) -> Tensor {
        Tensor::from_bytes(DType::F32, dims, values.iter().flat_map(|v| v.to_le_bytes()).collect())
    }
    /// The bytes.
    pub fn bytes(&self) -> &[u8] {
        self.storage.bytes()
    }
    /// Number of elements (negative dims count as 0; `u128::MAX` when the
    /// product overflows).
    pub fn numel(&self) -> u128 {
        numel(&self.dims)
    }
    /// Checks that the byte length matches type and shape (skipped for types without a byte size).
    pub fn check_size(&self) -> Result<(), SizeMismatch> {
        let Some(size) = self.dtype.size() else {
            return Ok(());
        };
        let expected = self.numel().saturating_mul(size as u128);
        if self.dims.iter().any(|&d| d < 0) || expected != self.bytes().len() as u128 {
            return Err(SizeMismatch {
                dtype: self.dtype,
                dims: self.dims.clone(),
                expected,
                actual: self.bytes().len(),
            });
        }
        Ok(())
    }
    /// The elements as integers, for integer and bool tensors.
    pub fn to_i64s(&self) -> Option<Vec<i64>> {
        let b = self.bytes();
        let out = match self.dtype {
            DType::I64 => b.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().unwrap_or_default())).collect(),
            DType::I32 => {
                b.chunks_exact(4).map(|c| i32::from_le_bytes(c.try_into().unwrap_or_default()) as i64).collect()
            }
            DType::I16 => {
                b.chunks_exact(2).map(|c| i16::from_le_bytes(c.try_into().unwrap_or_default()) as i64).collect()
            }
            DType::U32 => {
                b.chunks_exact(4).map(|c| u32::from_le_bytes(c.try_into().unwrap_or_default()) as i64).collect()
            }
            DType::I8 => b.iter().map(|&x| x as i8 as i64).collect(),
            DType::U8 | DType::Bool => b.iter().map(|&x| x as i64).collect(),
            _ => return None,
        };
        Some(out)
    }
    /// The elements as f64, for float tensors (f32, f64, f16, bf16).
    pub fn to_f64s(&self) -> Option<Vec<f64>> {
        let b = self.bytes();
        let out = match self.dtype {
            DType::F32 => {
                b.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap_or_default()) as f64).collect()
            }
            DType::F64 => b.chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().unwrap_or_default())).collect(),
            DType::F16 => b.chunks_exact(2).map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f64()).collect(),
            DType::BF16 => b.chunks_exact(2).map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f64()).collect(),
            _ => return None,
        };
        Some(out)
    }
}

/// `t`'s values as a float tensor of type `to` (f32, f64, f16 or bf16); `None`
/// when either type is not one of these.
pub fn cast_float(t: &Tensor, to: DType) -> Option<Tensor> {
    let vals = t.to_f64s()?;
    let bytes: Vec<u8> = match to {
        DType::F32 => vals.iter().flat_map(|&v| (v as f32).to_le_bytes()).collect(),
        DType::F64 => vals.iter().flat_map(|&v| v.to_le_bytes()).collect(),
        DType::F16 => vals.iter().flat_map(|&v| half::f16::from_f64(v).to_le_bytes()).collect(),
        DType::BF16 => vals.iter().flat_map(|&v| half::bf16::from_f64(v).to_le_bytes()).collect(),
        _ => return None,
    };
    Some(Tensor::from_bytes(to, t.dims.clone(), bytes))
}

/// The element count of `dims` (negative dims count as 0; `u128::MAX` when the
/// product overflows).
///
/// ```
/// assert_eq!(ecospac_ir::tensor::numel(&[2, 3]), 6);
/// assert_eq!(ecospac_ir::tensor::numel(&[1 << 62, 1 << 62, 1 << 62]), u128::MAX);
/// assert_eq!(ecospac_ir::tensor::numel(&[1 << 62, 1 << 62, 1 << 62, 0]), 0);
/// ```
pub fn numel(dims: &[i64]) -> u128 {
    if dims.iter().any(|&d| d <= 0) {
        return 0;
    }
    dims.iter().try_fold(1u128, |p, &d| p.checked_mul(d as u128)).unwrap_or(u128::MAX)
}
