//! ONNX export: [`Model`] → `ModelProto`, written atomically.
//!
//! Unchanged nodes, value infos and the model shell are written from their
//! source records, so a round trip changes nothing the pipeline did not touch.
//! Initializer data is streamed from the IR's storage (memory maps stay maps):
//! the writer never holds a second copy of the weights.

use ecospac_ir::{Attr, Attrs, DType, DataLayout, Graph, Model, Node, Tensor, TensorTy, ValueId, Verified};
use onnx_protobuf::attribute_proto::AttributeType;
use onnx_protobuf::tensor_proto::DataLocation;
use onnx_protobuf::tensor_shape_proto::{dimension, Dimension};
use onnx_protobuf::type_proto;
use onnx_protobuf::{
    AttributeProto, Message, ModelProto, NodeProto, OperatorSetIdProto, StringStringEntryProto, TensorProto,
    TensorShapeProto, TypeProto, ValueInfoProto,
};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// When weights go to a side file.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Default)]
pub enum ExternalData {
    /// Only when the model would exceed protobuf's 2 GB limit.
    #[default]
    Auto,
    /// Always (tensors of at least 1 KiB).
    Always,
    /// Never; a model over the limit is an error.
    Never,
}

/// Export settings.
#[derive(Clone, Debug, Default)]
pub struct ExportOptions {
    /// External data policy.
    pub external_data: ExternalData,
}

/// What was written.
#[derive(Clone, Debug)]
pub struct ExportReport {
    /// The model file.
    pub model_path: PathBuf,
    /// The side file, when one was written.
    pub data_path: Option<PathBuf>,
    /// Bytes of the model file.
    pub model_bytes: u64,
    /// Bytes of the side file.
    pub data_bytes: u64,
}

/// Why a model could not be written.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// The witness belongs to another graph.
    #[error("the verification witness does not belong to this model's graph")]
    NotVerified,
    /// Writing failed; nothing was left at the destination.
    #[error("cannot write {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A source record could not be decoded or a message encoded.
    #[error("cannot encode {what}: {message}")]
    Encode {
        /// What.
        what: String,
        /// The encoder's message.
        message: String,
    },
    /// The model exceeds 2 GB and external data was refused.
    #[error("the model needs {bytes} bytes, over protobuf's 2 GB limit; allow external data")]
    TooLarge {
        /// Estimated size.
        bytes: u64,
    },
}

const PROTO_LIMIT: u64 = (1 << 31) - (1 << 20);
const EXTERNAL_MIN_BYTES: usize = 1024;

fn enc<E: std::fmt::Display>(what: &str) -> impl FnOnce(E) -> ExportError + '_ {
    move |e| ExportError::Encode { what: what.to_string(), message: e.to_string() }
}

