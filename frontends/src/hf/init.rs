//! Freshly initialised models: the graph of a config with tensors made by the
//! caller (random initialisation for pre-training), built by the same family
//! builders as a checkpoint's graph.
//!
//! A builder asks whether a checkpoint stores a tensor to learn the model's
//! structure (biases, a separate output projection, fused projections, name
//! prefixes). For a fresh model, [`fresh_has`] answers what a `transformers`
//! model freshly made from the config would store.

use super::build::{Builder, InitFn};
use super::{keys, Checkpoint, Config, HfError, HfModel, Weights};
use serde_json::Value;
use std::path::PathBuf;

/// The `architectures` entries of a config.
fn architectures(json: &Value) -> Vec<&str> {
    json.get("architectures")
        .and_then(Value::as_array)
        .map_or(Vec::new(), |a| a.iter().filter_map(Value::as_str).collect())
}

fn flag(json: &Value, key: &str, default: bool) -> bool {
    json.get(key).and_then(Value::as_bool).unwrap_or(default)
}

/// Whether a `transformers` model of `model_type` freshly made from `json`
/// stores the tensor `name` (asked only for the tensors whose presence
/// decides the structure).
pub fn fresh_has(model_type: &str, json: &Value, name: &str) -> bool {
    let arch = architectures(json);
    let headed = |suffixes: &[&str]| arch.iter().any(|a| suffixes.iter().any(|s| a.ends_with(s)));
    // A model class with a task head nests the base model under a prefix.
    let decoder_lm = arch.is_empty() || headed(&["LMHeadModel", "ForCausalLM"]);
    if name == "lm_head.weight" {
        let tied_by_default = matches!(model_type, "gpt2" | "gemma2" | "gemma3_text");
        return decoder_lm && !flag(json, "tie_word_embeddings", tied_by_default);
    }
    if name == "transformer.wte.weight" || name == "model.embed_tokens.weight" {
        return decoder_lm;
    }
    if name == "bert.embeddings.word_embeddings.weight" || name == "vit.embeddings.cls_token" {
        return headed(&["ForMaskedLM", "ForSequenceClassification", "ForImageClassification", "ForPreTraining"]);
    }
    if name.ends_with("pooler.dense.weight") {
        return !headed(&["ForMaskedLM", "ForCausalLM", "ForImageClassification"]);
    }
    if name.ends_with("qkv_proj.weight") || name.ends_with("gate_up_proj.weight") {
        return model_type == "phi3";
    }
    if let Some(stem) = name.strip_suffix(".bias") {
        let attention = stem.contains("self_attn.");
        return match model_type {
            "gpt2" | "bert" | "vit" => true,
            "qwen2" => attention && !stem.ends_with("o_proj"),
            "phi3" => false,
            _ if attention => flag(json, "attention_bias", false),
            _ => flag(json, "mlp_bias", false),
        };
    }
    true
}

/// Builds the graph of a fresh model of the config `json`: every tensor the
/// graph reads is made by `init(name, shape)`; the made tensors are the
/// returned checkpoint's weights (its folder is empty).
pub fn init_graph(json: Value, init: InitFn<'_>) -> Result<HfModel, HfError> {
    let config = Config::new(json.clone());
    let model_type = config.str("model_type")?;
    let none = Weights::default();
    let mut b = Builder::new_fresh(&none, &model_type, json.clone(), init);
    super::build_family(&mut b, &config, &model_type)?;
    let unknown_keys = keys::check_unread(&config, &model_type)?;
    let weights = b.take_made();
    let (model, size_keys, key_sizes) = b.finish();
    Ok(HfModel {
        model,
        checkpoint: Checkpoint { dir: PathBuf::new(), config: json, weights, size_keys, key_sizes },
        unknown_keys,
    })
}
