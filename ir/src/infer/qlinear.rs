//! Inference of the quantised operator format ([`QLinear`]): the float op's
//! shapes on the data inputs, the output's type from its zero point.

use super::{err, infer, Fact, InferError, SymSource};
use crate::op::QLinear;
use crate::ty::{DType, TensorTy};

/// The output facts of a `QLinear` node.
pub(super) fn qlinear(q: &QLinear, inputs: &[Option<Fact>], syms: &mut dyn SymSource) -> Result<Vec<Fact>, InferError> {
    let name = q.op_type();
    let at = |i: usize| inputs.get(i).and_then(Option::as_ref).and_then(|f| f.ty.as_ref());
    let data = q.data_inputs(inputs.len());
    if matches!(q, QLinear::Concat { .. }) && (inputs.len() < 5 || !(inputs.len() - 2).is_multiple_of(3)) {
        return err(format!("{name}: {} inputs are not the output's scale and zero point then triples", inputs.len()));
    }
    // The data as float, for the float op's shapes.
    let mut float = Vec::with_capacity(data.len());
    for &i in &data {
        let t = at(i);
        match (q.params_of(i), t.map(|t| t.dtype)) {
            (Some(_), Some(d)) if !matches!(d, DType::U8 | DType::I8) => {
                return err(format!("{name}: input {i} is {d}, not int8 or uint8"))
            }
            (None, Some(d)) if d != DType::I32 => {
                return err(format!("{name}: the bias (input {i}) is {d}, not int32"))
            }
            _ => {}
        }
        float.push(Some(Fact::of_ty(t.map(|t| TensorTy { dtype: DType::F32, shape: t.shape.clone() }))));
    }
    // Scales and zero points: one element, or one per column of B (the
    // products' weight).
    let (y_scale, y_zp) = q.output_params();
    let params = data.iter().filter_map(|&i| q.params_of(i)).flat_map(|(s, z)| [s, z]).chain([y_scale, y_zp]);
    let b = at(3).and_then(|t| t.shape.as_deref());
    for i in params {
        let Some(shape) = at(i).and_then(|t| t.shape.as_deref()) else { continue };
        let axis = q.column_axis(i, b.map_or(2, <[_]>::len));
        let columns = axis.and_then(|a| b?.get(a)?.as_known());
        match shape {
            [] => {}
            [n] if n.as_known() == Some(1) => {}
            [n] if axis.is_some() && columns.is_none_or(|c| n.as_known().is_none_or(|n| n == c)) => {}
            s => {
                return err(format!(
                    "{name}: scale or zero point {i} of shape {s:?} is neither per tensor nor per column of B"
                ))
            }
        }
    }
    let out = infer(&q.float_op(), &float, 1, syms)?;
    let shape = out.into_iter().next().and_then(|f| f.ty).and_then(|t| t.shape);
    // Omitted (not merely untyped) inputs: without an output scale QGemm's
    // output is float; without a zero point the codes are uint8.
    let given = |i: usize| inputs.get(i).is_some_and(Option::is_some);
    let dtype = match q {
        QLinear::Gemm { .. } if !given(y_scale) => Some(DType::F32),
        _ if !given(y_zp) => Some(DType::U8),
        _ => at(y_zp).map(|t| t.dtype),
    };
    Ok(vec![Fact::of_ty(dtype.map(|dtype| TensorTy { dtype, shape }))])
}
