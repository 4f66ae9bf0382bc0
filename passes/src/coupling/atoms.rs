//! Index spaces ("atoms") under union-find, each refinable into a product
//! (reshape: outer × inner) or a concatenation (split, concat, slice) of
//! smaller atoms. Unifying two atoms aligns their refinements, refining either
//! side as needed; structures that cannot be aligned pin both.
//!
//! This is hand-written rather than built on `petgraph` (which the IR uses for
//! node order and cycles): the union-find carries a refinement per class and
//! unifies refinements recursively, which no graph algorithm of a general
//! graph crate provides (egg keeps its e-class union-find hand-written for the
//! same reason).

use ecospac_ir::axes::PinReason;
use ecospac_ir::Dim;

/// An index space.
pub type AtomId = u32;

/// How deep unification follows refinements of refinements before it pins
/// instead (reshapes of transformer graphs nest three or four deep).
pub const MAX_DEPTH: usize = 256;

/// How an atom splits.
#[derive(Clone, Debug, PartialEq)]
pub enum Refine {
    /// Row-major product, outer first.
    Product(Vec<AtomId>),
    /// Concatenation, first part first.
    Concat(Vec<AtomId>),
}

#[derive(Clone, Debug)]
struct Atom {
    size: Dim,
    parent: AtomId,
    refine: Option<Refine>,
    pins: Vec<PinReason>,
}

/// The atom arena.
#[derive(Default, Debug)]
pub struct Atoms {
    atoms: Vec<Atom>,
}

