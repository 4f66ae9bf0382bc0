//! Decoder-only language models: GPT-2, and the LLaMA family (LLaMA, Mistral,
//! Qwen2, Qwen3, Phi-3, Gemma 2, Gemma 3): GQA, RoPE, SwiGLU and GeGLU, RMS
//! norm, fused projections, per-head query/key norms, and Gemma's ways: norms
//! scaling by `1 + w` and around both sublayers, scaled embeddings, tanh
//! soft-capping of attention scores and logits, sliding-window and global
//! layers with their own RoPE tables.

use super::build::{Act, Builder};
use super::config::Config;
use super::rope::{per_layer_type, rope, rope_of, Frequencies, Rope};
use super::HfError;
use ecospac_ir::op::{BinaryOp, UnaryOp};
use ecospac_ir::{DType, Op, ValueId};

/// The additive mask value `transformers` uses for float32.
pub(super) const MASK_MIN: f32 = f32::MIN;

/// Multi-head attention on projected `q`, `k`, `v` (`[B, S, heads·d]`), with an
/// additive `bias` (`[B, 1, S, S]` or broadcastable) and optional rotary tables.
pub(super) struct Attention {
    /// Query heads.
    pub heads: i64,
    /// Key/value heads (GQA when fewer than `heads`).
    pub kv_heads: i64,
    /// Score scale: `Mul` by this, or `Div` by its inverse when `divide`.
    pub scale: f32,
    /// Divide by `1/scale` instead of multiplying (as GPT-2 and BERT do).
    pub divide: bool,
    /// cos and sin (`[S, 1, rotary]`) and the rotated width.
    pub rope: Option<(ValueId, ValueId, i64)>,
    /// RMS norms over each query and key head's dims before RoPE (Qwen3,
    /// Gemma 3): the weight name prefixes and epsilon.
    pub qk_norm: Option<(String, String, f64)>,
    /// Norms scale by `1 + w` (Gemma).
    pub plus_one: bool,
    /// Scores become `cap · tanh(scores / cap)` before the mask (Gemma 2).
    pub softcap: Option<f32>,
}

impl Attention {
    /// The attention output, `[B, S, heads·d]`.
    pub fn apply(
        &self,
        b: &mut Builder,
        q: ValueId,
        k: ValueId,
        v: ValueId,
        bias: ValueId,
        d: i64,
    ) -> Result<ValueId, HfError> {
        let mut q4 = b.reshape(q, &[0, 0, self.heads, -1]);
        let mut k4 = b.reshape(k, &[0, 0, self.kv_heads, -1]);
        let mut v4 = b.reshape(v, &[0, 0, self.kv_heads, -1]);
        if let Some((qn, kn, eps)) = &self.qk_norm {
            q4 = b.rms_norm_with(q4, qn, d, *eps, self.plus_one)?;
            k4 = b.rms_norm_with(k4, kn, d, *eps, self.plus_one)?;
        }
        if let Some((cos, sin, rot)) = self.rope {
            q4 = rotate(b, q4, cos, sin, rot, d);
            k4 = rotate(b, k4, cos, sin, rot, d);
        }
        if self.kv_heads < self.heads {
            let rep = self.heads / self.kv_heads;
            k4 = repeat_heads(b, k4, rep, self.heads);
            v4 = repeat_heads(b, v4, rep, self.heads);
        }
        let qh = b.transpose(q4, &[0, 2, 1, 3]);
        let kt = b.transpose(k4, &[0, 2, 3, 1]);
        let vh = b.transpose(v4, &[0, 2, 1, 3]);
        let scores = b.node(Op::MatMul, &[qh, kt]);
        let scaled = if self.divide {
            let s = b.scalar(1.0 / self.scale);
            b.bin(BinaryOp::Div, scores, s)
        } else {
            let s = b.scalar(self.scale);
            b.mul(scores, s)
        };
        let scaled = match self.softcap {
            Some(cap) => soft_cap(b, scaled, cap),
            None => scaled,
        };
        let masked = b.add(scaled, bias);
        let probs = b.softmax(masked);
        let ctx = b.node(Op::MatMul, &[probs, vh]);
        let ctx = b.transpose(ctx, &[0, 2, 1, 3]);
        Ok(b.reshape(ctx, &[0, 0, -1]))
    }
}

