//! AdamW with its moments in plain tensors by parameter name, so that a shrink
//! step slices them exactly like the parameters; warmup + cosine schedule;
//! global-norm gradient clipping.

use std::collections::BTreeMap;
use tch::Tensor;

/// AdamW settings.
#[derive(Clone, Debug)]
pub struct AdamWConfig {
    /// Peak learning rate.
    pub lr: f64,
    /// First-moment decay.
    pub beta1: f64,
    /// Second-moment decay.
    pub beta2: f64,
    /// Added to the root of the second moment.
    pub eps: f64,
    /// Decoupled weight decay (matrices only; norms, biases and 1-D tensors are not decayed).
    pub weight_decay: f64,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        AdamWConfig { lr: 3e-4, beta1: 0.9, beta2: 0.95, eps: 1e-8, weight_decay: 0.1 }
    }
}

/// AdamW state: step count and moments per parameter name.
pub struct AdamW {
    /// Settings.
    pub cfg: AdamWConfig,
    /// Updates taken.
    pub step: i64,
    /// First moments.
    pub m: BTreeMap<String, Tensor>,
    /// Second moments.
    pub v: BTreeMap<String, Tensor>,
}

impl AdamW {
    /// Zero moments shaped like `params`.
    pub fn new(cfg: AdamWConfig, params: &BTreeMap<String, Tensor>) -> AdamW {
        let zeros = |t: &Tensor| t.detach().zeros_like();
        AdamW {
            cfg,
            step: 0,
            m: params.iter().map(|(k, t)| (k.clone(), zeros(t))).collect(),
            v: params.iter().map(|(k, t)| (k.clone(), zeros(t))).collect(),
        }
    }

    /// One update at learning rate `lr` from the parameters' gradients.
    pub fn update(&mut self, params: &mut BTreeMap<String, Tensor>, lr: f64) {
        self.step += 1;
        let c = &self.cfg;
        let (bc1, bc2) = (1.0 - c.beta1.powi(self.step as i32), 1.0 - c.beta2.powi(self.step as i32));
        tch::no_grad(|| {
            for (name, p) in params.iter_mut() {
                let g = p.grad();
                if !g.defined() {
                    continue;
                }
                let (Some(m), Some(v)) = (self.m.get_mut(name), self.v.get_mut(name)) else { continue };
                let _ = m.g_mul_scalar_(c.beta1).g_add_(&(&g * (1.0 - c.beta1)));
                let _ = v.g_mul_scalar_(c.beta2).g_add_(&(&g * &g * (1.0 - c.beta2)));
                if c.weight_decay > 0.0 && p.dim() >= 2 {
                    let _ = p.g_mul_scalar_(1.0 - lr * c.weight_decay);
                }
                let denom = (&*v / bc2).sqrt() + c.eps;
                let _ = p.g_sub_(&(&*m / bc1 / denom * lr));
            }
        });
    }
}

/// Scales every gradient so that their global L2 norm is at most `max_norm`; returns the norm before.
pub fn clip_grad_norm(params: &BTreeMap<String, Tensor>, max_norm: f64) -> f64 {
    tch::no_grad(|| {
        let mut total = 0.0f64;
        for p in params.values() {
            let g = p.grad();
            if g.defined() {
                total += g.pow_tensor_scalar(2).sum(tch::Kind::Double).double_value(&[]);
            }
        }
        let norm = total.sqrt();
        if max_norm > 0.0 && norm > max_norm {
            let scale = max_norm / (norm + 1e-6);
            for p in params.values() {
                let mut g = p.grad();
                if g.defined() {
                    let _ = g.g_mul_scalar_(scale);
                }
            }
        }
        norm
    })
}

/// Learning rate at `step`: linear warmup to `peak`, then cosine to `peak * min_ratio` at `total`.
pub fn lr_at(step: usize, peak: f64, warmup: usize, total: usize, min_ratio: f64) -> f64 {
    if step < warmup {
        return peak * (step + 1) as f64 / warmup as f64;
    }
    let span = total.saturating_sub(warmup).max(1) as f64;
    let progress = ((step - warmup) as f64 / span).min(1.0);
    let cosine = 0.5 * (1.0 + (std::f64::consts::PI * progress).cos());
    peak * (min_ratio + (1.0 - min_ratio) * cosine)
}
