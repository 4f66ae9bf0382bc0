//! Rotary position embedding frequencies as `transformers` computes them
//! (`modeling_rope_utils`): default, linear, llama3, yarn and longrope.

use super::config::Config;
use super::HfError;
use std::f64::consts::PI;

/// The inverse frequencies of one model.
#[derive(Clone, Debug, PartialEq)]
pub enum Frequencies {
    /// One table for every length.
    Fixed(Vec<f32>),
    /// longrope: `short` up to `original_max` positions, `long` beyond.
    Switch {
        /// Sequence lengths up to this use `short`.
        original_max: i64,
        /// Frequencies for short inputs.
        short: Vec<f32>,
        /// Frequencies for long inputs.
        long: Vec<f32>,
    },
}

/// RoPE settings: frequencies, the cos/sin scale and the rotated width.
#[derive(Clone, Debug)]
pub struct Rope {
    /// Inverse frequencies (`rotary_dim / 2` of them).
    pub freqs: Frequencies,
    /// Factor on cos and sin (yarn, longrope).
    pub attention_scaling: f32,
    /// Leading head dims that are rotated.
    pub rotary_dim: usize,
}

/// Plain RoPE over all `head_dim` dims with base `theta` (the table of
/// Gemma 3's sliding-window layers: `rope_local_base_freq`).
pub fn plain(theta: f64, head_dim: usize) -> Result<Rope, HfError> {
    if !(theta.is_finite() && theta > 1.0) || head_dim == 0 || head_dim % 2 == 1 {
        return Err(HfError::Config {
            key: "rope_local_base_freq".into(),
            problem: format!("is {theta} with head_dim {head_dim}; it must be above 1, with an even head_dim"),
        });
    }
    let freqs = (0..head_dim / 2).map(|i| 1.0 / (theta as f32).powf((2 * i) as f32 / head_dim as f32)).collect();
    Ok(Rope { freqs: Frequencies::Fixed(freqs), attention_scaling: 1.0, rotary_dim: head_dim })
}

/// Reads the RoPE settings of a LLaMA-style config with head size `head_dim`:
/// transformers 5 keeps them all in `rope_parameters` (theta, type, the type's
/// keys, `partial_rotary_factor`); 4.x has `rope_theta` and `rope_scaling` at
/// the top level. A config with both forms must agree on theta.
pub fn rope(cfg: &Config, head_dim: usize) -> Result<Rope, HfError> {
    rope_of(cfg, head_dim, None)
}

/// Whether `rope_parameters` holds one table per layer type
/// (`{"full_attention": {...}, "sliding_attention": {...}}`, transformers 5).
pub fn per_layer_type(cfg: &Config) -> bool {
    cfg.json
        .get("rope_parameters")
        .and_then(|p| p.as_object())
        .is_some_and(|o| !o.is_empty() && o.values().all(|v| v.is_object()))
}

