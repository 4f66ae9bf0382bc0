//! Encoders: BERT (incl. all-MiniLM-L6-v2) and ViT.

use super::build::{Act, Builder};
use super::config::Config;
use super::decoder::{Attention, MASK_MIN};
use super::HfError;
use ecospac_ir::op::{BinaryOp, Conv, UnaryOp};
use ecospac_ir::{DType, Op, ValueId};

/// One post-LN (BERT) or pre-LN (ViT) encoder layer's parts, named as in `transformers`.
struct Layer<'a> {
    prefix: String,
    attention: &'a str,
    hidden: i64,
    inter: i64,
    heads: i64,
    eps: f64,
    act: Act,
}

impl Layer<'_> {
    fn self_attention(&self, b: &mut Builder, x: ValueId, bias: ValueId) -> Result<ValueId, HfError> {
        let (l, a, hd) = (&self.prefix, self.attention, self.hidden);
        let q = b.linear(x, &format!("{l}.attention.{a}.query"), hd, hd)?;
        let k = b.linear(x, &format!("{l}.attention.{a}.key"), hd, hd)?;
        let v = b.linear(x, &format!("{l}.attention.{a}.value"), hd, hd)?;
        let d = hd / self.heads;
        let attn = Attention {
            heads: self.heads,
            kv_heads: self.heads,
            scale: 1.0 / (d as f32).sqrt(),
            divide: true,
            rope: None,
            qk_norm: None,
            plus_one: false,
            softcap: None,
        };
        let ctx = attn.apply(b, q, k, v, bias, d)?;
        b.linear(ctx, &format!("{l}.attention.output.dense"), hd, hd)
    }

    fn ffn(&self, b: &mut Builder, x: ValueId) -> Result<ValueId, HfError> {
        let l = &self.prefix;
        let up = b.linear(x, &format!("{l}.intermediate.dense"), self.hidden, self.inter)?;
        let up = b.act(up, self.act);
        for (t, axis) in [("intermediate.dense.weight", 0), ("intermediate.dense.bias", 0), ("output.dense.weight", 1)]
        {
            b.sized_by(&format!("{l}.{t}"), axis, "intermediate_size", self.inter);
        }
        b.linear(up, &format!("{l}.output.dense"), self.inter, self.hidden)
    }
}

struct Common {
    hidden: i64,
    inter: i64,
    layers: usize,
    heads: i64,
    eps: f64,
    act: Act,
}

impl Common {
    /// Layer `prefix`, whose attention weights sit under `attention` (`self` in BERT, `attention` in ViT).
    fn layer<'a>(&self, prefix: String, attention: &'a str) -> Layer<'a> {
        Layer {
            prefix,
            attention,
            hidden: self.hidden,
            inter: self.inter,
            heads: self.heads,
            eps: self.eps,
            act: self.act,
        }
    }
}

fn common(cfg: &Config) -> Result<Common, HfError> {
    let hidden = cfg.usize("hidden_size")? as i64;
    let heads = cfg.usize("num_attention_heads")? as i64;
    if hidden % heads != 0 {
        return Err(HfError::Config {
            key: "num_attention_heads".into(),
            problem: format!("{heads} does not divide hidden_size {hidden}"),
        });
    }
    Ok(Common {
        hidden,
        inter: cfg.usize("intermediate_size")? as i64,
        layers: cfg.usize("num_hidden_layers")?,
        heads,
        eps: cfg.f64_or("layer_norm_eps", 1e-12)?,
        act: Act::parse("hidden_act", &cfg.str_or("hidden_act", "gelu")?)?,
    })
}

/// BERT (`BertModel` weights, with or without the `bert.` prefix).
pub fn bert(b: &mut Builder, cfg: &Config) -> Result<(), HfError> {
    let c = common(cfg)?;
    let vocab = cfg.usize("vocab_size")? as i64;
    let positions = cfg.usize("max_position_embeddings")? as i64;
    let types = cfg.usize_opt("type_vocab_size")?.unwrap_or(2) as i64;
    let kind = cfg.str_or("position_embedding_type", "absolute")?;
    if kind != "absolute" {
        return Err(HfError::Config {
            key: "position_embedding_type".into(),
            problem: format!("is `{kind}`; ecospac builds absolute position embeddings"),
        });
    }
    let p = if b.has("bert.embeddings.word_embeddings.weight") { "bert." } else { "" };
    let shape = vec![b.sym("batch"), b.sym("sequence")];
    let ids = b.input("input_ids", DType::I64, shape.clone());
    let mask = b.input("attention_mask", DType::I64, shape.clone());
    let token_types = b.input("token_type_ids", DType::I64, shape);

    let e = format!("{p}embeddings");
    let word = b.weight(&format!("{e}.word_embeddings.weight"), &[vocab, c.hidden])?;
    let tt = b.weight(&format!("{e}.token_type_embeddings.weight"), &[types, c.hidden])?;
    let pe = b.weight(&format!("{e}.position_embeddings.weight"), &[positions, c.hidden])?;
    let len = b.dim_of(ids, 1);
    let pos = b.arange(len);
    let w = b.node(Op::Gather { axis: 0 }, &[word, ids]);
    let t = b.node(Op::Gather { axis: 0 }, &[tt, token_types]);
    let po = b.node(Op::Gather { axis: 0 }, &[pe, pos]);
    let sum = b.add(w, t);
    let sum = b.add(sum, po);
    let mut h = b.layer_norm(sum, &format!("{e}.LayerNorm"), c.hidden, c.eps)?;

    // (1 - mask) · min, [B, 1, 1, S].
    let m = b.cast(mask, DType::F32);
    let one = b.scalar(1.0);
    let inv = b.bin(BinaryOp::Sub, one, m);
    let min = b.scalar(MASK_MIN);
    let bias = b.mul(inv, min);
    let bias = b.unsqueeze(bias, &[1, 2]);

    for i in 0..c.layers {
        b.scope = format!("layer.{i}");
        let layer = c.layer(format!("{p}encoder.layer.{i}"), "self");
        let a = layer.self_attention(b, h, bias)?;
        let r = b.add(a, h);
        let h1 = b.layer_norm(r, &format!("{}.attention.output.LayerNorm", layer.prefix), c.hidden, c.eps)?;
        let f = layer.ffn(b, h1)?;
        let r = b.add(f, h1);
        h = b.layer_norm(r, &format!("{}.output.LayerNorm", layer.prefix), c.hidden, layer.eps)?;
    }
    b.scope = String::new();
    b.output(h, "last_hidden_state");
    pooler(b, h, &format!("{p}pooler"), c.hidden, c.hidden, "tanh")
}

