//! `fold-shape-constants` and `eliminate-dead-nodes`.

use crate::pipeline::Changed;
use ecospac_ir::infer::facts;
use ecospac_ir::{DType, EntityId, Model, NodeId, Op, Tensor};

/// Replaces integer shape computations whose results are fully known
/// (`Shape` of a static tensor, `Concat` of constants, ...) by initializers.
/// The folded producers are left for `eliminate-dead-nodes`.
pub fn fold_shape_constants(model: &mut Model) -> Changed {
    {
        let g = &mut model.graph;
        let (facts, _) = facts(g);
        let mut folded: Vec<NodeId> = Vec::new();
        let mut new_constants = Vec::new();
        for (id, node) in g.nodes() {
            if matches!(node.op, Op::Opaque(_) | Op::Constant { .. }) || node.outputs.is_empty() {
                continue;
            }
            let mut tensors = Vec::new();
            for out in &node.outputs {
                let Some(v) = out else { break };
                let Some(fact) = &facts[v.index()] else { break };
                let (Some(ty), Some(vals)) = (&fact.ty, fact.known_ints()) else {
                    break;
                };
                let Some(dims) =
                    ty.shape.as_ref().and_then(|s| s.iter().map(|d| d.as_known()).collect::<Option<Vec<_>>>())
                else {
                    break;
                };
                let tensor = match ty.dtype {
                    DType::I64 => Tensor::from_i64s(dims, &vals),
                    DType::I32 => Tensor::from_bytes(
                        DType::I32,
                        dims,
                        vals.iter().flat_map(|&x| (x as i32).to_le_bytes()).collect(),
                    ),
                    _ => break,
                };
                if tensor.check_size().is_err() {
                    break;
                }
                tensors.push((*v, tensor));
            }
            if tensors.len() == node.outputs.len() {
                folded.push(id);
                new_constants.extend(tensors);
            }
        }
        if folded.is_empty() {
            return Changed::No;
        }
        g.remove_nodes(&folded);
        // Results only folded nodes read are not kept.
        let mut read = vec![false; g.num_values()];
        for (_, node) in g.nodes() {
            for v in node.inputs.iter().flatten() {
                read[v.index()] = true;
            }
        }
        for &v in &g.outputs {
            read[v.index()] = true;
        }
        for (v, t) in new_constants.into_iter().filter(|(v, _)| read[v.index()]) {
            g.value_mut(v).constant = Some(t);
            g.initializers.push(v);
        }
        Changed::Yes
    }
}

/// Removes nodes of the closed op set whose outputs nothing reads.
/// Opaque nodes are kept: their effects are not known.
pub fn eliminate_dead(model: &mut Model) -> Changed {
    {
        let g = &mut model.graph;
        let mut used = vec![false; g.num_values()];
        for &v in &g.outputs {
            used[v.index()] = true;
        }
        let mut dead = Vec::new();
        let order: Vec<NodeId> = g.order.clone();
        for &id in order.iter().rev() {
            let node = g.node(id);
            let live = matches!(node.op, Op::Opaque(_)) || node.outputs.iter().flatten().any(|v| used[v.index()]);
            if live {
                for v in node.inputs.iter().flatten().chain(&node.captures) {
                    used[v.index()] = true;
                }
            } else {
                dead.push(id);
            }
        }
        // Initializers nothing reads any more go too when a removed node read them;
        // ones the source model left unused stay.
        let mut read_by_dead = vec![false; g.num_values()];
        for &id in &dead {
            for v in g.node(id).inputs.iter().flatten() {
                read_by_dead[v.index()] = true;
            }
        }
        g.remove_nodes(&dead);
        let before = g.initializers.len();
        let drop: Vec<_> =
            g.initializers.iter().copied().filter(|v| !used[v.index()]).filter(|&v| read_by_dead[v.index()]).collect();
        for &v in &drop {
            g.value_mut(v).constant = None;
        }
        g.initializers.retain(|v| !drop.contains(v));
        if dead.is_empty() && g.initializers.len() == before {
            Changed::No
        } else {
            Changed::Yes
        }
    }
}

/// Turns `Constant` nodes holding float tensors into initializers, so that the
/// coupling analysis and the slicer treat them like any other constant
/// (TorchScript exports keep RoPE's `inv_freq` in such a node).
pub fn hoist_constants(model: &mut Model) -> Changed {
    {
        let g = &mut model.graph;
        let mut hoisted = Vec::new();
        for (id, node) in g.nodes() {
            if let (Op::Constant { value, .. }, [Some(out)]) = (&node.op, node.outputs.as_slice()) {
                if value.dtype.is_float() && value.numel() > 1 {
                    hoisted.push((id, *out, value.clone()));
                }
            }
        }
        if hoisted.is_empty() {
            return Changed::No;
        }
        let ids: Vec<NodeId> = hoisted.iter().map(|h| h.0).collect();
        g.remove_nodes(&ids);
        for (_, v, mut t) in hoisted {
            t.origin = None;
            g.value_mut(v).constant = Some(t);
            g.initializers.push(v);
        }
        Changed::Yes
    }
}
