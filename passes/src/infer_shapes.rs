//! `infer-shapes`: computes the type of every value.

use crate::pipeline::Changed;
use ecospac_ir::infer::{propagate, SymSource};
use ecospac_ir::{EntityId, Model, SymId, ValueId};

/// Hands out the ids the graph will give its next symbols.
struct Pending {
    next: usize,
    count: usize,
}

impl SymSource for Pending {
    fn fresh(&mut self) -> SymId {
        self.count += 1;
        SymId::new(self.next + self.count - 1)
    }
}

/// Infers every value's type from the graph inputs, constants and op rules;
/// values behind opaque ops keep their declared types. Dims that cannot be
/// computed get fresh symbols (`unkN`). Fails on a contradiction, naming it.
pub fn infer_shapes(model: &mut Model) -> Result<Changed, String> {
    {
        let g = &mut model.graph;
        let mut pending = Pending { next: g.symbols().count(), count: 0 };
        let (facts, issues) = propagate(g, &mut pending);
        if let Some(issue) = issues.first() {
            return Err(ecospac_ir::verify::describe_issue(g, issue));
        }
        for _ in 0..pending.count {
            g.fresh_symbol("unk");
        }
        let mut changed = Changed::No;
        for (i, fact) in facts.into_iter().enumerate() {
            let v = ValueId::new(i);
            let ty = fact.and_then(|f| f.ty);
            if g.value(v).ty != ty {
                g.set_inferred(v, ty);
                changed = Changed::Yes;
            }
        }
        Ok(changed)
    }
}