/// `cap · tanh(x / cap)`.
fn soft_cap(b: &mut Builder, x: ValueId, cap: f32) -> ValueId {
    let c = b.scalar(cap);
    let y = b.bin(BinaryOp::Div, x, c);
    let t = b.un(UnaryOp::Tanh, y);
    b.mul(t, c)
}

/// RoPE on `[B, S, H, d]` with tables `[S, 1, rot]`: rotate-half on the first `rot` dims.
fn rotate(b: &mut Builder, x: ValueId, cos: ValueId, sin: ValueId, rot: i64, d: i64) -> ValueId {
    let (x_rot, x_pass) = if rot < d {
        let parts = b.split(x, -1, &[rot, d - rot]);
        (parts[0], Some(parts[1]))
    } else {
        (x, None)
    };
    let halves = b.split(x_rot, -1, &[rot / 2, rot / 2]);
    let neg = b.un(UnaryOp::Neg, halves[1]);
    let rotated = b.concat(&[neg, halves[0]], -1);
    let a = b.mul(x_rot, cos);
    let c = b.mul(rotated, sin);
    let y = b.add(a, c);
    match x_pass {
        Some(p) => b.concat(&[y, p], -1),
        None => y,
    }
}

/// `[B, S, kv, d]` → `[B, S, kv·rep, d]`, each key/value head repeated `rep` times in place.
fn repeat_heads(b: &mut Builder, x: ValueId, rep: i64, heads: i64) -> ValueId {
    let x5 = b.unsqueeze(x, &[3]);
    let shape = b.ints(&[1, 1, 1, rep, 1]);
    let x5 = b.node(Op::Expand, &[x5, shape]);
    b.reshape(x5, &[0, 0, heads, -1])
}

/// Causal (optionally sliding-window) and padding mask as an additive bias `[B, 1, S, S]`.
fn causal_bias(b: &mut Builder, mask: ValueId, pos: ValueId, window: Option<i64>) -> ValueId {
    let qi = b.unsqueeze(pos, &[1]);
    let kj = b.unsqueeze(pos, &[0]);
    let mut allowed = b.bin(BinaryOp::LessOrEqual, kj, qi);
    if let Some(w) = window {
        let diff = b.bin(BinaryOp::Sub, qi, kj);
        let w = b.i64s(&[], &[w]);
        let near = b.bin(BinaryOp::Less, diff, w);
        allowed = b.bin(BinaryOp::And, allowed, near);
    }
    let pad = b.cast(mask, DType::Bool);
    let pad = b.unsqueeze(pad, &[1, 2]);
    let allowed = b.bin(BinaryOp::And, pad, allowed);
    let zero = b.scalar(0.0);
    let min = b.scalar(MASK_MIN);
    b.node(Op::Where, &[allowed, zero, min])
}

/// `input_ids`, `attention_mask` and the positions `0..S`.
fn token_inputs(b: &mut Builder) -> (ValueId, ValueId, ValueId) {
    let shape = vec![b.sym("batch"), b.sym("sequence")];
    let ids = b.input("input_ids", DType::I64, shape.clone());
    let mask = b.input("attention_mask", DType::I64, shape);
    let len = b.dim_of(ids, 1);
    let pos = b.arange(len);
    (ids, mask, pos)
}

