//! A readable text form of a model, for snapshot tests and `ecospac inspect --text`.
//!
//! ```text
//! opset "" 17
//! graph "g"
//! input v0 "x": f32[batch, 8]
//! init v1 "w": f32[8, 4] = bytes 128
//! node n0 "/mm" MatMul (v0, v1) -> (v2 "y": f32[batch, 4])
//! output v2
//! ```
//!
//! Tensors of at most [`INLINE_ELEMENTS`] elements are printed in full; larger
//! ones as `bytes N` (parsed back as zeros). Everything else round-trips:
//! `print(parse(print(m))) == print(m)`.

use crate::attr::{Attr, Attrs};
use crate::graph::{Graph, Model, Node, OpsetImport, Value};
use crate::ids::{EntityId, NodeId, ValueId};
use crate::op::Op;
use crate::tensor::Tensor;
use crate::ty::{DType, Dim, TensorTy};
use std::fmt::Write;

/// Tensors up to this many elements are printed with their values.
pub const INLINE_ELEMENTS: u128 = 16;

/// Writes a type with the graph's symbol names.
pub fn ty_string(g: &Graph, ty: &TensorTy) -> String {
    let mut s = ty.dtype.name();
    if let Some(shape) = &ty.shape {
        s.push('[');
        for (i, d) in shape.iter().enumerate() {
            if i > 0 {
                s.push_str(", ");
            }
            let names = |id| g.symbol_name(id).to_string();
            let _ = write!(s, "{}", d.display(&names));
        }
        s.push(']');
    }
    s
}

fn quote(s: &str) -> String {
    format!("{s:?}")
}

fn tensor_string(t: &Tensor) -> String {
    let mut s = format!("{}{:?}", t.dtype.name(), t.dims).replace(' ', "");
    s = s.replace(',', ", ");
    if t.numel() > INLINE_ELEMENTS {
        let _ = write!(s, " bytes {}", t.bytes().len());
    } else if let Some(v) = t.to_i64s() {
        let _ = write!(s, " {v:?}");
    } else if t.dtype == DType::F32 {
        let v: Vec<f32> = t.to_f64s().unwrap_or_default().into_iter().map(|x| x as f32).collect();
        let _ = write!(s, " {v:?}");
    } else if let Some(v) = t.to_f64s() {
        let _ = write!(s, " {v:?}");
    } else {
        let _ = write!(s, " bytes {}", t.bytes().len());
    }
    s
}

fn attr_string(a: &Attr) -> String {
    match a {
        Attr::Int(v) => v.to_string(),
        Attr::Float(v) => format!("{v:?}"),
        Attr::Str(v) => quote(&String::from_utf8_lossy(v)),
        Attr::Ints(v) => format!("ints{v:?}"),
        Attr::Floats(v) => format!("floats{v:?}"),
        Attr::Strs(v) => {
            let items: Vec<String> = v.iter().map(|s| quote(&String::from_utf8_lossy(s))).collect();
            format!("strs[{}]", items.join(", "))
        }
        Attr::Tensor(t) => format!("tensor {}", tensor_string(t)),
        Attr::Encoded(b) => format!("encoded {}", b.iter().map(|x| format!("{x:02x}")).collect::<String>()),
    }
}

fn attrs_string(attrs: &Attrs) -> String {
    if attrs.is_empty() {
        return String::new();
    }
    let items: Vec<String> = attrs.iter().map(|(k, v)| format!("{k} = {}", attr_string(v))).collect();
    format!(" {{{}}}", items.join(", "))
}

fn value_decl(g: &Graph, v: ValueId) -> String {
    let value = g.value(v);
    let mut s = format!("{v} {}", quote(&value.name));
    if let Some(ty) = value.best_ty() {
        let _ = write!(s, ": {}", ty_string(g, &ty));
    }
    s
}

fn op_name(op: &Op) -> String {
    match op {
        Op::Opaque(o) if !o.domain.is_empty() => format!("{}::{}", quote(&o.domain), o.op_type),
        Op::Opaque(o) => format!("opaque::{}", o.op_type),
        _ if !op.domain().is_empty() => format!("{}::{}", quote(op.domain()), op.op_type()),
        _ => op.op_type().to_string(),
    }
}