impl Atoms {
    /// A new atom of `size`.
    pub fn fresh(&mut self, size: Dim) -> AtomId {
        let id = self.atoms.len() as AtomId;
        self.atoms.push(Atom { size, parent: id, refine: None, pins: Vec::new() });
        id
    }
    /// Number of atoms ever made.
    pub fn len(&self) -> AtomId {
        self.atoms.len() as AtomId
    }
    /// The representative of `a`'s class.
    pub fn find(&mut self, a: AtomId) -> AtomId {
        let mut r = a;
        while self.atoms[r as usize].parent != r {
            r = self.atoms[r as usize].parent;
        }
        let mut x = a;
        while self.atoms[x as usize].parent != r {
            let next = self.atoms[x as usize].parent;
            self.atoms[x as usize].parent = r;
            x = next;
        }
        r
    }
    /// The size of `a`.
    pub fn size(&self, a: AtomId) -> &Dim {
        &self.atoms[a as usize].size
    }
    /// The refinement of `a`'s class.
    pub fn refinement(&mut self, a: AtomId) -> Option<Refine> {
        let r = self.find(a);
        self.atoms[r as usize].refine.clone()
    }
    /// Why `a`'s class is pinned (empty when it is not).
    pub fn pins(&mut self, a: AtomId) -> Vec<PinReason> {
        let r = self.find(a);
        self.atoms[r as usize].pins.clone()
    }
    /// Pins `a`'s class and everything it refines into.
    pub fn pin(&mut self, a: AtomId, why: PinReason) {
        self.pin_all(&[a], why);
    }
    /// Pins the classes of `roots` and everything they refine into, each class once.
    pub fn pin_all(&mut self, roots: &[AtomId], why: PinReason) {
        let mut stack = roots.to_vec();
        let mut seen = std::collections::HashSet::new();
        while let Some(x) = stack.pop() {
            let r = self.find(x);
            if !seen.insert(r) {
                continue;
            }
            if !self.atoms[r as usize].pins.contains(&why) {
                self.atoms[r as usize].pins.push(why);
            }
            if let Some(Refine::Product(c) | Refine::Concat(c)) = &self.atoms[r as usize].refine {
                stack.extend(c.iter().copied());
            }
        }
    }
    /// Sets the refinement of an unrefined class.
    pub fn set_refine(&mut self, a: AtomId, refine: Refine) {
        let r = self.find(a);
        debug_assert!(self.atoms[r as usize].refine.is_none());
        let pins = self.atoms[r as usize].pins.clone();
        let (Refine::Product(c) | Refine::Concat(c)) = &refine;
        for &child in c {
            for &p in &pins {
                self.pin(child, p);
            }
        }
        self.atoms[r as usize].refine = Some(refine);
    }
    fn union(&mut self, a: AtomId, b: AtomId) {
        let (ra, rb) = (self.find(a), self.find(b));
        if ra == rb {
            return;
        }
        let pins = std::mem::take(&mut self.atoms[rb as usize].pins);
        self.atoms[rb as usize].parent = ra;
        if self.atoms[ra as usize].refine.is_none() {
            self.atoms[ra as usize].refine = self.atoms[rb as usize].refine.take();
        }
        for p in pins {
            self.pin(ra, p);
        }
        let pa = self.atoms[ra as usize].pins.clone();
        for p in pa {
            self.pin(ra, p);
        }
    }
    /// The leaf classes under `a`, in order, through refinements of one kind
    /// (`Some(true)`: products, `Some(false)`: concatenations) or of both
    /// (`None`). `None` when there are more than `limit`, or when a class
    /// refines into itself (a cycle, which only contradictory graphs make).
    pub fn walk(&mut self, a: AtomId, kind: Option<bool>, limit: usize) -> Option<Vec<AtomId>> {
        let mut out = Vec::new();
        let mut path: std::collections::HashSet<AtomId> = std::collections::HashSet::new();
        // (atom, false) enters it; (class, true) leaves it.
        let mut stack = vec![(a, false)];
        while let Some((x, exit)) = stack.pop() {
            let r = self.find(x);
            if exit {
                path.remove(&r);
                continue;
            }
            let children = match self.refinement(r) {
                Some(Refine::Product(c)) if kind != Some(false) => c,
                Some(Refine::Concat(c)) if kind != Some(true) => c,
                _ => {
                    if out.len() >= limit {
                        return None;
                    }
                    out.push(r);
                    continue;
                }
            };
            if !path.insert(r) {
                return None;
            }
            stack.push((r, true));
            stack.extend(children.iter().rev().map(|&c| (c, false)));
        }
        Some(out)
    }
    fn conflict(&mut self, a: AtomId, b: AtomId) {
        self.pin(a, PinReason::Conflict);
        self.pin(b, PinReason::Conflict);
        self.union(a, b);
    }
    /// States that `a` and `b` are the same index space.
    pub fn unify(&mut self, a: AtomId, b: AtomId) {
        self.unify_at(a, b, 0);
    }
    /// [`Atoms::unify`] at a nesting `depth` of refinements: past
    /// [`MAX_DEPTH`] the two are pinned instead (no recursion the input controls).
    fn unify_at(&mut self, a: AtomId, b: AtomId, depth: usize) {
        let (ra, rb) = (self.find(a), self.find(b));
        if ra == rb {
            return;
        }
        if self.atoms[ra as usize].size != self.atoms[rb as usize].size || depth > MAX_DEPTH {
            return self.conflict(ra, rb);
        }
        match (self.refinement(ra), self.refinement(rb)) {
            (None, None) => {}
            (Some(r), None) | (None, Some(r)) => {
                let (bare, _) = if self.refinement(ra).is_none() { (ra, rb) } else { (rb, ra) };
                let copy = match &r {
                    Refine::Product(c) => {
                        Refine::Product(c.iter().map(|&x| self.fresh(self.size(x).clone())).collect())
                    }
                    Refine::Concat(c) => Refine::Concat(c.iter().map(|&x| self.fresh(self.size(x).clone())).collect()),
                };
                self.set_refine(bare, copy);
                return self.unify_at(ra, rb, depth + 1);
            }
            (Some(Refine::Product(_)), Some(Refine::Product(_))) => {
                if !self.align(ra, rb, true, depth) {
                    return self.conflict(ra, rb);
                }
            }
            (Some(Refine::Concat(_)), Some(Refine::Concat(_))) => {
                if !self.align(ra, rb, false, depth) {
                    return self.conflict(ra, rb);
                }
            }
            _ => return self.conflict(ra, rb),
        }
        self.union(ra, rb);
    }
    /// Aligns two refinements of one kind leaf by leaf, splitting leaves as needed.
    fn align(&mut self, a: AtomId, b: AtomId, product: bool, depth: usize) -> bool {
        let (Some(mut xs), Some(mut ys)) =
            (self.walk(a, Some(product), usize::MAX), self.walk(b, Some(product), usize::MAX))
        else {
            return false;
        };
        let one = Dim::known(1);
        if product {
            xs.retain(|&x| self.atoms[x as usize].size != one);
            ys.retain(|&y| self.atoms[y as usize].size != one);
        }
        let (mut i, mut j) = (0, 0);
        while i < xs.len() && j < ys.len() {
            let (x, y) = (self.find(xs[i]), self.find(ys[j]));
            let (sx, sy) = (self.size(x).clone(), self.size(y).clone());
            if sx == sy {
                self.unify_at(x, y, depth + 1);
                i += 1;
                j += 1;
                continue;
            }
            // Split the larger leaf so that its first piece matches the smaller one.
            let (big, small, big_is_x) = if self.larger(&sx, &sy, product) { (x, sy, true) } else { (y, sx, false) };
            if self.refinement(big).is_some() {
                return false;
            }
            let rest = match self.remainder(self.size(big).clone(), &small, product) {
                Some(r) => r,
                None => return false,
            };
            let (p, q) = (self.fresh(small), self.fresh(rest));
            self.set_refine(big, if product { Refine::Product(vec![p, q]) } else { Refine::Concat(vec![p, q]) });
            let list = if big_is_x { &mut xs } else { &mut ys };
            let k = if big_is_x { i } else { j };
            list.splice(k..=k, [p, q]);
        }
        i == xs.len() && j == ys.len()
    }
    fn larger(&self, x: &Dim, y: &Dim, product: bool) -> bool {
        if product {
            x.div_exact(y).is_some()
        } else {
            matches!((x.as_known(), y.as_known()), (Some(a), Some(b)) if a > b)
        }
    }
    fn remainder(&self, big: Dim, small: &Dim, product: bool) -> Option<Dim> {
        if product {
            big.div_exact(small)
        } else {
            Some(Dim::known(big.as_known()?.checked_sub(small.as_known()?)?))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn product_refinements_align() {
        let mut a = Atoms::default();
        let hidden = a.fresh(Dim::known(768));
        let (h, d) = (a.fresh(Dim::known(12)), a.fresh(Dim::known(64)));
        let m = a.fresh(Dim::known(768));
        a.set_refine(m, Refine::Product(vec![h, d]));
        a.unify(hidden, m);
        let Some(Refine::Product(c)) = a.refinement(hidden) else { panic!("hidden is refined") };
        let found: Vec<AtomId> = c.iter().map(|&x| a.find(x)).collect();
        assert_eq!(found, vec![a.find(h), a.find(d)]);
        // [24, 32] against [12, 64] refines both to [12, 2, 32].
        let other = a.fresh(Dim::known(768));
        let (x, y) = (a.fresh(Dim::known(24)), a.fresh(Dim::known(32)));
        a.set_refine(other, Refine::Product(vec![x, y]));
        a.unify(other, hidden);
        assert!(a.pins(hidden).is_empty());
        let inner = match a.refinement(d) {
            Some(Refine::Product(c)) => c[1],
            other => panic!("{other:?}"),
        };
        assert_eq!(a.find(y), a.find(inner));
    }

    #[test]
    fn concat_refinements_align_and_conflicts_pin() {
        let mut a = Atoms::default();
        let w = a.fresh(Dim::known(30));
        let (p, q) = (a.fresh(Dim::known(10)), a.fresh(Dim::known(20)));
        a.set_refine(w, Refine::Concat(vec![p, q]));
        let v = a.fresh(Dim::known(30));
        let (r, s) = (a.fresh(Dim::known(15)), a.fresh(Dim::known(15)));
        a.set_refine(v, Refine::Concat(vec![r, s]));
        a.unify(w, v);
        assert!(a.pins(w).is_empty());
        let tail = match a.refinement(q) {
            Some(Refine::Concat(c)) => c[1],
            other => panic!("{other:?}"),
        };
        assert_eq!(a.find(s), a.find(tail));
        let prod = a.fresh(Dim::known(30));
        let (m, n) = (a.fresh(Dim::known(3)), a.fresh(Dim::known(10)));
        a.set_refine(prod, Refine::Product(vec![m, n]));
        a.unify(prod, w);
        assert_eq!(a.pins(w), vec![PinReason::Conflict]);
        assert_eq!(a.pins(p), vec![PinReason::Conflict], "pins reach the parts");
    }
}