/// `last_hidden_state`, and `logits` from `lm_head.weight` or the tied
/// embedding (soft-capped at `softcap`, Gemma 2).
fn outputs(
    b: &mut Builder,
    cfg: &Config,
    h: ValueId,
    embed: &str,
    (vocab, hidden): (i64, i64),
    softcap: Option<f32>,
) -> Result<(), HfError> {
    b.output(h, "last_hidden_state");
    let is_lm = cfg.value("architectures").and_then(|a| a.as_array()).is_some_and(|a| {
        a.iter().filter_map(|x| x.as_str()).any(|x| x.ends_with("LMHeadModel") || x.ends_with("ForCausalLM"))
    });
    let head = match b.has("lm_head.weight") {
        true => "lm_head.weight".to_string(),
        false if is_lm && cfg.bool_or("tie_word_embeddings", true)? => embed.to_string(),
        false => return Ok(()),
    };
    let w = b.weight(&head, &[vocab, hidden])?;
    let wt = b.transpose(w, &[1, 0]);
    let logits = b.node(Op::MatMul, &[h, wt]);
    let logits = match softcap {
        Some(cap) => soft_cap(b, logits, cap),
        None => logits,
    };
    b.output(logits, "logits");
    Ok(())
}

/// GPT-2 (`GPT2Model` or `GPT2LMHeadModel` weights).
pub fn gpt2(b: &mut Builder, cfg: &Config) -> Result<(), HfError> {
    let hidden = cfg.usize("n_embd")? as i64;
    let layers = cfg.usize("n_layer")?;
    let heads = cfg.usize("n_head")? as i64;
    let inner = cfg.usize_opt("n_inner")?.map_or(4 * hidden, |n| n as i64);
    let vocab = cfg.usize("vocab_size")? as i64;
    let positions = cfg.usize("n_positions")? as i64;
    let eps = cfg.f64_or("layer_norm_epsilon", 1e-5)?;
    let act = Act::parse("activation_function", &cfg.str_or("activation_function", "gelu_new")?)?;
    let scale_weights = cfg.bool_or("scale_attn_weights", true)?;
    let by_layer = cfg.bool_or("scale_attn_by_inverse_layer_idx", false)?;
    if hidden % heads != 0 {
        return Err(HfError::Config { key: "n_head".into(), problem: format!("does not divide n_embd {hidden}") });
    }
    let d = hidden / heads;
    let p = if b.has("transformer.wte.weight") { "transformer." } else { "" };

    let (ids, mask, pos) = token_inputs(b);
    let wte = b.weight(&format!("{p}wte.weight"), &[vocab, hidden])?;
    let wpe = b.weight(&format!("{p}wpe.weight"), &[positions, hidden])?;
    let tok = b.node(Op::Gather { axis: 0 }, &[wte, ids]);
    let posv = b.node(Op::Gather { axis: 0 }, &[wpe, pos]);
    let mut h = b.add(tok, posv);
    let bias = causal_bias(b, mask, pos, None);
    for i in 0..layers {
        b.scope = format!("h.{i}");
        let l = format!("{p}h.{i}");
        let x = b.layer_norm(h, &format!("{l}.ln_1"), hidden, eps)?;
        let qkv = b.conv1d(x, &format!("{l}.attn.c_attn"), hidden, 3 * hidden)?;
        let parts = b.split(qkv, -1, &[hidden, hidden, hidden]);
        let mut scale = if scale_weights { 1.0 / (d as f32).sqrt() } else { 1.0 };
        if by_layer {
            scale /= (i + 1) as f32;
        }
        let attn = Attention {
            heads,
            kv_heads: heads,
            scale,
            divide: true,
            rope: None,
            qk_norm: None,
            plus_one: false,
            softcap: None,
        };
        let ctx = attn.apply(b, parts[0], parts[1], parts[2], bias, d)?;
        let a = b.conv1d(ctx, &format!("{l}.attn.c_proj"), hidden, hidden)?;
        h = b.add(a, h);
        let x = b.layer_norm(h, &format!("{l}.ln_2"), hidden, eps)?;
        let up = b.conv1d(x, &format!("{l}.mlp.c_fc"), hidden, inner)?;
        let up = b.act(up, act);
        let down = b.conv1d(up, &format!("{l}.mlp.c_proj"), inner, hidden)?;
        h = b.add(down, h);
        // The FFN width is `n_inner` (4·n_embd when null).
        for (t, axis) in [("c_fc.weight", 1), ("c_fc.bias", 0), ("c_proj.weight", 0)] {
            b.sized_by(&format!("{l}.mlp.{t}"), axis, "n_inner", inner);
        }
    }
    b.scope = String::new();
    let h = b.layer_norm(h, &format!("{p}ln_f"), hidden, eps)?;
    outputs(b, cfg, h, &format!("{p}wte.weight"), (vocab, hidden), None)
}