/// Writes `model` to `path` (temp file + rename). `proof` must come from
/// [`ecospac_ir::verify`] on `model.graph`.
pub fn export_onnx(
    model: &Model,
    proof: Verified<'_>,
    path: &Path,
    opts: &ExportOptions,
) -> Result<ExportReport, ExportError> {
    if !std::ptr::eq(proof.graph(), &model.graph) {
        return Err(ExportError::NotVerified);
    }
    let g = &model.graph;
    let mut shell = match &model.origin {
        Some(o) => ModelProto::parse_from_bytes(&o.0).map_err(enc("model shell"))?,
        None => ModelProto::new(),
    };
    let mut gp = shell.graph.take().unwrap_or_default();
    shell.ir_version = model.ir_version;
    let current: Vec<(String, i64)> = shell.opset_import.iter().map(|o| (o.domain.clone(), o.version)).collect();
    let wanted: Vec<(String, i64)> = model.opsets.iter().map(|o| (o.domain.clone(), o.version)).collect();
    if current != wanted {
        shell.opset_import = model
            .opsets
            .iter()
            .map(|o| OperatorSetIdProto { domain: o.domain.clone(), version: o.version, ..Default::default() })
            .collect();
    }
    gp.name = g.name.clone();
    gp.node = g.nodes().map(|(_, n)| node_proto(g, n)).collect::<Result<_, _>>()?;
    gp.input = g.inputs.iter().map(|&v| value_info(g, v, true)).collect::<Result<_, _>>()?;
    gp.output = g.outputs.iter().map(|&v| value_info(g, v, true)).collect::<Result<_, _>>()?;
    gp.value_info = g.value_info.iter().map(|&v| value_info(g, v, false)).collect::<Result<_, _>>()?;
    gp.initializer.clear();

    let data_bytes: u64 =
        g.initializers.iter().filter_map(|&v| g.value(v).constant.as_ref()).map(|t| t.bytes().len() as u64).sum();
    let external = match opts.external_data {
        ExternalData::Always => true,
        ExternalData::Never => false,
        ExternalData::Auto => data_bytes + gp.compute_size() + shell.compute_size() > PROTO_LIMIT,
    };
    let data_path = external.then(|| {
        let mut name = path.file_name().unwrap_or_default().to_os_string();
        name.push(".data");
        path.with_file_name(name)
    });
    let data_location = data_path.as_ref().and_then(|p| p.file_name()).map(|n| n.to_string_lossy().into_owned());

    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let io = |p: &Path| {
        let p = p.to_path_buf();
        move |source| ExportError::Io { path: p, source }
    };
    // Side file first: its tensors' offsets go into the model.
    let mut data_file = None;
    let mut offsets: Vec<Option<(u64, u64)>> = vec![None; g.initializers.len()];
    if let (Some(dp), Some(_)) = (&data_path, &data_location) {
        let tmp = staging_file(dir).map_err(io(dp))?;
        let mut w = BufWriter::with_capacity(1 << 20, tmp);
        let mut pos = 0u64;
        for (i, &v) in g.initializers.iter().enumerate() {
            let Some(t) = &g.value(v).constant else {
                continue;
            };
            let b = t.bytes();
            if b.len() < EXTERNAL_MIN_BYTES {
                continue;
            }
            let align = if b.len() >= 1 << 16 { 4096 } else { 64 };
            let pad = (align - pos % align) % align;
            w.write_all(&vec![0u8; pad as usize]).map_err(io(dp))?;
            pos += pad;
            w.write_all(b).map_err(io(dp))?;
            offsets[i] = Some((pos, b.len() as u64));
            pos += b.len() as u64;
        }
        let tmp = w.into_inner().map_err(|e| ExportError::Io { path: dp.clone(), source: e.into_error() })?;
        tmp.as_file().sync_all().map_err(io(dp))?;
        data_file = Some((tmp, pos));
    }

    // Encode: shell (without graph), then the graph field, whose initializers are streamed.
    let mut tensors: Vec<(Vec<u8>, Option<&[u8]>)> = Vec::with_capacity(g.initializers.len());
    for (i, &v) in g.initializers.iter().enumerate() {
        let value = g.value(v);
        let Some(t) = &value.constant else { continue };
        let (head, inline) = tensor_head(&value.name, t, offsets[i], data_location.as_deref())?;
        tensors.push((head, inline));
    }
    let graph_head = gp.write_to_bytes().map_err(enc("graph"))?;
    let mut graph_len = graph_head.len() as u64;
    for (head, inline) in &tensors {
        let body = head.len() as u64 + inline.map_or(0, |b| field_len(9, b.len() as u64));
        graph_len += field_len(5, body);
    }
    let shell_bytes = shell.write_to_bytes().map_err(enc("model"))?;
    let total = shell_bytes.len() as u64 + field_len(7, graph_len);
    if total > PROTO_LIMIT {
        return Err(ExportError::TooLarge { bytes: total });
    }

    let tmp = staging_file(dir).map_err(io(path))?;
    let mut w = BufWriter::with_capacity(1 << 20, tmp);
    let write = |w: &mut BufWriter<tempfile::NamedTempFile>| -> std::io::Result<()> {
        w.write_all(&shell_bytes)?;
        write_key(w, 7, graph_len)?;
        w.write_all(&graph_head)?;
        for (head, inline) in &tensors {
            let body = head.len() as u64 + inline.map_or(0, |b| field_len(9, b.len() as u64));
            write_key(w, 5, body)?;
            w.write_all(head)?;
            if let Some(b) = inline {
                write_key(w, 9, b.len() as u64)?;
                w.write_all(b)?;
            }
        }
        Ok(())
    };
    write(&mut w).map_err(io(path))?;
    let tmp = w.into_inner().map_err(|e| ExportError::Io { path: path.to_path_buf(), source: e.into_error() })?;
    tmp.as_file().sync_all().map_err(io(path))?;
    let mut data_bytes_written = 0;
    if let (Some((dtmp, n)), Some(dp)) = (data_file, &data_path) {
        dtmp.persist(dp).map_err(|e| ExportError::Io { path: dp.clone(), source: e.error })?;
        data_bytes_written = n;
    }
    tmp.persist(path).map_err(|e| ExportError::Io { path: path.to_path_buf(), source: e.error })?;
    Ok(ExportReport { model_path: path.to_path_buf(), data_path, model_bytes: total, data_bytes: data_bytes_written })
}

