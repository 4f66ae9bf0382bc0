//! Trainable models built from a Hugging Face-style config: GPT-2 and
//! LLaMA-style decoders (GQA, RoPE, SwiGLU) and a BERT-style encoder.
//!
//! Parameters live in a map under their Hugging Face names, so they load from
//! and save to safetensors checkpoints the hf frontend reads, and so that a
//! slice plan can shrink them one by one. Every size is read from the tensors
//! themselves, so a shrunk model runs with the same code.

use crate::TrainError;
use ecospac_frontends::hf::Weights;
use ecospac_ir::{DType, Tensor as IrTensor};
use std::collections::BTreeMap;
use tch::{Device, Kind, Tensor};

/// The model families the runtime trains.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Arch {
    /// GPT-2: learned positions, LayerNorm, fused `c_attn`, GELU (tanh).
    Gpt2,
    /// LLaMA: RMS norm, RoPE, GQA, SwiGLU.
    Llama,
    /// BERT: post-LN encoder, trained as a masked language model with tied output.
    Bert,
}

/// The sizes a model is built from (the dense sizes; shrunk tensors are read as they are).
#[derive(Clone, Debug)]
pub struct ModelConfig {
    /// Family.
    pub arch: Arch,
    /// Vocabulary.
    pub vocab: i64,
    /// Residual width.
    pub hidden: i64,
    /// Blocks.
    pub layers: usize,
    /// Query heads.
    pub heads: i64,
    /// Key/value heads.
    pub kv_heads: i64,
    /// Dense head size (the attention scale stays 1/sqrt of it when heads shrink).
    pub head_dim: i64,
    /// Dense FFN width.
    pub inter: i64,
    /// Learned positions (GPT-2, BERT).
    pub max_positions: i64,
    /// Norm epsilon.
    pub eps: f64,
    /// RoPE base (LLaMA).
    pub rope_theta: f64,
    /// Output projection is the token embedding.
    pub tied: bool,
    /// Token types (BERT).
    pub type_vocab: i64,
    /// The config.json this came from (written back with checkpoints).
    pub json: serde_json::Value,
}

fn key(v: &serde_json::Value, k: &str) -> Result<i64, TrainError> {
    let n = v
        .get(k)
        .and_then(|x| x.as_i64())
        .filter(|&x| x > 0)
        .ok_or_else(|| TrainError::Config(format!("config.json: `{k}` missing or not a positive integer")))?;
    let max = ecospac_frontends::hf::MAX_SIZE;
    if n as u64 > max as u64 {
        return Err(TrainError::Config(format!("config.json: `{k}` is {n}; ecospac reads sizes up to {max}")));
    }
    Ok(n)
}

fn key_or(v: &serde_json::Value, k: &str, d: i64) -> Result<i64, TrainError> {
    match v.get(k).filter(|x| !x.is_null()) {
        None => Ok(d),
        Some(_) => key(v, k),
    }
}

/// Theta of a plain (unscaled, fully rotating) RoPE: from `rope_parameters`
/// (transformers 5) or `rope_theta` (4.x); any other RoPE setting is an error.
fn plain_rope_theta(json: &serde_json::Value) -> Result<f64, TrainError> {
    let top = json.get("rope_theta").and_then(serde_json::Value::as_f64);
    let Some(p) = json.get("rope_parameters").filter(|p| !p.is_null()) else {
        return Ok(top.unwrap_or(10000.0));
    };
    let kind = p.get("rope_type").and_then(serde_json::Value::as_str).unwrap_or("default");
    let partial = p.get("partial_rotary_factor").and_then(serde_json::Value::as_f64).unwrap_or(1.0);
    if kind != "default" || partial != 1.0 {
        return Err(TrainError::Config(format!(
            "training supports plain RoPE for now; `rope_parameters` has rope_type `{kind}`, partial_rotary_factor {partial}"
        )));
    }
    let theta = p.get("rope_theta").and_then(serde_json::Value::as_f64);
    match (theta, top) {
        (Some(t), Some(u)) if t != u => {
            Err(TrainError::Config(format!("`rope_theta` is {u}, but `rope_parameters.rope_theta` is {t}")))
        }
        (Some(t), _) | (None, Some(t)) => Ok(t),
        (None, None) => Ok(10000.0),
    }
}