/// The RoPE tables `cos`, `sin` (`[S, 1, rot]`) of `rope`, its inverse
/// frequencies stored under `name`.
fn rope_tables(b: &mut Builder, rope: &Rope, ids: ValueId, pos: ValueId, name: &str) -> (ValueId, ValueId) {
    let rot = rope.rotary_dim as i64;
    let inv = match &rope.freqs {
        Frequencies::Fixed(f) => b.named_f32s(name, &[rot / 2], f),
        Frequencies::Switch { original_max, short, long } => {
            let len = b.dim_of(ids, 1);
            let limit = b.ints(&[*original_max]);
            let is_long = b.bin(BinaryOp::Greater, len, limit);
            let long = b.named_f32s(&format!("{name}.long"), &[rot / 2], long);
            let short = b.named_f32s(&format!("{name}.short"), &[rot / 2], short);
            b.node(Op::Where, &[is_long, long, short])
        }
    };
    let posf = b.cast(pos, DType::F32);
    let posf = b.unsqueeze(posf, &[1]);
    let freqs = b.mul(posf, inv);
    let emb = b.concat(&[freqs, freqs], -1);
    let mut cos = b.un(UnaryOp::Cos, emb);
    let mut sin = b.un(UnaryOp::Sin, emb);
    if rope.attention_scaling != 1.0 {
        let s = b.scalar(rope.attention_scaling);
        cos = b.mul(cos, s);
        sin = b.mul(sin, s);
    }
    (b.unsqueeze(cos, &[1]), b.unsqueeze(sin, &[1]))
}

/// A `*_softcapping` key: `None` when null or absent.
fn softcap(cfg: &Config, key: &str) -> Result<Option<f32>, HfError> {
    let cap = cfg.f64_or(key, f64::NAN)?;
    if cap.is_nan() {
        return Ok(None);
    }
    if !(cap.is_finite() && cap > 0.0) {
        return Err(HfError::Config { key: key.into(), problem: format!("is {cap}; it must be positive") });
    }
    Ok(Some(cap as f32))
}

