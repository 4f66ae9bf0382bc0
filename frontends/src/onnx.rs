//! ONNX import: `ModelProto` → [`Model`].
//!
//! Names end here: every value reference is resolved to a [`ValueId`], every
//! known op's attributes are parsed into its typed struct. What the IR does not
//! model (doc strings, metadata, functions, unknown fields, the exact encoding
//! of unchanged nodes) is kept as [`Origin`] records for the backend.

use crate::onnx_attr::{attr_from_proto, tensor_from_proto_owned};
use ecospac_ir::{Attrs, DType, Dim, Graph, Model, Node, Op, OpsetImport, Origin, Storage, TensorTy, Value, ValueId};
use memmap2::Mmap;
use onnx_protobuf::tensor_proto::DataLocation;
use onnx_protobuf::type_proto;
use onnx_protobuf::{Message, ModelProto, NodeProto, TensorProto, ValueInfoProto};
use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

/// Why a model could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The bytes are not a valid protobuf message (truncated, or another format).
    #[error("{what} is not a readable ONNX protobuf ({message}); is the file truncated or not ONNX?")]
    Decode {
        /// What was being decoded.
        what: String,
        /// The decoder's message.
        message: String,
    },
    /// A well-formed message that is not an ONNX model.
    #[error("{what} is not an ONNX model: {reason}")]
    NotOnnx {
        /// The file.
        what: String,
        /// Why.
        reason: String,
    },
    /// The opset imports are missing, malformed or too new.
    #[error("{what}: {reason}")]
    Opset {
        /// The file.
        what: String,
        /// Why.
        reason: String,
    },
    /// A node reads a name nothing defines.
    #[error("node {node} reads `{input}`, which no node, graph input or initializer defines")]
    MissingValue {
        /// The node (name or index).
        node: String,
        /// The missing name.
        input: String,
    },
    /// A graph output names a value nothing defines.
    #[error("graph output `{name}` is not defined by any node, input or initializer")]
    MissingOutput {
        /// The output name.
        name: String,
    },
    /// A name is defined twice.
    #[error("`{name}` is defined twice (SSA violated)")]
    DuplicateValue {
        /// The name.
        name: String,
    },
    /// An external-data reference that is refused or broken.
    #[error("tensor `{tensor}`: external data `{location}` {reason}")]
    ExternalData {
        /// The tensor.
        tensor: String,
        /// The location as written in the model.
        location: String,
        /// What is wrong.
        reason: String,
    },
    /// A tensor's data disagrees with its declared type and shape.
    #[error("tensor `{tensor}`: {detail}")]
    DataSize {
        /// The tensor.
        tensor: String,
        /// The sizes.
        detail: ecospac_ir::tensor::SizeMismatch,
    },
    /// A tensor kind this version cannot hold.
    #[error("tensor `{tensor}`: {reason}")]
    UnsupportedTensor {
        /// The tensor.
        tensor: String,
        /// Why.
        reason: String,
    },
    /// Nodes that read each other's outputs in a cycle.
    #[error(transparent)]
    Cycle(#[from] ecospac_ir::CycleError),
    /// A known op with a malformed attribute.
    #[error("node {node}: {source}")]
    Attribute {
        /// The node.
        node: String,
        /// The attribute problem.
        source: ecospac_ir::op::AttrError,
    },
}

/// Reads an ONNX file; external data is resolved relative to its folder.
pub fn import_file(path: &Path) -> Result<Model, ImportError> {
    import_file_with_data(path).map(|i| i.model)
}

/// A model read from a file, with what the reader did on the way.
#[derive(Debug)]
pub struct Imported {
    /// The model.
    pub model: Model,
    /// The external-data files it read (resolved through links), so that a
    /// writer can refuse to overwrite any of them.
    pub data_files: Vec<PathBuf>,
    /// `value_info` annotations of inner values that contradict what their
    /// producers make, ignored as ONNX Runtime ignores them (the file still
    /// holds them).
    pub ignored: Vec<IgnoredDeclaration>,
}

/// A `value_info` type that contradicts the type its producer makes.
#[derive(Clone, Debug, PartialEq)]
pub struct IgnoredDeclaration {
    /// The value's name.
    pub value: String,
    /// The type the file declares.
    pub declared: String,
    /// The type its producer makes.
    pub inferred: String,
}

