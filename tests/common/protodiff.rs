//! Lists where two ONNX models differ, message by message.

use onnx_protobuf::{Message, ModelProto};
use std::collections::BTreeMap;
use std::path::Path;

/// Reads a model file.
pub fn read(path: &Path) -> ModelProto {
    ModelProto::parse_from_bytes(&std::fs::read(path).expect("read")).expect("decode")
}

/// One line per difference, e.g. `node[12] /attn/Reshape` or `initializer w (only in b)`.
pub fn diff(a: &ModelProto, b: &ModelProto) -> Vec<String> {
    let mut out = Vec::new();
    let (mut ha, mut hb) = (a.clone(), b.clone());
    let (ga, gb) = (ha.graph.take().unwrap_or_default(), hb.graph.take().unwrap_or_default());
    if ha != hb {
        out.push("model header (ir_version, opsets, metadata, functions, unknown fields)".into());
    }
    let strip = |g: &onnx_protobuf::GraphProto| {
        let mut g = g.clone();
        g.node.clear();
        g.initializer.clear();
        g.input.clear();
        g.output.clear();
        g.value_info.clear();
        g
    };
    if strip(&ga) != strip(&gb) {
        out.push("graph header (name, doc, metadata, sparse initializers, unknown fields)".into());
    }
    by_index(
        "node",
        &ga.node,
        &gb.node,
        &|i| ga.node.get(i).or(gb.node.get(i)).map_or(String::new(), |n| n.name.clone()),
        &mut out,
    );
    by_index("input", &ga.input, &gb.input, &|i| ga.input.get(i).map_or(String::new(), |n| n.name.clone()), &mut out);
    by_index(
        "output",
        &ga.output,
        &gb.output,
        &|i| ga.output.get(i).map_or(String::new(), |n| n.name.clone()),
        &mut out,
    );
    by_index(
        "value_info",
        &ga.value_info,
        &gb.value_info,
        &|i| ga.value_info.get(i).or(gb.value_info.get(i)).map_or(String::new(), |n| n.name.clone()),
        &mut out,
    );
    let ia: BTreeMap<_, _> = ga.initializer.iter().map(|t| (t.name.clone(), t)).collect();
    let ib: BTreeMap<_, _> = gb.initializer.iter().map(|t| (t.name.clone(), t)).collect();
    for (name, t) in &ia {
        match ib.get(name) {
            None => out.push(format!("initializer {name} (only in the first)")),
            Some(u) if u != t => out.push(format!("initializer {name}")),
            _ => {}
        }
    }
    for name in ib.keys().filter(|n| !ia.contains_key(*n)) {
        out.push(format!("initializer {name} (only in the second)"));
    }
    let order_a: Vec<_> = ga.initializer.iter().map(|t| &t.name).collect();
    let order_b: Vec<_> = gb.initializer.iter().map(|t| &t.name).collect();
    if out.is_empty() && order_a != order_b {
        out.push("initializer order".into());
    }
    out
}

fn by_index<T: PartialEq>(what: &str, x: &[T], y: &[T], name: &dyn Fn(usize) -> String, out: &mut Vec<String>) {
    for i in 0..x.len().max(y.len()) {
        if x.get(i) != y.get(i) {
            out.push(format!("{what}[{i}] {}", name(i)));
        }
    }
}