impl ModelConfig {
    /// Reads a config.json value (`model_type` gpt2, llama or bert).
    pub fn from_json(json: &serde_json::Value) -> Result<ModelConfig, TrainError> {
        let model_type = json.get("model_type").and_then(|t| t.as_str()).unwrap_or_default();
        let f = |k: &str, d: f64| json.get(k).and_then(|x| x.as_f64()).unwrap_or(d);
        let cfg = match model_type {
            "gpt2" => {
                let hidden = key(json, "n_embd")?;
                let heads = key(json, "n_head")?;
                ModelConfig {
                    arch: Arch::Gpt2,
                    vocab: key(json, "vocab_size")?,
                    hidden,
                    layers: key(json, "n_layer")? as usize,
                    heads,
                    kv_heads: heads,
                    head_dim: hidden / heads,
                    inter: key_or(json, "n_inner", 4 * hidden)?,
                    max_positions: key(json, "n_positions")?,
                    eps: f("layer_norm_epsilon", 1e-5),
                    rope_theta: 0.0,
                    tied: true,
                    type_vocab: 0,
                    json: json.clone(),
                }
            }
            "llama" => {
                let hidden = key(json, "hidden_size")?;
                let heads = key(json, "num_attention_heads")?;
                if json.get("rope_scaling").is_some_and(|r| !r.is_null()) {
                    return Err(TrainError::Config("training supports plain RoPE (no rope_scaling) for now".into()));
                }
                let rope_theta = plain_rope_theta(json)?;
                ModelConfig {
                    arch: Arch::Llama,
                    vocab: key(json, "vocab_size")?,
                    hidden,
                    layers: key(json, "num_hidden_layers")? as usize,
                    heads,
                    kv_heads: key_or(json, "num_key_value_heads", heads)?,
                    head_dim: key_or(json, "head_dim", hidden / heads)?,
                    inter: key(json, "intermediate_size")?,
                    max_positions: key_or(json, "max_position_embeddings", 2048)?,
                    eps: f("rms_norm_eps", 1e-6),
                    rope_theta,
                    tied: json.get("tie_word_embeddings").and_then(|t| t.as_bool()).unwrap_or(false),
                    type_vocab: 0,
                    json: json.clone(),
                }
            }
            "bert" => {
                let hidden = key(json, "hidden_size")?;
                let heads = key(json, "num_attention_heads")?;
                ModelConfig {
                    arch: Arch::Bert,
                    vocab: key(json, "vocab_size")?,
                    hidden,
                    layers: key(json, "num_hidden_layers")? as usize,
                    heads,
                    kv_heads: heads,
                    head_dim: hidden / heads,
                    inter: key(json, "intermediate_size")?,
                    max_positions: key(json, "max_position_embeddings")?,
                    eps: f("layer_norm_eps", 1e-12),
                    rope_theta: 0.0,
                    tied: true,
                    type_vocab: key_or(json, "type_vocab_size", 2)?,
                    json: json.clone(),
                }
            }
            other => {
                return Err(TrainError::Config(format!("model_type `{other}`: training builds gpt2, llama and bert")))
            }
        };
        if cfg.hidden % cfg.heads != 0 || cfg.heads % cfg.kv_heads != 0 {
            return Err(TrainError::Config("heads must divide the hidden size, and key/value heads the heads".into()));
        }
        Ok(cfg)
    }