/// A temporary file in `dir` to be renamed over the destination; readable by
/// all like a file written in place (not the 0600 of a private temp file).
pub fn staging_file(dir: &Path) -> std::io::Result<tempfile::NamedTempFile> {
    ecospac_ir::staging::file(dir)
}

/// Bytes of a length-delimited field (key + length + body).
fn field_len(field: u32, body: u64) -> u64 {
    protobuf::rt::tag_size(field) + protobuf::rt::compute_raw_varint64_size(body) + body
}

/// The key and length of a length-delimited field of `len` bytes.
fn write_key(w: &mut impl Write, field: u32, len: u64) -> std::io::Result<()> {
    let mut os = protobuf::CodedOutputStream::new(w);
    os.write_tag(field, protobuf::rt::WireType::LengthDelimited)
        .and_then(|()| os.write_raw_varint64(len))
        .and_then(|()| os.flush())
        .map_err(std::io::Error::other)
}

/// The encoded tensor without its raw data, and the raw bytes to append (if inline).
fn tensor_head<'a>(
    name: &str,
    t: &'a Tensor,
    external: Option<(u64, u64)>,
    location: Option<&str>,
) -> Result<(Vec<u8>, Option<&'a [u8]>), ExportError> {
    let mut p = match &t.origin {
        Some(o) => TensorProto::parse_from_bytes(&o.0).map_err(enc(name))?,
        None => TensorProto::new(),
    };
    p.name = name.to_string();
    p.dims = t.dims.clone();
    p.data_type = t.dtype.onnx_code();
    let mut inline = None;
    if let (Some((offset, length)), Some(loc)) = (external, location) {
        p.data_location = DataLocation::EXTERNAL.into();
        let kv = |k: &str, v: String| StringStringEntryProto { key: k.into(), value: v, ..Default::default() };
        p.external_data =
            vec![kv("location", loc.to_string()), kv("offset", offset.to_string()), kv("length", length.to_string())];
    } else if t.layout == DataLayout::Typed && fill_typed(&mut p, t) {
        // small typed tensors stay in their typed field
    } else {
        inline = Some(t.bytes());
    }
    Ok((p.write_to_bytes().map_err(enc(name))?, inline))
}

fn fill_typed(p: &mut TensorProto, t: &Tensor) -> bool {
    let b = t.bytes();
    match t.dtype {
        DType::F32 => p.float_data = b.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect(),
        DType::F64 => p.double_data = t.to_f64s().unwrap_or_default(),
        DType::I64 => p.int64_data = t.to_i64s().unwrap_or_default(),
        DType::I32 | DType::I16 | DType::I8 | DType::U8 | DType::Bool => {
            p.int32_data = t.to_i64s().unwrap_or_default().into_iter().map(|v| v as i32).collect()
        }
        DType::F16 | DType::BF16 | DType::U16 => {
            p.int32_data = b.chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]]) as i32).collect()
        }
        DType::U32 => {
            p.uint64_data = b.chunks_exact(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]) as u64).collect()
        }
        DType::U64 => {
            p.uint64_data = b.chunks_exact(8).map(|c| u64::from_le_bytes(c.try_into().unwrap_or_default())).collect()
        }
        _ => return false,
    }
    true
}

