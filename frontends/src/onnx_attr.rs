//! Conversions of ONNX attribute and tensor messages into IR values.

use crate::onnx::ImportError;
use ecospac_ir::{Attr, DType, DataLayout, Origin, Tensor};
use onnx_protobuf::attribute_proto::AttributeType;
use onnx_protobuf::tensor_proto::DataLocation;
use onnx_protobuf::{AttributeProto, Message, TensorProto};

/// Converts an attribute. Simple kinds become typed [`Attr`]s; graphs, sparse
/// tensors, type protos and anything unusual are kept encoded.
pub fn attr_from_proto(a: &AttributeProto, owner: &str) -> Result<Attr, ImportError> {
    let plain = a.ref_attr_name.is_empty()
        && a.doc_string.is_empty()
        && a.special_fields.unknown_fields().iter().next().is_none();
    let encoded = || {
        a.write_to_bytes().map(Attr::Encoded).map_err(|e| ImportError::Decode {
            what: format!("attribute `{}` of {owner}", a.name),
            message: e.to_string(),
        })
    };
    if !plain {
        return encoded();
    }
    Ok(match a.type_.enum_value() {
        Ok(AttributeType::FLOAT) => Attr::Float(a.f),
        Ok(AttributeType::INT) => Attr::Int(a.i),
        Ok(AttributeType::STRING) => Attr::Str(a.s.clone()),
        Ok(AttributeType::FLOATS) => Attr::Floats(a.floats.clone()),
        Ok(AttributeType::INTS) => Attr::Ints(a.ints.clone()),
        Ok(AttributeType::STRINGS) => Attr::Strs(a.strings.clone()),
        Ok(AttributeType::TENSOR) => match a.t.as_ref() {
            Some(t) if t.data_location.enum_value() != Ok(DataLocation::EXTERNAL) && t.data_type != 8 => {
                Attr::Tensor(tensor_from_proto(t, &format!("attribute `{}` of {owner}", a.name), None)?)
            }
            _ => return encoded(),
        },
        _ => return encoded(),
    })
}

/// Moves or converts the in-message data of `t` into a [`Tensor`]. External data
/// must be resolved by the caller and passed as `external`.
pub fn tensor_from_proto(
    t: &TensorProto,
    what: &str,
    external: Option<ecospac_ir::Storage>,
) -> Result<Tensor, ImportError> {
    let mut t = t.clone();
    tensor_from_proto_owned(&mut t, what, external)
}

pub(crate) fn tensor_from_proto_owned(
    t: &mut TensorProto,
    what: &str,
    external: Option<ecospac_ir::Storage>,
) -> Result<Tensor, ImportError> {
    let dtype = DType::from_onnx(t.data_type);
    if dtype == DType::String || dtype.size().is_none() {
        return Err(ImportError::UnsupportedTensor {
            tensor: what.to_string(),
            reason: format!("element type {dtype} is not supported"),
        });
    }
    if t.segment.is_some() {
        return Err(ImportError::UnsupportedTensor {
            tensor: what.to_string(),
            reason: "segmented tensors are not supported".into(),
        });
    }
    let (storage, layout) = if let Some(s) = external {
        (s, DataLayout::Raw)
    } else if !t.raw_data.is_empty() || typed_len(t) == 0 {
        (ecospac_ir::Storage::Owned(std::sync::Arc::new(std::mem::take(&mut t.raw_data))), DataLayout::Raw)
    } else {
        let bytes = typed_to_bytes(t, dtype).ok_or_else(|| ImportError::UnsupportedTensor {
            tensor: what.to_string(),
            reason: format!("{dtype} data stored in a typed field this version cannot read"),
        })?;
        (ecospac_ir::Storage::Owned(std::sync::Arc::new(bytes)), DataLayout::Typed)
    };
    // What stays in the source record: everything but the data.
    t.raw_data.clear();
    t.float_data.clear();
    t.int32_data.clear();
    t.int64_data.clear();
    t.double_data.clear();
    t.uint64_data.clear();
    t.external_data.clear();
    t.data_location = DataLocation::DEFAULT.into();
    let origin =
        t.write_to_bytes().map_err(|e| ImportError::Decode { what: what.to_string(), message: e.to_string() })?;
    let tensor = Tensor { dtype, dims: t.dims.clone(), storage, layout, origin: Some(Origin(origin)) };
    tensor.check_size().map_err(|e| ImportError::DataSize { tensor: what.to_string(), detail: e })?;
    Ok(tensor)
}

fn typed_len(t: &TensorProto) -> usize {
    t.float_data.len() + t.int32_data.len() + t.int64_data.len() + t.double_data.len() + t.uint64_data.len()
}

fn typed_to_bytes(t: &TensorProto, dtype: DType) -> Option<Vec<u8>> {
    Some(match dtype {
        DType::F32 => t.float_data.iter().flat_map(|v| v.to_le_bytes()).collect(),
        DType::F64 => t.double_data.iter().flat_map(|v| v.to_le_bytes()).collect(),
        DType::I64 => t.int64_data.iter().flat_map(|v| v.to_le_bytes()).collect(),
        DType::I32 => t.int32_data.iter().flat_map(|v| v.to_le_bytes()).collect(),
        DType::I16 => t.int32_data.iter().flat_map(|&v| (v as i16).to_le_bytes()).collect(),
        DType::U16 | DType::F16 | DType::BF16 => t.int32_data.iter().flat_map(|&v| (v as u16).to_le_bytes()).collect(),
        DType::I8 | DType::U8 | DType::Bool => t.int32_data.iter().map(|&v| v as u8).collect(),
        DType::U32 => t.uint64_data.iter().flat_map(|&v| (v as u32).to_le_bytes()).collect(),
        DType::U64 => t.uint64_data.iter().flat_map(|v| v.to_le_bytes()).collect(),
        _ => return None,
    })
}