    /// Every parameter: name, dense shape, and how it starts (`normal`, `zeros`, `ones`).
    pub fn parameters(&self) -> Vec<(String, Vec<i64>, Init)> {
        let (h, v, ff) = (self.hidden, self.vocab, self.inter);
        let mut p: Vec<(String, Vec<i64>, Init)> = Vec::new();
        let mut add = |n: String, s: Vec<i64>, i: Init| p.push((n, s, i));
        match self.arch {
            Arch::Gpt2 => {
                add("transformer.wte.weight".into(), vec![v, h], Init::Normal);
                add("transformer.wpe.weight".into(), vec![self.max_positions, h], Init::Normal);
                for i in 0..self.layers {
                    let l = format!("transformer.h.{i}");
                    for ln in ["ln_1", "ln_2"] {
                        add(format!("{l}.{ln}.weight"), vec![h], Init::Ones);
                        add(format!("{l}.{ln}.bias"), vec![h], Init::Zeros);
                    }
                    for (m, i_, o) in
                        [("attn.c_attn", h, 3 * h), ("attn.c_proj", h, h), ("mlp.c_fc", h, ff), ("mlp.c_proj", ff, h)]
                    {
                        add(format!("{l}.{m}.weight"), vec![i_, o], Init::Normal);
                        add(format!("{l}.{m}.bias"), vec![o], Init::Zeros);
                    }
                }
                add("transformer.ln_f.weight".into(), vec![h], Init::Ones);
                add("transformer.ln_f.bias".into(), vec![h], Init::Zeros);
            }
            Arch::Llama => {
                let (q, kv) = (self.heads * self.head_dim, self.kv_heads * self.head_dim);
                add("model.embed_tokens.weight".into(), vec![v, h], Init::Normal);
                for i in 0..self.layers {
                    let l = format!("model.layers.{i}");
                    add(format!("{l}.input_layernorm.weight"), vec![h], Init::Ones);
                    add(format!("{l}.post_attention_layernorm.weight"), vec![h], Init::Ones);
                    for (m, o, i_) in [
                        ("self_attn.q_proj", q, h),
                        ("self_attn.k_proj", kv, h),
                        ("self_attn.v_proj", kv, h),
                        ("self_attn.o_proj", h, q),
                        ("mlp.gate_proj", ff, h),
                        ("mlp.up_proj", ff, h),
                        ("mlp.down_proj", h, ff),
                    ] {
                        add(format!("{l}.{m}.weight"), vec![o, i_], Init::Normal);
                    }
                }
                add("model.norm.weight".into(), vec![h], Init::Ones);
                if !self.tied {
                    add("lm_head.weight".into(), vec![v, h], Init::Normal);
                }
            }
            Arch::Bert => {
                add("embeddings.word_embeddings.weight".into(), vec![v, h], Init::Normal);
                add("embeddings.position_embeddings.weight".into(), vec![self.max_positions, h], Init::Normal);
                add("embeddings.token_type_embeddings.weight".into(), vec![self.type_vocab, h], Init::Normal);
                add("embeddings.LayerNorm.weight".into(), vec![h], Init::Ones);
                add("embeddings.LayerNorm.bias".into(), vec![h], Init::Zeros);
                for i in 0..self.layers {
                    let l = format!("encoder.layer.{i}");
                    for (m, o, i_) in [
                        ("attention.self.query", h, h),
                        ("attention.self.key", h, h),
                        ("attention.self.value", h, h),
                        ("attention.output.dense", h, h),
                        ("intermediate.dense", ff, h),
                        ("output.dense", h, ff),
                    ] {
                        add(format!("{l}.{m}.weight"), vec![o, i_], Init::Normal);
                        add(format!("{l}.{m}.bias"), vec![o], Init::Zeros);
                    }
                    for ln in ["attention.output.LayerNorm", "output.LayerNorm"] {
                        add(format!("{l}.{ln}.weight"), vec![h], Init::Ones);
                        add(format!("{l}.{ln}.bias"), vec![h], Init::Zeros);
                    }
                }
            }
        }
        p
    }
}

/// How a parameter starts.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Init {
    /// N(0, 0.02²).
    Normal,
    /// 0.
    Zeros,
    /// 1.
    Ones,
}

/// A model: its config, parameters by name, and buffers (RoPE frequencies).
pub struct Model {
    /// Sizes.
    pub cfg: ModelConfig,
    /// Trainable tensors by Hugging Face name.
    pub params: BTreeMap<String, Tensor>,
    /// Non-trainable tensors that shrink with the parameters (`rope.inv_freq`).
    pub buffers: BTreeMap<String, Tensor>,
    /// Where it runs.
    pub device: Device,
    /// Run matrix products in bfloat16 (CUDA mixed precision).
    pub bf16: bool,
}

/// The name of the RoPE frequency table (the hf frontend's name too).
pub const INV_FREQ: &str = "rope.inv_freq";

impl Model {
    /// Random initialisation (seeded through `tch::manual_seed` by the caller).
    pub fn init(cfg: ModelConfig, device: Device) -> Model {
        let mut params = BTreeMap::new();
        for (name, shape, init) in cfg.parameters() {
            let t = match init {
                Init::Normal => Tensor::randn(shape.as_slice(), (Kind::Float, device)) * 0.02,
                Init::Zeros => Tensor::zeros(shape.as_slice(), (Kind::Float, device)),
                Init::Ones => Tensor::ones(shape.as_slice(), (Kind::Float, device)),
            };
            params.insert(name, t.set_requires_grad(true));
        }
        let mut m = Model { cfg, params, buffers: BTreeMap::new(), device, bf16: false };
        m.init_buffers();
        m
    }