impl std::fmt::Display for IgnoredDeclaration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "`{}` is declared {} but its producer makes {}", self.value, self.declared, self.inferred)
    }
}

/// Reads an ONNX file and names the external-data files it read.
pub fn import_file_with_data(path: &Path) -> Result<Imported, ImportError> {
    let io = |source| ImportError::Io { path: path.to_path_buf(), source };
    if !std::fs::metadata(path).map_err(io)?.is_file() {
        return Err(ImportError::NotOnnx {
            what: path.display().to_string(),
            reason: "it is not a regular file".into(),
        });
    }
    let file = std::fs::File::open(path).map_err(io)?;
    // SAFETY: the map is read-only and dropped before return; a concurrent writer
    // could change bytes under us, as with any read.
    let map = Arc::new(unsafe { Mmap::map(&file) }.map_err(io)?);
    let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let base = if base.as_os_str().is_empty() { PathBuf::from(".") } else { base };
    let what = path.display().to_string();
    // Weights stay in the map: decode the model without them, then point each
    // initializer at its bytes in the file.
    match crate::wire::strip_initializer_data(&map) {
        Some(stripped) => {
            let inline = InlineData { map: map.clone(), ranges: stripped.raw_data };
            import_inner(&stripped.bytes, Some(&base), &what, Some(inline))
        }
        None => import_inner(&map, Some(&base), &what, None),
    }
}

/// Drops the declared types of inner values (`value_info`, not graph inputs or
/// outputs) that contradict inference, as ONNX Runtime does: some exporters
/// annotate a `[1]` constant as a scalar. The value's source message stays, so
/// a written model keeps the annotation as it came.
fn ignore_contradicted_value_info(g: &mut Graph) -> Vec<IgnoredDeclaration> {
    let (_, issues) = ecospac_ir::infer::facts(g);
    let mut ignored = Vec::new();
    for issue in issues {
        let ecospac_ir::infer::PropagationIssue::Conflict { value, inferred, declared } = issue else { continue };
        if g.inputs.contains(&value) || g.outputs.contains(&value) || !g.value_info.contains(&value) {
            continue;
        }
        ignored.push(IgnoredDeclaration {
            value: g.value(value).name.clone(),
            declared: ecospac_ir::text::ty_string(g, &declared),
            inferred: ecospac_ir::text::ty_string(g, &inferred),
        });
        g.value_mut(value).declared = None;
    }
    ignored
}

/// The newest opset of the default domain whose operators ecospac knows (ONNX 1.20).
pub const MAX_ONNX_OPSET: i64 = 25;

/// The opset imports as `onnx.checker` requires them: the default domain
/// declared, every version positive, each domain once; and a default-domain
/// version ecospac knows (a newer one could change what an op computes).
fn check_opsets(opsets: &[OpsetImport]) -> Result<(), String> {
    let mut seen = std::collections::HashSet::new();
    for o in opsets {
        let name = if o.domain.is_empty() { "ai.onnx" } else { &o.domain };
        if !seen.insert(o.domain.as_str()) {
            return Err(format!("it imports the opset of domain `{name}` twice"));
        }
        if o.version < 1 {
            return Err(format!("it imports opset {} of domain `{name}`; versions start at 1", o.version));
        }
        if o.domain.is_empty() && o.version > MAX_ONNX_OPSET {
            return Err(format!(
                "it imports opset {} of the default domain; ecospac knows the operators up to opset {MAX_ONNX_OPSET}",
                o.version
            ));
        }
    }
    if !seen.contains("") {
        return Err("it imports no opset of the default domain (`opset_import` is required)".into());
    }
    Ok(())
}

/// Initializer payloads left in the file's memory map.
struct InlineData {
    map: Arc<Mmap>,
    ranges: Vec<Option<std::ops::Range<usize>>>,
}

/// Reads an ONNX model from bytes. `base_dir` is where external data lives
/// (`None` refuses external data); `what` names the source in errors.
pub fn import_bytes(bytes: &[u8], base_dir: Option<&Path>, what: &str) -> Result<Model, ImportError> {
    import_inner(bytes, base_dir, what, None).map(|i| i.model)
}