/// [`rope`] for the layers of `layer_type` when `rope_parameters` has one
/// table per layer type (an error without a layer type, or without its table).
pub fn rope_of(cfg: &Config, head_dim: usize, layer_type: Option<&str>) -> Result<Rope, HfError> {
    let mut params = cfg.object("rope_parameters")?;
    if let Some(p) = params.take() {
        params = match (per_layer_type(cfg), layer_type) {
            (false, _) => Some(p),
            (true, Some(t)) => Some(p.object(t)?.ok_or_else(|| HfError::Config {
                key: p.path(t),
                problem: "is missing: `rope_parameters` has one table per layer type".into(),
            })?),
            (true, None) => {
                return Err(HfError::Config {
                    key: "rope_parameters".into(),
                    problem: "has one table per layer type, which ecospac builds for Gemma 3 only".into(),
                })
            }
        };
    }
    if params.is_some() && cfg.has("rope_scaling") {
        return Err(HfError::Config {
            key: "rope_scaling".into(),
            problem: "is set together with `rope_parameters` (transformers 5 keeps the scaling there); \
                      remove one of them"
                .into(),
        });
    }
    // A per-layer-type table has its own theta; the top-level one is the global layers'.
    let top_theta = match per_layer_type(cfg) {
        true => f64::NAN,
        false => cfg.f64_or("rope_theta", f64::NAN)?,
    };
    let base = match &params {
        Some(p) => {
            let t = p.f64_or("rope_theta", f64::NAN)?;
            if !t.is_nan() && !top_theta.is_nan() && t != top_theta {
                return Err(HfError::Config {
                    key: "rope_theta".into(),
                    problem: format!("is {top_theta}, but `{}` is {t}", p.path("rope_theta")),
                });
            }
            if t.is_nan() {
                top_theta
            } else {
                t
            }
        }
        None => top_theta,
    };
    let base = if base.is_nan() { 10000.0 } else { base };
    if !(base.is_finite() && base > 1.0) {
        return Err(HfError::Config { key: "rope_theta".into(), problem: format!("is {base}; it must be above 1") });
    }
    let partial = match params.as_ref().map(|p| p.f64_or("partial_rotary_factor", f64::NAN)).transpose()? {
        Some(f) if !f.is_nan() => f,
        _ => cfg.f64_or("partial_rotary_factor", 1.0)?,
    };
    if !(partial > 0.0 && partial <= 1.0) {
        return Err(HfError::Config {
            key: "partial_rotary_factor".into(),
            problem: format!("is {partial}; it must be in (0, 1]"),
        });
    }
    let dim = (head_dim as f64 * partial) as usize;
    if dim == 0 || dim % 2 == 1 {
        return Err(HfError::Config {
            key: "partial_rotary_factor".into(),
            problem: format!("gives a rotary width of {dim}, which is not a positive even number"),
        });
    }
    let max_pos = cfg.f64_or("max_position_embeddings", 2048.0)?;
    // base^(2i/dim) in float32, as torch computes it.
    let pos_freqs: Vec<f64> = (0..dim / 2).map(|i| (base as f32).powf((2 * i) as f32 / dim as f32) as f64).collect();
    let default: Vec<f64> = pos_freqs.iter().map(|p| 1.0 / p).collect();
    let to32 = |v: Vec<f64>| v.into_iter().map(|x| x as f32).collect::<Vec<f32>>();
    let Some(scaling) = params.or(cfg.object("rope_scaling")?) else {
        return Ok(Rope { freqs: Frequencies::Fixed(to32(default)), attention_scaling: 1.0, rotary_dim: dim });
    };
    let kind = match scaling.str_or("rope_type", "")? {
        k if !k.is_empty() => k,
        _ => scaling.str_or("type", "default")?,
    };
    let need = |key: &str| -> Result<f64, HfError> {
        let v = scaling.f64_or(key, f64::NAN)?;
        if v.is_nan() {
            return Err(HfError::Config { key: scaling.path(key), problem: "is missing".into() });
        }
        Ok(v)
    };
    let fixed =
        |v: Vec<f64>, s: f64| Rope { freqs: Frequencies::Fixed(to32(v)), attention_scaling: s as f32, rotary_dim: dim };
    Ok(match kind.as_str() {
        "default" => fixed(default, 1.0),
        "linear" => {
            let factor = need("factor")?;
            fixed(default.iter().map(|f| f / factor).collect(), 1.0)
        }
        "llama3" => {
            let factor = need("factor")?;
            let low = need("low_freq_factor")?;
            let high = need("high_freq_factor")?;
            let old = need("original_max_position_embeddings")?;
            let (low_wl, high_wl) = (old / low, old / high);
            let v = default
                .iter()
                .map(|&f| {
                    let wavelen = 2.0 * PI / f;
                    let scaled = if wavelen > low_wl { f / factor } else { f };
                    if wavelen < high_wl || wavelen > low_wl {
                        scaled
                    } else {
                        let smooth = (old / wavelen - low) / (high - low);
                        (1.0 - smooth) * scaled / factor + smooth * scaled
                    }
                })
                .collect();
            fixed(v, 1.0)
        }
        "yarn" => {
            let factor = need("factor")?;
            let orig = scaling.f64_or("original_max_position_embeddings", max_pos)?;
            let get_mscale = |s: f64, m: f64| if s <= 1.0 { 1.0 } else { 0.1 * m * s.ln() + 1.0 };
            let attention = match scaling.f64_or("attention_factor", f64::NAN)? {
                a if !a.is_nan() => a,
                _ => {
                    let m = scaling.f64_or("mscale", 0.0)?;
                    let m_all = scaling.f64_or("mscale_all_dim", 0.0)?;
                    if m != 0.0 && m_all != 0.0 {
                        get_mscale(factor, m) / get_mscale(factor, m_all)
                    } else {
                        get_mscale(factor, 1.0)
                    }
                }
            };
            let beta_fast = match scaling.f64_or("beta_fast", 0.0)? {
                b if b != 0.0 => b,
                _ => 32.0,
            };
            let beta_slow = match scaling.f64_or("beta_slow", 0.0)? {
                b if b != 0.0 => b,
                _ => 1.0,
            };
            let correction = |rot: f64| (dim as f64 * (orig / (rot * 2.0 * PI)).ln()) / (2.0 * base.ln());
            let (mut low, mut high) = (correction(beta_fast), correction(beta_slow));
            if scaling.bool_or("truncate", true)? {
                (low, high) = (low.floor(), high.ceil());
            }
            let (low, mut high) = (low.max(0.0), high.min(dim as f64 - 1.0));
            if low == high {
                high += 0.001;
            }
            let v = (0..dim / 2)
                .map(|i| {
                    let ramp = ((i as f32 - low as f32) / (high as f32 - low as f32)).clamp(0.0, 1.0) as f64;
                    let extrapolation = 1.0 - ramp;
                    let interp = 1.0 / (factor * pos_freqs[i]);
                    interp * (1.0 - extrapolation) + default[i] * extrapolation
                })
                .collect();
            fixed(v, attention)
        }
        "longrope" => {
            let short = scaling.f64s("short_factor")?;
            let long = scaling.f64s("long_factor")?;
            let (Some(short), Some(long)) = (short, long) else {
                return Err(HfError::Config {
                    key: scaling.path("rope_type"),
                    problem: "is longrope, which needs `short_factor` and `long_factor`".into(),
                });
            };
            for (k, f) in [("short_factor", &short), ("long_factor", &long)] {
                if f.len() != dim / 2 {
                    return Err(HfError::Config {
                        key: scaling.path(k),
                        problem: format!("has {} entries; the rotary width {dim} needs {}", f.len(), dim / 2),
                    });
                }
            }
            let mut factor = scaling.f64_or("factor", 1.0)?;
            // transformers 5 moves the key into `rope_parameters`; 4.x (Phi-3) has it at the top.
            let orig = match scaling.f64_or("original_max_position_embeddings", f64::NAN)? {
                o if o.is_nan() => cfg.f64_or("original_max_position_embeddings", f64::NAN)?,
                o => o,
            };
            let orig = if orig.is_nan() {
                max_pos
            } else {
                factor = max_pos / orig;
                orig
            };
            let attention = match scaling.f64_or("attention_factor", f64::NAN)? {
                a if !a.is_nan() => a,
                _ if factor <= 1.0 => 1.0,
                _ => (1.0 + factor.ln() / orig.ln()).sqrt(),
            };
            let table =
                |ext: &[f64]| to32(ext.iter().zip(&pos_freqs).map(|(e, p)| 1.0 / ((*e as f32) as f64 * p)).collect());
            Rope {
                freqs: Frequencies::Switch { original_max: orig as i64, short: table(&short), long: table(&long) },
                attention_scaling: attention as f32,
                rotary_dim: dim,
            }
        }
        other => {
            return Err(HfError::Config {
                key: scaling.path("rope_type"),
                problem: format!("is `{other}`; ecospac builds default, linear, llama3, yarn and longrope"),
            })
        }
    })
}