    /// Loads the parameters from checkpoint tensors (any float dtype, trained in f32).
    pub fn load(cfg: ModelConfig, weights: &Weights, device: Device) -> Result<Model, TrainError> {
        let mut params = BTreeMap::new();
        for (name, shape, _) in cfg.parameters() {
            let t = weights
                .tensors
                .get(&name)
                .ok_or_else(|| TrainError::Config(format!("the checkpoint has no `{name}` (shape {shape:?})")))?;
            if t.dims != shape {
                return Err(TrainError::Config(format!(
                    "`{name}` has shape {:?}; the config implies {shape:?}",
                    t.dims
                )));
            }
            params.insert(name, from_ir(t)?.to_device(device).set_requires_grad(true));
        }
        let mut m = Model { cfg, params, buffers: BTreeMap::new(), device, bf16: false };
        m.init_buffers();
        Ok(m)
    }

    fn init_buffers(&mut self) {
        if self.cfg.arch == Arch::Llama {
            let d = self.cfg.head_dim;
            let inv: Vec<f32> =
                (0..d / 2).map(|i| 1.0 / (self.cfg.rope_theta as f32).powf((2 * i) as f32 / d as f32)).collect();
            self.buffers.insert(INV_FREQ.into(), Tensor::from_slice(&inv).to_device(self.device));
        }
    }

    /// The parameter `name` (a missing name is a bug in this module).
    fn p(&self, name: &str) -> &Tensor {
        &self.params[name]
    }

    fn mm(&self, x: &Tensor, w: &Tensor) -> Tensor {
        if self.bf16 {
            x.to_kind(Kind::BFloat16).matmul(&w.to_kind(Kind::BFloat16)).to_kind(Kind::Float)
        } else {
            x.matmul(w)
        }
    }

    /// `x @ wᵀ + b` for a `[out, in]` weight.
    fn linear(&self, x: &Tensor, prefix: &str) -> Tensor {
        let y = self.mm(x, &self.p(&format!("{prefix}.weight")).tr());
        match self.params.get(&format!("{prefix}.bias")) {
            Some(b) => y + b,
            None => y,
        }
    }

    /// `x @ w + b` for GPT-2's `[in, out]` Conv1D.
    fn conv1d(&self, x: &Tensor, prefix: &str) -> Tensor {
        self.mm(x, self.p(&format!("{prefix}.weight"))) + self.p(&format!("{prefix}.bias"))
    }

    fn layer_norm(&self, x: &Tensor, prefix: &str) -> Tensor {
        let w = self.p(&format!("{prefix}.weight"));
        x.layer_norm([self.cfg.hidden], Some(w), Some(self.p(&format!("{prefix}.bias"))), self.cfg.eps, true)
    }

    fn rms_norm(&self, x: &Tensor, prefix: &str) -> Tensor {
        let var = (x * x).mean_dim(-1, true, Kind::Float);
        self.p(&format!("{prefix}.weight")) * (x * (var + self.cfg.eps).sqrt().reciprocal())
    }

    /// Attention on `[B, S, heads·d]` projections; `mask` is `[S, S]` bool (true: attend) or none.
    fn attention(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        mask: Option<&Tensor>,
        rope: Option<(&Tensor, &Tensor)>,
    ) -> Tensor {
        let (b, s) = (q.size()[0], q.size()[1]);
        let (nh, nkv) = (self.cfg.heads, self.cfg.kv_heads);
        let mut q4 = q.reshape([b, s, nh, -1]);
        let mut k4 = k.reshape([b, s, nkv, -1]);
        let mut v4 = v.reshape([b, s, nkv, -1]);
        if let Some((cos, sin)) = rope {
            q4 = rotate(&q4, cos, sin);
            k4 = rotate(&k4, cos, sin);
        }
        if nkv < nh {
            let rep = nh / nkv;
            let repeat = |t: &Tensor| {
                let d = t.size()[3];
                t.unsqueeze(3).expand([b, s, nkv, rep, d], false).reshape([b, s, nh, d])
            };
            k4 = repeat(&k4);
            v4 = repeat(&v4);
        }
        let qh = q4.permute([0, 2, 1, 3]);
        let kt = k4.permute([0, 2, 3, 1]);
        let vh = v4.permute([0, 2, 1, 3]);
        let mut scores = self.mm(&qh, &kt) / (self.cfg.head_dim as f64).sqrt();
        if let Some(m) = mask {
            scores = scores.masked_fill(&m.logical_not(), f32::MIN as f64);
        }
        let probs = scores.softmax(-1, Kind::Float);
        self.mm(&probs, &vh).permute([0, 2, 1, 3]).reshape([b, s, -1])
    }