/// `pooler_output` (`BertModel`, `ViTModel`), when the checkpoint has the pooler:
/// the activation of a dense layer on the first token's hidden state.
fn pooler(b: &mut Builder, h: ValueId, prefix: &str, hidden: i64, out: i64, act: &str) -> Result<(), HfError> {
    if !b.has(&format!("{prefix}.dense.weight")) {
        return Ok(());
    }
    let first = b.i64s(&[], &[0]);
    let x = b.node(Op::Gather { axis: 1 }, &[h, first]);
    let x = b.linear(x, &format!("{prefix}.dense"), hidden, out)?;
    let y = match act {
        "tanh" => b.un(UnaryOp::Tanh, x),
        other => {
            let a = Act::parse("pooler_act", other)?;
            b.act(x, a)
        }
    };
    b.output(y, "pooler_output");
    Ok(())
}

/// ViT (`ViTModel` weights, with or without the `vit.` prefix), fixed image size.
pub fn vit(b: &mut Builder, cfg: &Config) -> Result<(), HfError> {
    let c = common(cfg)?;
    let image = cfg.usize("image_size")? as i64;
    let patch = cfg.usize("patch_size")? as i64;
    let channels = cfg.usize_opt("num_channels")?.unwrap_or(3) as i64;
    if image % patch != 0 {
        return Err(HfError::Config {
            key: "patch_size".into(),
            problem: format!("does not divide image_size {image}"),
        });
    }
    let tokens = (image / patch) * (image / patch) + 1;
    let p = if b.has("vit.embeddings.cls_token") { "vit." } else { "" };
    let batch = b.sym("batch");
    let shape =
        vec![batch, ecospac_ir::Dim::known(channels), ecospac_ir::Dim::known(image), ecospac_ir::Dim::known(image)];
    let pixels = b.input("pixel_values", DType::F32, shape);

    let e = format!("{p}embeddings");
    let w = b.weight(&format!("{e}.patch_embeddings.projection.weight"), &[c.hidden, channels, patch, patch])?;
    let bias = b.weight(&format!("{e}.patch_embeddings.projection.bias"), &[c.hidden])?;
    let conv = Conv {
        auto_pad: b"NOTSET".to_vec(),
        dilations: None,
        group: 1,
        kernel_shape: Some(vec![patch, patch]),
        pads: None,
        strides: Some(vec![patch, patch]),
    };
    let x = b.node(Op::Conv(conv), &[pixels, w, bias]);
    let x = b.reshape(x, &[0, 0, -1]);
    let x = b.transpose(x, &[0, 2, 1]);
    let cls = b.weight(&format!("{e}.cls_token"), &[1, 1, c.hidden])?;
    let n = b.dim_of(pixels, 0);
    let ones = b.ints(&[1, 1]);
    let target = b.concat(&[n, ones], 0);
    let cls = b.node(Op::Expand, &[cls, target]);
    let x = b.concat(&[cls, x], 1);
    let pe = b.weight(&format!("{e}.position_embeddings"), &[1, tokens, c.hidden])?;
    let mut h = b.add(x, pe);
    let no_mask = b.scalar(0.0);

    for i in 0..c.layers {
        b.scope = format!("layer.{i}");
        let layer = c.layer(format!("{p}encoder.layer.{i}"), "attention");
        let x = b.layer_norm(h, &format!("{}.layernorm_before", layer.prefix), c.hidden, c.eps)?;
        let a = layer.self_attention(b, x, no_mask)?;
        h = b.add(a, h);
        let x = b.layer_norm(h, &format!("{}.layernorm_after", layer.prefix), c.hidden, c.eps)?;
        let f = layer.ffn(b, x)?;
        h = b.add(f, h);
    }
    b.scope = String::new();
    let h = b.layer_norm(h, &format!("{p}layernorm"), c.hidden, c.eps)?;
    b.output(h, "last_hidden_state");
    let act = cfg.str_or("pooler_act", "tanh")?;
    let out = cfg.usize_opt("pooler_output_size")?.map_or(c.hidden, |n| n as i64);
    pooler(b, h, &format!("{p}pooler"), c.hidden, out, &act)
}