/// Prints a model in the text form.
pub fn print(m: &Model) -> String {
    let g = &m.graph;
    let mut out = String::new();
    for o in &m.opsets {
        let _ = writeln!(out, "opset {} {}", quote(&o.domain), o.version);
    }
    let _ = writeln!(out, "graph {}", quote(&g.name));
    for &v in &g.inputs {
        let _ = writeln!(out, "input {}", value_decl(g, v));
    }
    for &v in &g.initializers {
        let value = g.value(v);
        let data = value.constant.as_ref().map_or("none".to_string(), tensor_string);
        let _ = writeln!(out, "init {v} {} = {data}", quote(&value.name));
    }
    for (id, node) in g.nodes() {
        let ins: Vec<String> = node.inputs.iter().map(|i| i.map_or("_".into(), |v| v.to_string())).collect();
        let outs: Vec<String> = node.outputs.iter().map(|o| o.map_or("_".into(), |v| value_decl(g, v))).collect();
        let _ = writeln!(
            out,
            "node {id} {} {}{} ({}) -> ({})",
            quote(&node.name),
            op_name(&node.op),
            attrs_string(&node.op.to_attrs()),
            ins.join(", "),
            outs.join(", ")
        );
    }
    for &v in &g.outputs {
        let _ = writeln!(out, "output {v}");
    }
    out
}

/// A text-form syntax error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct ParseError {
    /// 1-based line.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Str(String),
    Num(String),
    Punct(char),
    Arrow,
    ColonColon,
}

fn lex(line: &str) -> Result<Vec<Tok>, String> {
    let mut toks = Vec::new();
    let chars: Vec<char> = line.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '"' {
            let mut s = String::new();
            i += 1;
            loop {
                match chars.get(i) {
                    None => return Err("unterminated string".into()),
                    Some('"') => break,
                    Some('\\') => {
                        i += 1;
                        match chars.get(i) {
                            Some('n') => s.push('\n'),
                            Some('t') => s.push('\t'),
                            Some('r') => s.push('\r'),
                            Some('0') => s.push('\0'),
                            Some('u') => {
                                let end = chars[i..].iter().position(|&c| c == '}').ok_or("bad \\u escape")? + i;
                                let hex: String = chars[i + 2..end].iter().collect();
                                let code = u32::from_str_radix(&hex, 16).map_err(|e| e.to_string())?;
                                s.push(char::from_u32(code).ok_or("bad \\u escape")?);
                                i = end;
                            }
                            Some(&other) => s.push(other),
                            None => return Err("unterminated escape".into()),
                        }
                    }
                    Some(&other) => s.push(other),
                }
                i += 1;
            }
            i += 1;
            toks.push(Tok::Str(s));
        } else if c == '-' && chars.get(i + 1) == Some(&'>') {
            toks.push(Tok::Arrow);
            i += 2;
        } else if c == ':' && chars.get(i + 1) == Some(&':') {
            toks.push(Tok::ColonColon);
            i += 2;
        } else if c.is_ascii_digit()
            || ((c == '-' || c == '+') && chars.get(i + 1).is_some_and(|d| d.is_ascii_digit() || *d == 'i'))
        {
            let start = i;
            i += 1;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || matches!(chars[i], '.' | '-' | '+')) {
                if matches!(chars[i], '-' | '+') && !matches!(chars[i - 1], 'e' | 'E') {
                    break;
                }
                i += 1;
            }
            toks.push(Tok::Num(chars[start..i].iter().collect()));
        } else if c.is_alphabetic() || c == '_' || c == '?' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || matches!(chars[i], '_' | '.' | '?')) {
                i += 1;
            }
            toks.push(Tok::Ident(chars[start..i].iter().collect()));
        } else if "[](){},=:*".contains(c) {
            toks.push(Tok::Punct(c));
            i += 1;
        } else {
            return Err(format!("unexpected character {c:?}"));
        }
    }
    Ok(toks)
}

struct P<'a> {
    toks: Vec<Tok>,
    pos: usize,
    g: &'a mut Graph,
    /// The largest id a text of this length can number (its length in bytes).
    max_id: usize,
}

/// The most bytes a `bytes N` (elided data, parsed as zeros) may stand for.
pub const MAX_ELIDED_BYTES: usize = 1 << 30;