    /// The final hidden states `[B, S, hidden]` for token ids `[B, S]`.
    pub fn hidden(&self, ids: &Tensor) -> Tensor {
        let s = ids.size()[1];
        let pos = Tensor::arange(s, (Kind::Int64, self.device));
        let causal = Tensor::ones([s, s], (Kind::Bool, self.device)).tril(0);
        match self.cfg.arch {
            Arch::Gpt2 => {
                let mut h = self.p("transformer.wte.weight").index_select(0, &ids.flatten(0, -1)).reshape([
                    ids.size()[0],
                    s,
                    -1,
                ]) + self.p("transformer.wpe.weight").index_select(0, &pos);
                for i in 0..self.cfg.layers {
                    let l = format!("transformer.h.{i}");
                    let x = self.layer_norm(&h, &format!("{l}.ln_1"));
                    let qkv = self.conv1d(&x, &format!("{l}.attn.c_attn"));
                    // Q and K keep one width (they are one group), V its own: the width c_proj reads.
                    let v_width = self.p(&format!("{l}.attn.c_proj.weight")).size()[0];
                    let qk_width = (qkv.size()[2] - v_width) / 2;
                    let parts = qkv.split_with_sizes([qk_width, qk_width, v_width], -1);
                    let a = self.attention(&parts[0], &parts[1], &parts[2], Some(&causal), None);
                    h = self.conv1d(&a, &format!("{l}.attn.c_proj")) + h;
                    let x = self.layer_norm(&h, &format!("{l}.ln_2"));
                    let up = self.conv1d(&x, &format!("{l}.mlp.c_fc")).gelu("tanh");
                    h = self.conv1d(&up, &format!("{l}.mlp.c_proj")) + h;
                }
                self.layer_norm(&h, "transformer.ln_f")
            }
            Arch::Llama => {
                let inv = &self.buffers[INV_FREQ];
                let freqs = pos.to_kind(Kind::Float).unsqueeze(1) * inv;
                let emb = Tensor::cat(&[&freqs, &freqs], -1);
                let (cos, sin) = (emb.cos().unsqueeze(1), emb.sin().unsqueeze(1));
                let mut h = self.p("model.embed_tokens.weight").index_select(0, &ids.flatten(0, -1)).reshape([
                    ids.size()[0],
                    s,
                    -1,
                ]);
                for i in 0..self.cfg.layers {
                    let l = format!("model.layers.{i}");
                    let x = self.rms_norm(&h, &format!("{l}.input_layernorm"));
                    let q = self.linear(&x, &format!("{l}.self_attn.q_proj"));
                    let k = self.linear(&x, &format!("{l}.self_attn.k_proj"));
                    let v = self.linear(&x, &format!("{l}.self_attn.v_proj"));
                    let a = self.attention(&q, &k, &v, Some(&causal), Some((&cos, &sin)));
                    h = &h + self.linear(&a, &format!("{l}.self_attn.o_proj"));
                    let x = self.rms_norm(&h, &format!("{l}.post_attention_layernorm"));
                    let g = self.linear(&x, &format!("{l}.mlp.gate_proj")).silu();
                    let u = self.linear(&x, &format!("{l}.mlp.up_proj"));
                    h = &h + self.linear(&(g * u), &format!("{l}.mlp.down_proj"));
                }
                self.rms_norm(&h, "model.norm")
            }
            Arch::Bert => {
                let flat = ids.flatten(0, -1);
                let words =
                    self.p("embeddings.word_embeddings.weight").index_select(0, &flat).reshape([ids.size()[0], s, -1]);
                let types = self.p("embeddings.token_type_embeddings.weight").get(0);
                let sum = words + types + self.p("embeddings.position_embeddings.weight").index_select(0, &pos);
                let mut h = self.layer_norm(&sum, "embeddings.LayerNorm");
                for i in 0..self.cfg.layers {
                    let l = format!("encoder.layer.{i}");
                    let q = self.linear(&h, &format!("{l}.attention.self.query"));
                    let k = self.linear(&h, &format!("{l}.attention.self.key"));
                    let v = self.linear(&h, &format!("{l}.attention.self.value"));
                    let a = self.attention(&q, &k, &v, None, None);
                    let a = self.linear(&a, &format!("{l}.attention.output.dense")) + &h;
                    let h1 = self.layer_norm(&a, &format!("{l}.attention.output.LayerNorm"));
                    let up = self.linear(&h1, &format!("{l}.intermediate.dense")).gelu("none");
                    let o = self.linear(&up, &format!("{l}.output.dense")) + &h1;
                    h = self.layer_norm(&o, &format!("{l}.output.LayerNorm"));
                }
                h
            }
        }
    }