fn name_of(g: &Graph, v: Option<ValueId>) -> String {
    v.map_or(String::new(), |v| g.value(v).name.clone())
}

fn node_proto(g: &Graph, n: &Node) -> Result<NodeProto, ExportError> {
    let inputs: Vec<String> = n.inputs.iter().map(|&v| name_of(g, v)).collect();
    let outputs: Vec<String> = n.outputs.iter().map(|&v| name_of(g, v)).collect();
    if let Some(o) = &n.origin {
        let p = NodeProto::parse_from_bytes(&o.0).map_err(enc(&n.name))?;
        if p.input == inputs && p.output == outputs {
            return Ok(p);
        }
    }
    let mut p = NodeProto::new();
    p.name = n.name.clone();
    p.op_type = n.op.op_type().to_string();
    p.domain = n.op.domain().to_string();
    p.input = inputs;
    p.output = outputs;
    p.attribute = attrs_proto(&n.op.to_attrs(), &n.name)?;
    Ok(p)
}

/// Encodes typed attributes as ONNX attribute messages.
pub fn attrs_proto(attrs: &Attrs, owner: &str) -> Result<Vec<AttributeProto>, ExportError> {
    attrs
        .iter()
        .map(|(name, a)| {
            let mut p = AttributeProto { name: name.clone(), ..Default::default() };
            let kind = match a {
                Attr::Int(v) => {
                    p.i = *v;
                    AttributeType::INT
                }
                Attr::Float(v) => {
                    p.f = *v;
                    AttributeType::FLOAT
                }
                Attr::Str(v) => {
                    p.s = v.clone();
                    AttributeType::STRING
                }
                Attr::Ints(v) => {
                    p.ints = v.clone();
                    AttributeType::INTS
                }
                Attr::Floats(v) => {
                    p.floats = v.clone();
                    AttributeType::FLOATS
                }
                Attr::Strs(v) => {
                    p.strings = v.clone();
                    AttributeType::STRINGS
                }
                Attr::Tensor(t) => {
                    let (head, inline) = tensor_head("", t, None, None)?;
                    let mut tp = TensorProto::parse_from_bytes(&head).map_err(enc(owner))?;
                    if let Some(b) = inline {
                        tp.raw_data = b.to_vec();
                    }
                    p.t = Some(tp).into();
                    AttributeType::TENSOR
                }
                Attr::Encoded(bytes) => return AttributeProto::parse_from_bytes(bytes).map_err(enc(owner)),
            };
            p.type_ = kind.into();
            Ok(p)
        })
        .collect()
}

fn value_info(g: &Graph, v: ValueId, required: bool) -> Result<ValueInfoProto, ExportError> {
    let value = g.value(v);
    if let Some(o) = &value.origin {
        let p = ValueInfoProto::parse_from_bytes(&o.0).map_err(enc(&value.name))?;
        if p.name == value.name {
            return Ok(p);
        }
    }
    let mut p = ValueInfoProto { name: value.name.clone(), ..Default::default() };
    let ty = if required { value.declared.clone().or_else(|| value.best_ty()) } else { value.best_ty() };
    if let Some(ty) = ty {
        p.type_ = Some(type_proto_of(g, &ty)).into();
    }
    Ok(p)
}

fn type_proto_of(g: &Graph, ty: &TensorTy) -> TypeProto {
    let mut t = type_proto::Tensor { elem_type: ty.dtype.onnx_code(), ..Default::default() };
    if let Some(shape) = &ty.shape {
        let dims = shape
            .iter()
            .map(|d| {
                let value = match d.as_known() {
                    Some(k) => dimension::Value::DimValue(k),
                    None => {
                        let names = |s| g.symbol_name(s).to_string();
                        let text = d.display(&names).to_string();
                        dimension::Value::DimParam(text)
                    }
                };
                Dimension { value: Some(value), ..Default::default() }
            })
            .collect();
        t.shape = Some(TensorShapeProto { dim: dims, ..Default::default() }).into();
    }
    TypeProto { value: Some(type_proto::Value::TensorType(t)), ..Default::default() }
}