impl P<'_> {
    fn next(&mut self) -> Result<Tok, String> {
        let t = self.toks.get(self.pos).cloned().ok_or("unexpected end of line")?;
        self.pos += 1;
        Ok(t)
    }
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos)
    }
    fn punct(&mut self, c: char) -> Result<(), String> {
        match self.next()? {
            Tok::Punct(p) if p == c => Ok(()),
            other => Err(format!("expected `{c}`, found {other:?}")),
        }
    }
    fn eat(&mut self, c: char) -> bool {
        if self.peek() == Some(&Tok::Punct(c)) {
            self.pos += 1;
            true
        } else {
            false
        }
    }
    fn ident(&mut self) -> Result<String, String> {
        match self.next()? {
            Tok::Ident(s) => Ok(s),
            other => Err(format!("expected a name, found {other:?}")),
        }
    }
    fn string(&mut self) -> Result<String, String> {
        match self.next()? {
            Tok::Str(s) => Ok(s),
            other => Err(format!("expected a string, found {other:?}")),
        }
    }
    fn int(&mut self) -> Result<i64, String> {
        match self.next()? {
            Tok::Num(s) => s.parse().map_err(|_| format!("expected an integer, found {s}")),
            other => Err(format!("expected an integer, found {other:?}")),
        }
    }
    fn id_num(&self, s: &str, prefix: char) -> Result<usize, String> {
        let id: usize = s
            .strip_prefix(prefix)
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| format!("expected an id `{prefix}N`, found {s}"))?;
        if id > self.max_id {
            return Err(format!("id {s} is larger than a text of {} bytes numbers", self.max_id));
        }
        Ok(id)
    }
    fn value_ref(&mut self) -> Result<ValueId, String> {
        let ident = self.ident()?;
        let id = self.id_num(&ident, 'v')?;
        while self.g.num_values() <= id {
            self.g.add_value(Value::named(""));
        }
        Ok(ValueId::new(id))
    }
    fn dim(&mut self) -> Result<Dim, String> {
        let mut d = Dim::known(1);
        loop {
            let factor = match self.next()? {
                Tok::Num(n) => Dim::known(n.parse().map_err(|_| format!("bad dimension {n}"))?),
                Tok::Ident(name) => Dim::sym(self.g.symbol(&name)),
                other => return Err(format!("expected a dimension, found {other:?}")),
            };
            d = d.mul(&factor);
            if !self.eat('*') {
                return Ok(d);
            }
        }
    }
    fn dtype(&mut self) -> Result<DType, String> {
        let name = self.ident()?;
        DType::from_name(&name).ok_or_else(|| format!("unknown element type {name}"))
    }
    fn ty(&mut self) -> Result<TensorTy, String> {
        let dtype = self.dtype()?;
        if !self.eat('[') {
            return Ok(TensorTy { dtype, shape: None });
        }
        let mut shape = Vec::new();
        if !self.eat(']') {
            loop {
                shape.push(self.dim()?);
                if self.eat(']') {
                    break;
                }
                self.punct(',')?;
            }
        }
        Ok(TensorTy::new(dtype, shape))
    }
    fn value_decl(&mut self) -> Result<ValueId, String> {
        let v = self.value_ref()?;
        let name = self.string()?;
        let declared = if self.eat(':') { Some(self.ty()?) } else { None };
        let value = self.g.value_mut(v);
        value.name = name;
        value.declared = declared;
        Ok(v)
    }
    fn list<T>(&mut self, mut item: impl FnMut(&mut Self) -> Result<T, String>) -> Result<Vec<T>, String> {
        self.punct('[')?;
        let mut out = Vec::new();
        if self.eat(']') {
            return Ok(out);
        }
        loop {
            out.push(item(self)?);
            if self.eat(']') {
                return Ok(out);
            }
            self.punct(',')?;
        }
    }
    fn float(&mut self) -> Result<f64, String> {
        match self.next()? {
            Tok::Num(s) | Tok::Ident(s) => s.parse().map_err(|_| format!("expected a number, found {s}")),
            other => Err(format!("expected a number, found {other:?}")),
        }
    }
    fn tensor(&mut self) -> Result<Tensor, String> {
        let dtype = self.dtype()?;
        let dims = self.list(|p| p.int())?;
        if self.peek() == Some(&Tok::Ident("bytes".into())) {
            self.pos += 1;
            // The length stays as written (the verifier reports one that disagrees with the type).
            let n = self.int()?;
            if !(0..=MAX_ELIDED_BYTES as i64).contains(&n) {
                return Err(format!("`bytes {n}`: elided data is at most {MAX_ELIDED_BYTES} bytes"));
            }
            return Ok(Tensor::from_bytes(dtype, dims, vec![0; n as usize]));
        }
        let bytes: Vec<u8> = match dtype {
            DType::F32 => self.list(|p| p.float())?.iter().flat_map(|&v| (v as f32).to_le_bytes()).collect(),
            DType::F64 => self.list(|p| p.float())?.iter().flat_map(|&v| v.to_le_bytes()).collect(),
            DType::F16 => {
                self.list(|p| p.float())?.iter().flat_map(|&v| half::f16::from_f64(v).to_le_bytes()).collect()
            }
            DType::BF16 => {
                self.list(|p| p.float())?.iter().flat_map(|&v| half::bf16::from_f64(v).to_le_bytes()).collect()
            }
            DType::I64 => self.list(|p| p.int())?.iter().flat_map(|&v| v.to_le_bytes()).collect(),
            DType::I32 => self.list(|p| p.int())?.iter().flat_map(|&v| (v as i32).to_le_bytes()).collect(),
            DType::U32 => self.list(|p| p.int())?.iter().flat_map(|&v| (v as u32).to_le_bytes()).collect(),
            DType::I16 => self.list(|p| p.int())?.iter().flat_map(|&v| (v as i16).to_le_bytes()).collect(),
            DType::I8 | DType::U8 | DType::Bool => self.list(|p| p.int())?.iter().map(|&v| v as u8).collect(),
            other => return Err(format!("cannot write {other} values inline")),
        };
        Ok(Tensor::from_bytes(dtype, dims, bytes))
    }
    fn attr(&mut self) -> Result<Attr, String> {
        match self.next()? {
            Tok::Num(s) if s.contains(['.', 'e', 'E', 'i', 'N']) => {
                s.parse().map(Attr::Float).map_err(|_| format!("bad float {s}"))
            }
            Tok::Num(s) => s.parse().map(Attr::Int).map_err(|_| format!("bad int {s}")),
            Tok::Ident(s) if s == "NaN" || s == "inf" => {
                s.parse().map(Attr::Float).map_err(|_| format!("bad float {s}"))
            }
            Tok::Str(s) => Ok(Attr::Str(s.into_bytes())),
            Tok::Ident(kind) => match kind.as_str() {
                "ints" => Ok(Attr::Ints(self.list(|p| p.int())?)),
                "floats" => Ok(Attr::Floats(self.list(|p| p.float())?.into_iter().map(|v| v as f32).collect())),
                "strs" => Ok(Attr::Strs(self.list(|p| p.string())?.into_iter().map(String::into_bytes).collect())),
                "tensor" => Ok(Attr::Tensor(self.tensor()?)),
                "encoded" => {
                    let hex = match self.next()? {
                        Tok::Num(h) | Tok::Ident(h) => h,
                        other => return Err(format!("expected hex bytes, found {other:?}")),
                    };
                    (0..hex.len() / 2)
                        .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|e| e.to_string()))
                        .collect::<Result<_, _>>()
                        .map(Attr::Encoded)
                }
                other => Err(format!("unknown attribute kind {other}")),
            },
            other => Err(format!("expected an attribute value, found {other:?}")),
        }
    }
}