fn import_inner(
    bytes: &[u8],
    base_dir: Option<&Path>,
    what: &str,
    inline: Option<InlineData>,
) -> Result<Imported, ImportError> {
    let mut proto = ModelProto::parse_from_bytes(bytes)
        .map_err(|e| ImportError::Decode { what: what.to_string(), message: e.to_string() })?;
    if proto.ir_version <= 0 {
        return Err(ImportError::NotOnnx { what: what.to_string(), reason: "it has no IR version".into() });
    }
    let Some(mut gp) = proto.graph.take() else {
        return Err(ImportError::NotOnnx { what: what.to_string(), reason: "it has no graph".into() });
    };
    let opsets: Vec<OpsetImport> = proto
        .opset_import
        .iter()
        .map(|o| OpsetImport {
            domain: if o.domain == "ai.onnx" { String::new() } else { o.domain.clone() },
            version: o.version,
        })
        .collect();
    check_opsets(&opsets).map_err(|reason| ImportError::Opset { what: what.to_string(), reason })?;
    let version_of = |domain: &str| {
        let d = if domain == "ai.onnx" { "" } else { domain };
        opsets.iter().find(|o| o.domain == d).map_or(0, |o| o.version)
    };

    let mut g = Graph::new(gp.name.clone());
    let mut by_name: HashMap<String, ValueId> = HashMap::new();
    let mut externals = ExternalFiles { base: base_dir.map(Path::to_path_buf), maps: HashMap::new() };

    for (i, mut t) in std::mem::take(&mut gp.initializer).into_iter().enumerate() {
        let name = t.name.clone();
        if by_name.contains_key(&name) {
            return Err(ImportError::DuplicateValue { name });
        }
        let mapped = inline.as_ref().and_then(|d| {
            let r = d.ranges.get(i)?.clone()?;
            Some(Storage::Mapped { map: d.map.clone(), offset: r.start, len: r.len() })
        });
        let external = if t.data_location.enum_value() == Ok(DataLocation::EXTERNAL) {
            Some(externals.resolve(&t)?)
        } else {
            mapped
        };
        let tensor = tensor_from_proto_owned(&mut t, &name, external)?;
        let id = g.add_initializer(name.clone(), tensor);
        by_name.insert(name, id);
    }
    for vi in std::mem::take(&mut gp.input) {
        let id = match by_name.get(&vi.name) {
            Some(&id) if g.value(id).constant.is_some() && !g.inputs.contains(&id) => id,
            Some(_) => return Err(ImportError::DuplicateValue { name: vi.name.clone() }),
            None => {
                let id = g.add_value(Value::named(vi.name.clone()));
                by_name.insert(vi.name.clone(), id);
                id
            }
        };
        set_info(&mut g, id, &vi, what)?;
        g.inputs.push(id);
    }
    let nodes = std::mem::take(&mut gp.node);
    // Outputs first, so that a reference to a later node's output is found (the nodes are sorted below).
    let mut node_outputs = Vec::with_capacity(nodes.len());
    for n in &nodes {
        let mut outs = Vec::with_capacity(n.output.len());
        for o in &n.output {
            if o.is_empty() {
                outs.push(None);
                continue;
            }
            if by_name.contains_key(o) {
                return Err(ImportError::DuplicateValue { name: o.clone() });
            }
            let id = g.add_value(Value::named(o.clone()));
            by_name.insert(o.clone(), id);
            outs.push(Some(id));
        }
        node_outputs.push(outs);
    }
    for (i, (n, outputs)) in nodes.iter().zip(node_outputs).enumerate() {
        let label = node_label(n, i);
        let inputs = n
            .input
            .iter()
            .map(|name| {
                if name.is_empty() {
                    return Ok(None);
                }
                by_name
                    .get(name)
                    .copied()
                    .map(Some)
                    .ok_or_else(|| ImportError::MissingValue { node: label.clone(), input: name.clone() })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let attrs: Attrs = n
            .attribute
            .iter()
            .map(|a| Ok((a.name.clone(), attr_from_proto(a, &label)?)))
            .collect::<Result<_, ImportError>>()?;
        let op = Op::from_parts(&n.domain, &n.op_type, &attrs, version_of(&n.domain), inputs.len())
            .map_err(|source| ImportError::Attribute { node: label.clone(), source })?;
        let op = if n.overload.is_empty() { op } else { opaque_of(n, attrs) };
        let origin =
            n.write_to_bytes().map_err(|e| ImportError::Decode { what: label.clone(), message: e.to_string() })?;
        let captures = outer_reads(n, &by_name, &label)?;
        g.add_node(Node { name: n.name.clone(), op, inputs, outputs, origin: Some(Origin(origin)), captures });
    }
    // ONNX Runtime sorts graphs itself, so unsorted files exist; they are read sorted.
    g.sort_topologically()?;
    for vi in std::mem::take(&mut gp.output) {
        let id = *by_name.get(&vi.name).ok_or_else(|| ImportError::MissingOutput { name: vi.name.clone() })?;
        if !g.inputs.contains(&id) {
            set_info(&mut g, id, &vi, what)?;
        }
        g.outputs.push(id);
    }
    for vi in std::mem::take(&mut gp.value_info) {
        let id = match by_name.get(&vi.name) {
            Some(&id) => id,
            None => {
                let id = g.add_value(Value::named(vi.name.clone()));
                by_name.insert(vi.name.clone(), id);
                id
            }
        };
        if g.value(id).origin.is_none() {
            set_info(&mut g, id, &vi, what)?;
        }
        g.value_info.push(id);
    }
    proto.graph = Some(gp).into();
    let shell =
        proto.write_to_bytes().map_err(|e| ImportError::Decode { what: what.to_string(), message: e.to_string() })?;
    let mut data_files: Vec<PathBuf> = externals.maps.into_keys().collect();
    data_files.sort();
    let ignored = ignore_contradicted_value_info(&mut g);
    let model = Model { graph: g, ir_version: proto.ir_version, opsets, origin: Some(Origin(shell)) };
    Ok(Imported { model, data_files, ignored })
}

/// The values of the enclosing graph that `n`'s subgraph attributes read by
/// name (at any depth), each once; a name defined nowhere is an error. Walked
/// with an explicit stack, so nesting depth costs no native stack.
fn outer_reads(n: &NodeProto, outer: &HashMap<String, ValueId>, label: &str) -> Result<Vec<ValueId>, ImportError> {
    use onnx_protobuf::GraphProto;
    // (subgraph, names defined by the subgraphs enclosing it, inside `n`)
    let mut stack: Vec<(&GraphProto, std::collections::HashSet<&str>)> = Vec::new();
    for a in &n.attribute {
        for sg in a.g.as_ref().into_iter().chain(&a.graphs) {
            stack.push((sg, Default::default()));
        }
    }
    let mut out: Vec<ValueId> = Vec::new();
    while let Some((sg, mut defined)) = stack.pop() {
        defined.extend(sg.input.iter().map(|v| v.name.as_str()));
        defined.extend(sg.initializer.iter().map(|t| t.name.as_str()));
        defined.extend(sg.sparse_initializer.iter().filter_map(|t| t.values.as_ref()).map(|t| t.name.as_str()));
        defined.extend(sg.node.iter().flat_map(|m| m.output.iter().map(String::as_str)));
        // Names read from outside: node inputs, and outputs passed straight through.
        let node_reads = sg.node.iter().flat_map(|m| m.input.iter().map(String::as_str));
        let passed = sg.output.iter().map(|o| o.name.as_str());
        for name in node_reads.chain(passed).filter(|i| !i.is_empty() && !defined.contains(i)) {
            let id = *outer.get(name).ok_or_else(|| ImportError::MissingValue {
                node: format!("{label} (inside a subgraph)"),
                input: name.to_string(),
            })?;
            if !out.contains(&id) {
                out.push(id);
            }
        }
        for a in sg.node.iter().flat_map(|m| &m.attribute) {
            for inner in a.g.as_ref().into_iter().chain(&a.graphs) {
                stack.push((inner, defined.clone()));
            }
        }
    }
    Ok(out)
}

fn opaque_of(n: &NodeProto, attrs: Attrs) -> Op {
    Op::Opaque(ecospac_ir::op::Opaque { domain: n.domain.clone(), op_type: n.op_type.clone(), attrs })
}

fn node_label(n: &NodeProto, index: usize) -> String {
    if n.name.is_empty() {
        format!("#{index} ({})", n.op_type)
    } else {
        format!("`{}` ({})", n.name, n.op_type)
    }
}

fn set_info(g: &mut Graph, id: ValueId, vi: &ValueInfoProto, what: &str) -> Result<(), ImportError> {
    let declared = declared_type(g, vi);
    let origin =
        vi.write_to_bytes().map_err(|e| ImportError::Decode { what: what.to_string(), message: e.to_string() })?;
    let v = g.value_mut(id);
    if v.constant.is_none() || declared.is_some() {
        v.declared = declared;
    }
    v.origin = Some(Origin(origin));
    Ok(())
}

/// The tensor type a `ValueInfoProto` declares (symbols created in `g`).
pub fn declared_type(g: &mut Graph, vi: &ValueInfoProto) -> Option<TensorTy> {
    let Some(type_proto::Value::TensorType(t)) = &vi.type_.as_ref()?.value else {
        return None;
    };
    let dtype = DType::from_onnx(t.elem_type);
    let Some(shape) = t.shape.as_ref() else {
        return Some(TensorTy { dtype, shape: None });
    };
    let dims = shape
        .dim
        .iter()
        .map(|d| match &d.value {
            // A negative size declares nothing: read it as unknown.
            Some(onnx_protobuf::tensor_shape_proto::dimension::Value::DimValue(v)) if *v >= 0 => Dim::known(*v),
            Some(onnx_protobuf::tensor_shape_proto::dimension::Value::DimParam(p)) if !p.is_empty() => {
                Dim::sym(g.symbol(p))
            }
            _ => Dim::sym(g.fresh_symbol("unk")),
        })
        .collect();
    Some(TensorTy::new(dtype, dims))
}

/// Memory maps of external-data files, shared by the tensors that live in them.
struct ExternalFiles {
    base: Option<PathBuf>,
    maps: HashMap<PathBuf, Arc<Mmap>>,
}

impl ExternalFiles {
    fn resolve(&mut self, t: &TensorProto) -> Result<Storage, ImportError> {
        let entry = |key: &str| t.external_data.iter().find(|e| e.key == key).map(|e| e.value.clone());
        let location = entry("location").unwrap_or_default();
        let fail =
            |reason: String| ImportError::ExternalData { tensor: t.name.clone(), location: location.clone(), reason };
        if location.is_empty() {
            return Err(fail("has no location".into()));
        }
        let Some(base) = &self.base else {
            return Err(fail("cannot be read: the model was not read from a file".into()));
        };
        let rel = Path::new(&location);
        if rel.is_absolute() || rel.components().any(|c| !matches!(c, Component::Normal(_) | Component::CurDir)) {
            return Err(fail("is refused: the location must be a relative path inside the model's folder".into()));
        }
        let base_real = base.canonicalize().map_err(|e| fail(format!("cannot be resolved: {e}")))?;
        let full = base_real.join(rel);
        let real = full.canonicalize().map_err(|e| fail(format!("cannot be opened: {e}")))?;
        if !real.starts_with(&base_real) {
            return Err(fail("is refused: it resolves (through a link) outside the model's folder".into()));
        }
        let map = match self.maps.get(&real) {
            Some(m) => m.clone(),
            None => {
                // A FIFO or device would block or never end: only regular files.
                let meta = std::fs::metadata(&real).map_err(|e| fail(format!("cannot be opened: {e}")))?;
                if !meta.is_file() {
                    return Err(fail("is refused: it is not a regular file".into()));
                }
                let file = std::fs::File::open(&real).map_err(|e| fail(format!("cannot be opened: {e}")))?;
                // SAFETY: read-only map; see `import_file`.
                let map = Arc::new(unsafe { Mmap::map(&file) }.map_err(|e| fail(format!("cannot be mapped: {e}")))?);
                self.maps.insert(real.clone(), map.clone());
                map
            }
        };
        let parse = |key: &str| -> Result<Option<usize>, ImportError> {
            entry(key).map(|v| v.parse::<usize>().map_err(|_| fail(format!("has a bad {key} `{v}`")))).transpose()
        };
        let offset = parse("offset")?.unwrap_or(0);
        let numel = ecospac_ir::tensor::numel(&t.dims);
        let expected =
            DType::from_onnx(t.data_type).size().and_then(|s| usize::try_from(numel.checked_mul(s as u128)?).ok());
        let len = match parse("length")? {
            Some(l) => l,
            None => expected.ok_or_else(|| fail("has no length".into()))?,
        };
        if offset.checked_add(len).is_none_or(|end| end > map.len()) {
            return Err(fail(format!(
                "asks for bytes {offset}..{} but the file has {}",
                offset.saturating_add(len),
                map.len()
            )));
        }
        Ok(Storage::Mapped { map, offset, len })
    }
}
