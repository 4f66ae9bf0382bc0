//! Element types, dimensions with symbols, and tensor types.

use crate::ids::SymId;
use std::fmt;

/// ONNX element types (the `TensorProto.DataType` numbering).
#[derive(Copy, Clone, PartialEq, Eq, Hash, Debug)]
pub enum DType {
    /// 32-bit float.
    F32,
    /// 64-bit float.
    F64,
    /// IEEE half.
    F16,
    /// bfloat16.
    BF16,
    /// Signed 8-bit integer.
    I8,
    /// Signed 16-bit integer.
    I16,
    /// Signed 32-bit integer.
    I32,
    /// Signed 64-bit integer.
    I64,
    /// Unsigned 8-bit integer.
    U8,
    /// Unsigned 16-bit integer.
    U16,
    /// Unsigned 32-bit integer.
    U32,
    /// Unsigned 64-bit integer.
    U64,
    /// Boolean, one byte each.
    Bool,
    /// Variable-length string.
    String,
    /// Any other ONNX type code (float8, int4, complex, ...), carried through unchanged.
    Other(i32),
}

impl DType {
    /// Maps an ONNX `DataType` code.
    pub fn from_onnx(code: i32) -> DType {
        match code {
            1 => DType::F32,
            2 => DType::U8,
            3 => DType::I8,
            4 => DType::U16,
            5 => DType::I16,
            6 => DType::I32,
            7 => DType::I64,
            8 => DType::String,
            9 => DType::Bool,
            10 => DType::F16,
            11 => DType::F64,
            12 => DType::U32,
            13 => DType::U64,
            16 => DType::BF16,
            other => DType::Other(other),
        }
    }

    /// The ONNX `DataType` code.
    pub fn onnx_code(self) -> i32 {
        match self {
            DType::F32 => 1,
            DType::U8 => 2,
            DType::I8 => 3,
            DType::U16 => 4,
            DType::I16 => 5,
            DType::I32 => 6,
            DType::I64 => 7,
            DType::String => 8,
            DType::Bool => 9,
            DType::F16 => 10,
            DType::F64 => 11,
            DType::U32 => 12,
            DType::U64 => 13,
            DType::BF16 => 16,
            DType::Other(code) => code,
        }
    }

    /// Bytes per element, or `None` for strings and types without a whole-byte size.
    pub fn size(self) -> Option<usize> {
        Some(match self {
            DType::F64 | DType::I64 | DType::U64 => 8,
            DType::F32 | DType::I32 | DType::U32 => 4,
            DType::F16 | DType::BF16 | DType::I16 | DType::U16 => 2,
            DType::I8 | DType::U8 | DType::Bool => 1,
            DType::Other(17..=20) => 1, // float8 variants
            DType::Other(14) => 8,      // complex64
            DType::Other(15) => 16,     // complex128
            DType::String | DType::Other(_) => return None,
        })
    }

    /// True for the floating-point types ecospac computes with.
    pub fn is_float(self) -> bool {
        matches!(self, DType::F32 | DType::F64 | DType::F16 | DType::BF16)
    }

    /// The name used in the text form.
    pub fn name(self) -> String {
        match self {
            DType::F32 => "f32".into(),
            DType::F64 => "f64".into(),
            DType::F16 => "f16".into(),
            DType::BF16 => "bf16".into(),
            DType::I8 => "i8".into(),
            DType::I16 => "i16".into(),
            DType::I32 => "i32".into(),
            DType::I64 => "i64".into(),
            DType::U8 => "u8".into(),
            DType::U16 => "u16".into(),
            DType::U32 => "u32".into(),
            DType::U64 => "u64".into(),
            DType::Bool => "bool".into(),
            DType::String => "string".into(),
            DType::Other(code) => format!("dtype{code}"),
        }
    }