    /// Token logits `[B, S, vocab]`: the output projection or the tied embedding.
    pub fn logits(&self, hidden: &Tensor) -> Tensor {
        let w = match self.cfg.arch {
            Arch::Gpt2 => self.p("transformer.wte.weight"),
            Arch::Llama if !self.cfg.tied => self.p("lm_head.weight"),
            Arch::Llama => self.p("model.embed_tokens.weight"),
            Arch::Bert => self.p("embeddings.word_embeddings.weight"),
        };
        self.mm(hidden, &w.tr())
    }

    /// Parameters counted.
    pub fn num_params(&self) -> i64 {
        self.params.values().map(|t| t.numel() as i64).sum()
    }

    /// A parameter or buffer as an IR tensor (float32, on the CPU).
    pub fn to_ir(&self, name: &str) -> Option<IrTensor> {
        let t = self.params.get(name).or_else(|| self.buffers.get(name))?;
        Some(to_ir(t))
    }
}

/// RoPE on `[B, S, H, d]` with tables `[S, 1, d]` (rotate-half).
fn rotate(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Tensor {
    let d = x.size()[3];
    let halves = x.split(d / 2, -1);
    let rotated = Tensor::cat(&[&(-&halves[1]), &halves[0]], -1);
    x * cos + rotated * sin
}

/// A tch tensor as an IR tensor (float32, copied to the CPU).
pub fn to_ir(t: &Tensor) -> IrTensor {
    let c = t.detach().to_kind(Kind::Float).to_device(Device::Cpu).contiguous();
    let n = c.numel();
    let mut v = vec![0f32; n];
    c.copy_data(&mut v, n);
    IrTensor::from_f32s(c.size(), &v)
}

/// An IR tensor as a tch tensor (floats become float32).
pub fn from_ir(t: &IrTensor) -> Result<Tensor, TrainError> {
    Ok(match t.dtype {
        DType::I64 => Tensor::from_slice(&t.to_i64s().unwrap_or_default()).reshape(t.dims.as_slice()),
        _ => {
            let v: Vec<f32> = t
                .to_f64s()
                .ok_or_else(|| TrainError::Config(format!("cannot read a {} tensor", t.dtype)))?
                .iter()
                .map(|&x| x as f32)
                .collect();
            Tensor::from_slice(&v).reshape(t.dims.as_slice())
        }
    })
}

#[cfg(test)]
mod tests {
    use super::plain_rope_theta;
    use serde_json::json;

    #[test]
    fn rope_theta_from_either_config_format() {
        assert_eq!(plain_rope_theta(&json!({})).ok(), Some(10000.0));
        assert_eq!(plain_rope_theta(&json!({"rope_theta": 5e5})).ok(), Some(5e5));
        let v5 = json!({"rope_parameters": {"rope_type": "default", "rope_theta": 5e5}});
        assert_eq!(plain_rope_theta(&v5).ok(), Some(5e5));
        let scaled = json!({"rope_parameters": {"rope_type": "llama3", "rope_theta": 5e5, "factor": 8.0}});
        assert!(plain_rope_theta(&scaled).is_err());
        let partial = json!({"rope_parameters": {"rope_theta": 5e5, "partial_rotary_factor": 0.5}});
        assert!(plain_rope_theta(&partial).is_err());
        let both = json!({"rope_theta": 1e4, "rope_parameters": {"rope_theta": 5e5}});
        assert!(plain_rope_theta(&both).is_err());
    }
}