/// LLaMA, Mistral, Qwen2, Qwen3, Phi-3, Gemma 2 and Gemma 3 (text).
pub fn llama(b: &mut Builder, cfg: &Config, model_type: &str) -> Result<(), HfError> {
    let gemma = matches!(model_type, "gemma2" | "gemma3_text");
    let hidden = cfg.usize("hidden_size")? as i64;
    let inter = cfg.usize("intermediate_size")? as i64;
    let layers = cfg.usize("num_hidden_layers")?;
    let heads = cfg.usize("num_attention_heads")? as i64;
    let kv_heads = cfg.usize_opt("num_key_value_heads")?.map_or(heads, |n| n as i64);
    let vocab = cfg.usize("vocab_size")? as i64;
    let d = cfg.usize_opt("head_dim")?.map_or(hidden / heads, |n| n as i64);
    let eps = cfg.f64_or("rms_norm_eps", 1e-6)?;
    let act = match gemma {
        true => Act::parse("hidden_activation", &cfg.str_or("hidden_activation", "gelu_pytorch_tanh")?)?,
        false => Act::parse("hidden_act", &cfg.str_or("hidden_act", "silu")?)?,
    };
    if heads % kv_heads != 0 {
        return Err(HfError::Config {
            key: "num_key_value_heads".into(),
            problem: format!("{kv_heads} does not divide num_attention_heads {heads}"),
        });
    }
    // Gemma scales scores by query_pre_attn_scalar^-1/2 and may soft-cap them and the logits.
    let scale = match gemma {
        true => (cfg.usize("query_pre_attn_scalar")? as f32).powf(-0.5),
        false => (d as f32).powf(-0.5),
    };
    let (attn_cap, final_cap) = match gemma {
        true => (softcap(cfg, "attn_logit_softcapping")?, softcap(cfg, "final_logit_softcapping")?),
        false => (None, None),
    };
    let (sliding, window) = sliding_layers(cfg, model_type, layers)?;
    // Gemma 3's sliding-window layers rotate by a table of their own: in
    // `rope_parameters.sliding_attention` (transformers 5) or from `rope_local_base_freq`.
    let (rope, local_rope) = match model_type {
        "gemma3_text" if per_layer_type(cfg) => (
            rope_of(cfg, d as usize, Some("full_attention"))?,
            Some(rope_of(cfg, d as usize, Some("sliding_attention"))?),
        ),
        "gemma3_text" => (
            rope(cfg, d as usize)?,
            Some(super::rope::plain(cfg.f64_or("rope_local_base_freq", 10_000.0)?, d as usize)?),
        ),
        _ => (rope(cfg, d as usize)?, None),
    };
    let p = if b.has("model.embed_tokens.weight") { "model." } else { "" };

    let (ids, mask, pos) = token_inputs(b);
    let embed_name = format!("{p}embed_tokens.weight");
    let embed = b.weight(&embed_name, &[vocab, hidden])?;
    let mut h = b.node(Op::Gather { axis: 0 }, &[embed, ids]);
    if gemma {
        let s = b.scalar((hidden as f32).sqrt());
        h = b.mul(h, s);
    }
    let global = rope_tables(b, &rope, ids, pos, "rope.inv_freq");
    let local = local_rope.as_ref().map(|r| rope_tables(b, r, ids, pos, "rope.local.inv_freq"));

    let mut biases: Vec<(Option<i64>, ValueId)> = Vec::new();
    for (i, &is_sliding) in sliding.iter().enumerate() {
        let window = window.filter(|_| is_sliding);
        b.scope = format!("layers.{i}");
        let l = format!("{p}layers.{i}");
        let bias = match biases.iter().find(|(w, _)| *w == window) {
            Some((_, v)) => *v,
            None => {
                let v = causal_bias(b, mask, pos, window);
                biases.push((window, v));
                v
            }
        };
        let x = b.rms_norm_with(h, &format!("{l}.input_layernorm"), hidden, eps, gemma)?;
        let (q, k, v) = if b.has(&format!("{l}.self_attn.qkv_proj.weight")) {
            let qkv = b.linear(x, &format!("{l}.self_attn.qkv_proj"), hidden, (heads + 2 * kv_heads) * d)?;
            let parts = b.split(qkv, -1, &[heads * d, kv_heads * d, kv_heads * d]);
            (parts[0], parts[1], parts[2])
        } else {
            let q = b.linear(x, &format!("{l}.self_attn.q_proj"), hidden, heads * d)?;
            let k = b.linear(x, &format!("{l}.self_attn.k_proj"), hidden, kv_heads * d)?;
            let v = b.linear(x, &format!("{l}.self_attn.v_proj"), hidden, kv_heads * d)?;
            (q, k, v)
        };
        let qk_norm = matches!(model_type, "qwen3" | "gemma3_text")
            .then(|| (format!("{l}.self_attn.q_norm"), format!("{l}.self_attn.k_norm"), eps));
        let (cos, sin) = match local {
            Some(tables) if is_sliding => tables,
            _ => global,
        };
        let attn = Attention {
            heads,
            kv_heads,
            scale,
            divide: false,
            rope: Some((cos, sin, rope.rotary_dim as i64)),
            qk_norm,
            plus_one: gemma,
            softcap: attn_cap,
        };
        let ctx = attn.apply(b, q, k, v, bias, d)?;
        let mut a = b.linear(ctx, &format!("{l}.self_attn.o_proj"), heads * d, hidden)?;
        if gemma {
            a = b.rms_norm_with(a, &format!("{l}.post_attention_layernorm"), hidden, eps, true)?;
        }
        h = b.add(h, a);
        let x = match gemma {
            true => b.rms_norm_with(h, &format!("{l}.pre_feedforward_layernorm"), hidden, eps, true)?,
            false => b.rms_norm(h, &format!("{l}.post_attention_layernorm"), hidden, eps)?,
        };
        let m = format!("{l}.mlp");
        let (gate, up) = if b.has(&format!("{m}.gate_up_proj.weight")) {
            let gu = b.linear(x, &format!("{m}.gate_up_proj"), hidden, 2 * inter)?;
            b.sized_by(&format!("{m}.gate_up_proj.weight"), 0, "intermediate_size", inter);
            let parts = b.split(gu, -1, &[inter, inter]);
            (parts[0], parts[1])
        } else {
            let gate = b.linear(x, &format!("{m}.gate_proj"), hidden, inter)?;
            let up = b.linear(x, &format!("{m}.up_proj"), hidden, inter)?;
            for t in ["gate_proj", "up_proj"] {
                b.sized_by(&format!("{m}.{t}.weight"), 0, "intermediate_size", inter);
                b.sized_by(&format!("{m}.{t}.bias"), 0, "intermediate_size", inter);
            }
            (gate, up)
        };
        let g = b.act(gate, act);
        let gu = b.mul(g, up);
        let mut down = b.linear(gu, &format!("{m}.down_proj"), inter, hidden)?;
        b.sized_by(&format!("{m}.down_proj.weight"), 1, "intermediate_size", inter);
        if gemma {
            down = b.rms_norm_with(down, &format!("{l}.post_feedforward_layernorm"), hidden, eps, true)?;
        }
        h = b.add(h, down);
    }
    b.scope = String::new();
    let h = b.rms_norm_with(h, &format!("{p}norm"), hidden, eps, gemma)?;
    outputs(b, cfg, h, &embed_name, (vocab, hidden), final_cap)
}

