//! `ecospac inspect`: a model's summary, its text form, or its coupling groups.

use anyhow::Result;
use ecospac_ir::{DType, Model};
use std::collections::BTreeMap;
use std::path::Path;

fn shape_string(m: &Model, v: ecospac_ir::ValueId) -> String {
    m.graph.value(v).best_ty().map_or("?".into(), |t| ecospac_ir::text::ty_string(&m.graph, &t))
}

/// Opsets, inputs/outputs, op histogram, parameters, or the text form.
pub fn inspect(path: &Path, json: bool, text: bool, bind: &[String]) -> Result<()> {
    let bindings = crate::parse_bindings(bind)?;
    let mut model = crate::load(path)?;
    ecospac_passes::infer_shapes(&mut model).map_err(|e| anyhow::anyhow!("inspect needs a valid graph: {e}"))?;
    if text {
        print!("{}", ecospac_ir::text::print(&model));
        return Ok(());
    }
    let g = &model.graph;
    let mut ops: BTreeMap<String, usize> = BTreeMap::new();
    for (_, n) in g.nodes() {
        let key = if n.op.domain().is_empty() {
            n.op.op_type().to_string()
        } else {
            format!("{}::{}", n.op.domain(), n.op.op_type())
        };
        *ops.entry(key).or_default() += 1;
    }
    let mut params: BTreeMap<String, (u128, u64)> = BTreeMap::new();
    for &v in &g.initializers {
        if let Some(t) = &g.value(v).constant {
            let e = params.entry(t.dtype.name()).or_default();
            e.0 += t.numel();
            e.1 += t.bytes().len() as u64;
        }
    }
    let float_params: u128 =
        params.iter().filter(|(k, _)| DType::from_name(k).is_some_and(|d| d.is_float())).map(|(_, v)| v.0).sum();
    let io = |vs: &[ecospac_ir::ValueId]| -> Vec<(String, String)> {
        vs.iter().map(|&v| (g.value(v).name.clone(), shape_string(&model, v))).collect()
    };
    if json {
        let value = serde_json::json!({
            "path": path.display().to_string(),
            "ir_version": model.ir_version,
            "opsets": model.opsets.iter().map(|o| serde_json::json!({"domain": o.domain, "version": o.version})).collect::<Vec<_>>(),
            "inputs": io(&g.inputs).into_iter().map(|(n, t)| serde_json::json!({"name": n, "type": t})).collect::<Vec<_>>(),
            "outputs": io(&g.outputs).into_iter().map(|(n, t)| serde_json::json!({"name": n, "type": t})).collect::<Vec<_>>(),
            "nodes": g.order.len(),
            "ops": ops,
            "parameters": params.iter().map(|(k, v)| (k.clone(), serde_json::json!({"elements": v.0 as u64, "bytes": v.1}))).collect::<BTreeMap<_, _>>(),
            "float_parameters": float_params as u64,
            "weight_parameters": g.parameters() as u64,
            "matmul_flops": ecospac_passes::cost::matmul_flops(&model, &bindings).map(|f| f as u64),
        });
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(());
    }
    println!("{}", path.display());
    let opsets: Vec<String> = model
        .opsets
        .iter()
        .map(|o| format!("{}={}", if o.domain.is_empty() { "ai.onnx" } else { &o.domain }, o.version))
        .collect();
    println!("  IR version {}, opsets {}", model.ir_version, opsets.join(" "));
    for (label, list) in [("input", io(&g.inputs)), ("output", io(&g.outputs))] {
        for (n, t) in list {
            println!("  {label:6} {n}: {t}");
        }
    }
    println!("  {} nodes, {} initializers", g.order.len(), g.initializers.len());
    match g.parameters() {
        p if p == float_params => println!("  parameters: {p} weights, all float:"),
        p => {
            println!("  parameters: {p} weights ({float_params} float, {} quantised):", p.saturating_sub(float_params))
        }
    }
    match ecospac_passes::cost::matmul_flops(&model, &bindings) {
        Some(f) => println!("  matmul FLOPs {f} (dims bound: {bind:?})"),
        None => println!("  matmul FLOPs: bind the symbolic dims with --bind name=value to count them"),
    }
    for (k, (n, b)) in &params {
        println!("    {k:6} {n:>14} elements {b:>14} bytes");
    }
    println!("  ops:");
    for (k, n) in &ops {
        println!("    {k:28} {n}");
    }
    Ok(())
}

/// The coupling groups of the model as a compile prepares and analyses it.
pub fn inspect_groups(path: &Path, json: bool) -> Result<()> {
    let mut model = crate::load(path)?;
    ecospac_passes::prepare(&mut model)?;
    let proof = ecospac_ir::verify(&model.graph).map_err(|e| anyhow::anyhow!("{e}"))?;
    let coupling = ecospac_passes::coupling::analyze(proof);
    let g = &model.graph;
    let name = |v| g.value(v).name.clone();
    let role = |r| if r == ecospac_passes::coupling::Role::Reader { "reads" } else { "writes" };
    if json {
        let groups: Vec<_> = coupling
            .groups
            .iter()
            .map(|gr| {
                serde_json::json!({
                    "size": gr.size,
                    "whole_heads": gr.outer,
                    "blocks": gr.blocks(),
                    "copies": gr.copies(),
                    "params_per_index": gr.cost_per_index(&model),
                    "members": gr.members.iter().map(|m| serde_json::json!({
                        "weight": name(m.value), "axis": m.axis, "role": role(m.role),
                        "copies": m.positions.first().map_or(0, Vec::len),
                    })).collect::<Vec<_>>(),
                })
            })
            .collect();
        let pinned: Vec<_> = coupling
            .pinned
            .iter()
            .map(|p| serde_json::json!({"weight": name(p.value), "axis": p.axis, "why": p.reasons.iter().map(|r| r.describe()).collect::<Vec<_>>()}))
            .collect();
        println!("{}", serde_json::to_string_pretty(&serde_json::json!({"groups": groups, "pinned": pinned}))?);
        return Ok(());
    }
    println!("{}: {} coupling groups", path.display(), coupling.groups.len());
    for (i, gr) in coupling.groups.iter().enumerate() {
        let what = if gr.outer { "whole heads" } else { "indices" };
        println!(
            "group {i}: {} {what} ({} blocks of {}, a kept set per block) x {} copies, {} parameters per index",
            gr.size,
            gr.blocks(),
            gr.block,
            gr.copies(),
            gr.cost_per_index(&model)
        );
        // A tensor several nodes read is listed once, with its number of uses.
        let mut shown: Vec<(&ecospac_passes::coupling::Member, usize)> = Vec::new();
        for m in &gr.members {
            match shown.iter_mut().find(|(s, _)| s.storage() == m.storage() && s.axis == m.axis) {
                Some(entry) => entry.1 += 1,
                None => shown.push((m, 1)),
            }
        }
        for (m, uses) in shown {
            let copies = m.positions.first().map_or(0, Vec::len);
            let shared = if uses > 1 { format!(", read by {uses} nodes") } else { String::new() };
            println!("    {:6} {} axis {} ({} per index{shared})", role(m.role), name(m.value), m.axis, copies);
        }
    }
    println!("pinned weight axes:");
    for p in &coupling.pinned {
        let why: Vec<&str> = p.reasons.iter().map(|r| r.describe()).collect();
        println!(
            "    {} axis {}: {}",
            name(p.value),
            p.axis,
            if why.is_empty() { "size 1 or outer factor (heads)".to_string() } else { why.join("; ") }
        );
    }
    Ok(())
}