/// Parses the text form back into a model.
pub fn parse(text: &str) -> Result<Model, ParseError> {
    let mut m = Model::default();
    let mut node_slots: Vec<Option<Node>> = Vec::new();
    for (lineno, line) in text.lines().enumerate() {
        let err = |message: String| ParseError { line: lineno + 1, message };
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        let toks = lex(line).map_err(err)?;
        let opset_version = m.default_opset();
        let mut p = P { toks, pos: 0, g: &mut m.graph, max_id: text.len() };
        let keyword = p.ident().map_err(err)?;
        let result: Result<(), String> = (|| {
            match keyword.as_str() {
                "opset" => {
                    let domain = p.string()?;
                    let version = p.int()?;
                    m.opsets.push(OpsetImport { domain, version });
                }
                "graph" => p.g.name = p.string()?,
                "input" => {
                    let v = p.value_decl()?;
                    p.g.inputs.push(v);
                }
                "output" => {
                    let v = p.value_ref()?;
                    p.g.outputs.push(v);
                }
                "init" => {
                    let v = p.value_ref()?;
                    let name = p.string()?;
                    p.punct('=')?;
                    let t = p.tensor()?;
                    let value = p.g.value_mut(v);
                    value.name = name;
                    value.constant = Some(t);
                    p.g.initializers.push(v);
                }
                "node" => {
                    let ident = p.ident()?;
                    let id = p.id_num(&ident, 'n')?;
                    let name = p.string()?;
                    let (domain, op_type) = match p.next()? {
                        Tok::Str(domain) => {
                            match p.next()? {
                                Tok::ColonColon => {}
                                other => return Err(format!("expected `::`, found {other:?}")),
                            }
                            (domain, p.ident()?)
                        }
                        Tok::Ident(first) if first == "opaque" && p.peek() == Some(&Tok::ColonColon) => {
                            p.pos += 1;
                            (String::new(), p.ident()?)
                        }
                        Tok::Ident(first) => (String::new(), first),
                        other => return Err(format!("expected an op, found {other:?}")),
                    };
                    let mut attrs: Attrs = Vec::new();
                    if p.eat('{') {
                        loop {
                            let k = p.ident()?;
                            p.punct('=')?;
                            attrs.push((k, p.attr()?));
                            if p.eat('}') {
                                break;
                            }
                            p.punct(',')?;
                        }
                    }
                    let mut inputs = Vec::new();
                    p.punct('(')?;
                    if !p.eat(')') {
                        loop {
                            if p.peek() == Some(&Tok::Ident("_".into())) {
                                p.pos += 1;
                                inputs.push(None);
                            } else {
                                inputs.push(Some(p.value_ref()?));
                            }
                            if p.eat(')') {
                                break;
                            }
                            p.punct(',')?;
                        }
                    }
                    match p.next()? {
                        Tok::Arrow => {}
                        other => return Err(format!("expected `->`, found {other:?}")),
                    }
                    let mut outputs = Vec::new();
                    p.punct('(')?;
                    if !p.eat(')') {
                        loop {
                            if p.peek() == Some(&Tok::Ident("_".into())) {
                                p.pos += 1;
                                outputs.push(None);
                            } else {
                                outputs.push(Some(p.value_decl()?));
                            }
                            if p.eat(')') {
                                break;
                            }
                            p.punct(',')?;
                        }
                    }
                    let is_opaque = op_type.is_empty() || line.contains(" opaque::");
                    // Ops of other domains are typed as the importer types them.
                    let version = match domain.as_str() {
                        "" => opset_version,
                        d => m.opsets.iter().find(|o| o.domain == d).map_or(1, |o| o.version),
                    };
                    let op = if is_opaque {
                        Op::Opaque(crate::op::Opaque { domain, op_type, attrs })
                    } else {
                        Op::from_parts(&domain, &op_type, &attrs, version, inputs.len()).map_err(|e| e.to_string())?
                    };
                    while node_slots.len() <= id {
                        node_slots.push(None);
                    }
                    if node_slots[id].is_some() {
                        return Err(format!("node n{id} appears twice"));
                    }
                    node_slots[id] = Some(Node { name, op, inputs, outputs, origin: None, captures: Vec::new() });
                    // Remember the order through a marker in the graph's order list.
                    p.g.order.push(NodeId::new(id));
                }
                other => return Err(format!("unknown line kind `{other}`")),
            }
            if p.pos != p.toks.len() {
                return Err(format!("unexpected trailing {:?}", p.toks[p.pos]));
            }
            Ok(())
        })();
        result.map_err(err)?;
    }
    // Rebuild the node arena with the printed ids (holes become unused placeholders).
    let order = std::mem::take(&mut m.graph.order);
    let mut g = std::mem::take(&mut m.graph);
    for slot in node_slots {
        let node = slot.unwrap_or(Node {
            name: String::new(),
            op: Op::Opaque(crate::op::Opaque { domain: String::new(), op_type: String::new(), attrs: vec![] }),
            inputs: vec![],
            outputs: vec![],
            origin: None,
            captures: Vec::new(),
        });
        g.add_node(node);
    }
    g.order = order;
    m.graph = g;
    Ok(m)
}