/// Which layers are sliding-window layers (`layer_types`, else the family's
/// rule), and the window they attend over (`None`: no window is set, so
/// they attend to everything before them).
fn sliding_layers(cfg: &Config, model_type: &str, layers: usize) -> Result<(Vec<bool>, Option<i64>), HfError> {
    let window = cfg.usize_opt("sliding_window")?.map(|w| w as i64);
    if let Some(types) = cfg.value("layer_types").and_then(|t| t.as_array()) {
        if types.len() != layers {
            return Err(HfError::Config {
                key: "layer_types".into(),
                problem: format!("has {} entries for {layers} layers", types.len()),
            });
        }
        let flags = types
            .iter()
            .map(|t| match t.as_str() {
                Some("sliding_attention") => Ok(true),
                Some("full_attention") => Ok(false),
                _ => Err(HfError::Config {
                    key: "layer_types".into(),
                    problem: format!("has {t}; ecospac builds full_attention and sliding_attention layers"),
                }),
            })
            .collect::<Result<_, _>>()?;
        return Ok((flags, window));
    }
    let flags = match model_type {
        "qwen2" | "qwen3" => {
            let used = cfg.bool_or("use_sliding_window", false)?;
            let from = cfg.usize_opt("max_window_layers")?.unwrap_or(layers);
            (0..layers).map(|i| used && i >= from).collect()
        }
        "llama" => vec![false; layers],
        // Every other layer, from the first.
        "gemma2" => (0..layers).map(|i| i % 2 == 0).collect(),
        "gemma3_text" => {
            let pattern = cfg.usize_opt("sliding_window_pattern")?.unwrap_or(6).max(1);
            (0..layers).map(|i| (i + 1) % pattern != 0).collect()
        }
        _ => vec![true; layers],
    };
    Ok((flags, window))
}
