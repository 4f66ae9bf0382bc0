//! Activation functions written out as chains of elementwise ops (as the hf
//! frontend builds them for opset 17, and as exporters write them) run as one
//! libtorch kernel: the tanh and erf GELUs and SiLU. Each chain is found by
//! its structure and its constants; the last node of the chain then computes
//! the whole function from the chain's input, and the inner nodes run only
//! when something else reads them. Results equal the chain's up to rounding;
//! training is faster (fewer kernels, fewer saved tensors).

use super::R;
use ecospac_ir::op::{BinaryOp, UnaryOp};
use ecospac_ir::{EntityId, Graph, NodeId, Op, ValueId};
use tch::Tensor;

/// A fused function.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) enum Kernel {
    /// `0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x³)))`.
    GeluTanh,
    /// `0.5 x (1 + erf(x / sqrt 2))`.
    GeluErf,
    /// `x · sigmoid(x)`.
    Silu,
}

/// A node that computes a fused function of `input`.
#[derive(Copy, Clone, Debug)]
pub(crate) struct Fused {
    /// The function.
    pub kernel: Kernel,
    /// What it is applied to.
    pub input: ValueId,
}

impl Fused {
    /// Applies the function.
    pub fn apply(&self, x: &Tensor) -> R<Tensor> {
        Ok(match self.kernel {
            Kernel::GeluTanh => x.f_gelu("tanh")?,
            Kernel::GeluErf => x.f_gelu("none")?,
            Kernel::Silu => x.f_silu()?,
        })
    }
}

struct View<'g> {
    g: &'g Graph,
    producers: Vec<Option<NodeId>>,
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-4 * b.abs().max(1e-30)
}

impl View<'_> {
    fn op(&self, v: ValueId) -> Option<(&Op, &[Option<ValueId>])> {
        let n = self.g.node(self.producers.get(v.index()).copied().flatten()?);
        (n.outputs.len() == 1).then_some((&n.op, n.inputs.as_slice()))
    }

    /// The value of a one-element float constant (an initializer or a `Constant`).
    fn scalar(&self, v: ValueId) -> Option<f64> {
        let t = match (&self.g.value(v).constant, self.op(v)) {
            (Some(t), _) => t,
            (None, Some((Op::Constant { value, .. }, _))) => value,
            _ => return None,
        };
        if !t.dtype.is_float() || t.numel() != 1 {
            return None;
        }
        t.to_f64s()?.first().copied()
    }

    fn binary(&self, v: ValueId, op: BinaryOp) -> Option<(ValueId, ValueId)> {
        match self.op(v)? {
            (Op::Binary(b), [Some(a), Some(c)]) if *b == op => Some((*a, *c)),
            _ => None,
        }
    }

    fn unary(&self, v: ValueId, op: UnaryOp) -> Option<ValueId> {
        match self.op(v)? {
            (Op::Unary(u), [Some(a)]) if *u == op => Some(*a),
            _ => None,
        }
    }

    /// `a` when `v` is `a · c` (either order) or `a / (1/c)`.
    fn times(&self, v: ValueId, c: f64) -> Option<ValueId> {
        if let Some((a, b)) = self.binary(v, BinaryOp::Mul) {
            if self.scalar(b).is_some_and(|s| close(s, c)) {
                return Some(a);
            }
            if self.scalar(a).is_some_and(|s| close(s, c)) {
                return Some(b);
            }
        }
        let (a, b) = self.binary(v, BinaryOp::Div)?;
        self.scalar(b).is_some_and(|s| close(1.0 / s, c)).then_some(a)
    }

    /// `a` when `v` is `a + c` (either order).
    fn plus(&self, v: ValueId, c: f64) -> Option<ValueId> {
        let (a, b) = self.binary(v, BinaryOp::Add)?;
        match (self.scalar(a), self.scalar(b)) {
            (_, Some(s)) if close(s, c) => Some(a),
            (Some(s), _) if close(s, c) => Some(b),
            _ => None,
        }
    }

    /// Whether `v` is `x³` (`Pow(x, 3)`, `(x·x)·x` or `x·(x·x)`).
    fn is_cube(&self, v: ValueId, x: ValueId) -> bool {
        if let Some((a, b)) = self.binary(v, BinaryOp::Pow) {
            return a == x && self.scalar(b).is_some_and(|s| close(s, 3.0));
        }
        let square = |s: ValueId| self.binary(s, BinaryOp::Mul) == Some((x, x));
        match self.binary(v, BinaryOp::Mul) {
            Some((a, b)) => (square(a) && b == x) || (a == x && square(b)),
            None => false,
        }
    }

    /// The GELU kernel when `t` is `tanh(…)` or `erf(…)` of `x`.
    fn gelu_core(&self, t: ValueId, x: ValueId) -> Option<Kernel> {
        if let Some(u) = self.unary(t, UnaryOp::Erf) {
            return (self.times(u, std::f64::consts::FRAC_1_SQRT_2) == Some(x)).then_some(Kernel::GeluErf);
        }
        let u = self.unary(t, UnaryOp::Tanh)?;
        let inner = self.times(u, (2.0 / std::f64::consts::PI).sqrt())?;
        let (a, b) = self.binary(inner, BinaryOp::Add)?;
        let cubic = |c: ValueId| self.times(c, 0.044715).is_some_and(|c3| self.is_cube(c3, x));
        ((a == x && cubic(b)) || (b == x && cubic(a))).then_some(Kernel::GeluTanh)
    }

    /// A GELU or SiLU that ends in `v`.
    fn fused(&self, v: ValueId) -> Option<Fused> {
        let (a, b) = self.binary(v, BinaryOp::Mul)?;
        // SiLU: x · sigmoid(x).
        for (x, s) in [(a, b), (b, a)] {
            if self.unary(s, UnaryOp::Sigmoid) == Some(x) {
                return Some(Fused { kernel: Kernel::Silu, input: x });
            }
        }
        // GELU: (x · 0.5) · (1 + t), or (x · (1 + t)) · 0.5.
        for (half, rest) in [(a, b), (b, a)] {
            if let (Some(x), Some(t)) = (self.times(half, 0.5), self.plus(rest, 1.0)) {
                if let Some(kernel) = self.gelu_core(t, x) {
                    return Some(Fused { kernel, input: x });
                }
            }
        }
        let whole = self.times(v, 0.5)?;
        let (a, b) = self.binary(whole, BinaryOp::Mul)?;
        for (x, rest) in [(a, b), (b, a)] {
            if let Some(t) = self.plus(rest, 1.0) {
                if let Some(kernel) = self.gelu_core(t, x) {
                    return Some(Fused { kernel, input: x });
                }
            }
        }
        None
    }
}

/// For each node (by index), the fused function it computes, if it ends one.
pub(crate) fn find(g: &Graph) -> Vec<Option<Fused>> {
    let view = View { g, producers: g.producers() };
    let len = g.order.iter().map(|n| n.index() + 1).max().unwrap_or(0);
    let mut out = vec![None; len];
    for &n in &g.order {
        let node = g.node(n);
        if let (Op::Binary(BinaryOp::Mul), [Some(y)]) = (&node.op, node.outputs.as_slice()) {
            out[n.index()] = view.fused(*y);
        }
    }
    out
}