    /// Parses a name written by [`DType::name`].
    pub fn from_name(name: &str) -> Option<DType> {
        Some(match name {
            "f32" => DType::F32,
            "f64" => DType::F64,
            "f16" => DType::F16,
            "bf16" => DType::BF16,
            "i8" => DType::I8,
            "i16" => DType::I16,
            "i32" => DType::I32,
            "i64" => DType::I64,
            "u8" => DType::U8,
            "u16" => DType::U16,
            "u32" => DType::U32,
            "u64" => DType::U64,
            "bool" => DType::Bool,
            "string" => DType::String,
            other => DType::Other(other.strip_prefix("dtype")?.parse().ok()?),
        })
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

/// A dimension: an integer coefficient times a product of symbols (`batch*seq*12`).
///
/// Monomials are closed under the products and exact quotients that reshapes
/// of transformer graphs perform (`batch*seq` ↔ `batch, seq`; `384` ↔ `12, 32`).
#[derive(Clone, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
pub struct Dim {
    coeff: i64,
    syms: Vec<SymId>,
}

impl Dim {
    /// A known size.
    pub fn known(n: i64) -> Dim {
        Dim { coeff: n, syms: Vec::new() }
    }
    /// A single symbol.
    pub fn sym(s: SymId) -> Dim {
        Dim { coeff: 1, syms: vec![s] }
    }
    /// The size when it has no symbols.
    pub fn as_known(&self) -> Option<i64> {
        self.syms.is_empty().then_some(self.coeff)
    }
    /// The integer coefficient.
    pub fn coeff(&self) -> i64 {
        self.coeff
    }
    /// The symbols, sorted.
    pub fn syms(&self) -> &[SymId] {
        &self.syms
    }
    /// The product of two dimensions.
    pub fn mul(&self, other: &Dim) -> Dim {
        let mut syms = self.syms.clone();
        syms.extend_from_slice(&other.syms);
        syms.sort();
        let coeff = if syms.is_empty() || self.coeff.checked_mul(other.coeff).is_some() {
            self.coeff.saturating_mul(other.coeff)
        } else {
            self.coeff
        };
        Dim { coeff, syms }
    }
    /// The exact quotient, when `other` divides `self`.
    pub fn div_exact(&self, other: &Dim) -> Option<Dim> {
        if self.coeff.checked_rem(other.coeff)? != 0 {
            return None;
        }
        let mut syms = self.syms.clone();
        for s in &other.syms {
            let pos = syms.iter().position(|x| x == s)?;
            syms.remove(pos);
        }
        Some(Dim { coeff: self.coeff.checked_div(other.coeff)?, syms })
    }
    /// The sum, when both are known sizes.
    pub fn add_known(&self, other: &Dim) -> Option<Dim> {
        Some(Dim::known(self.as_known()?.checked_add(other.as_known()?)?))
    }
    /// Writes the dimension with symbol names from `names`.
    pub fn display<'a>(&'a self, names: &'a dyn Fn(SymId) -> String) -> impl fmt::Display + 'a {
        DimDisplay { dim: self, names }
    }
}

struct DimDisplay<'a> {
    dim: &'a Dim,
    names: &'a dyn Fn(SymId) -> String,
}

impl fmt::Display for DimDisplay<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        if self.dim.coeff != 1 || self.dim.syms.is_empty() {
            write!(f, "{}", self.dim.coeff)?;
            first = false;
        }
        for s in &self.dim.syms {
            if !first {
                f.write_str("*")?;
            }
            f.write_str(&(self.names)(*s))?;
            first = false;
        }
        Ok(())
    }
}

/// The type of a tensor value: element type and, when known, its shape.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct TensorTy {
    /// Element type.
    pub dtype: DType,
    /// Dimensions, or `None` when even the rank is unknown.
    pub shape: Option<Vec<Dim>>,
}

impl TensorTy {
    /// A type with a known shape.
    pub fn new(dtype: DType, shape: Vec<Dim>) -> TensorTy {
        TensorTy { dtype, shape: Some(shape) }
    }
    /// A type of known sizes.
    pub fn known(dtype: DType, dims: &[i64]) -> TensorTy {
        TensorTy::new(dtype, dims.iter().map(|&d| Dim::known(d)).collect())
    }
    /// The rank, when known.
    pub fn rank(&self) -> Option<usize> {
        self.shape.as_ref().map(Vec::len)
    }
    /// The number of elements, when every dimension is known.
    pub fn numel(&self) -> Option<i64> {
        self.shape.as_ref()?.iter().try_fold(1i64, |acc, d| acc.checked_mul(d.as_known()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::EntityId;

    #[test]
    fn monomials_multiply_and_divide_exactly() {
        let (b, s) = (SymId::new(0), SymId::new(1));
        let bs = Dim::sym(b).mul(&Dim::sym(s)).mul(&Dim::known(12));
        assert_eq!(bs.div_exact(&Dim::sym(s)), Some(Dim::sym(b).mul(&Dim::known(12))));
        assert_eq!(bs.div_exact(&Dim::known(5)), None);
        assert_eq!(Dim::known(384).div_exact(&Dim::known(12)), Some(Dim::known(32)));
        assert_eq!(Dim::sym(b).div_exact(&Dim::sym(s)), None);
    }
}
