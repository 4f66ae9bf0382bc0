//! Which `config.json` keys matter. A builder reads the keys it implements;
//! after it ran, every other key present is either known not to change what
//! the model computes (metadata, dropout, generation), or must keep the value
//! that means "off" (anything else changes the computation in a way ecospac
//! does not build: an error naming the key), or is unknown to ecospac (listed
//! once as a warning).

use super::config::Config;
use super::HfError;
use serde_json::Value;

/// Keys that never change the forward computation of the graphs ecospac builds.
const HARMLESS: &[&str] = &[
    "_name_or_path",
    "architectures",
    "attention_dropout",
    "attention_probs_dropout_prob",
    "attn_pdrop",
    "bos_token_id",
    "chunk_size_feed_forward",
    "classifier_dropout",
    "decoder_start_token_id",
    "dtype",
    "embd_pdrop",
    "eos_token_id",
    "finetuning_task",
    "hidden_dropout",
    "hidden_dropout_prob",
    "id2label",
    "initializer_factor",
    "gradient_checkpointing",
    "initializer_range",
    "keys_to_ignore_at_inference",
    // Used only with `use_sliding_window`, which is read (and checked).
    "max_window_layers",
    "label2id",
    "model_type",
    "n_ctx",
    "output_attentions",
    "output_hidden_states",
    "pad_token_id",
    "pretraining_tp",
    "prefix",
    "problem_type",
    "reorder_and_upcast_attn",
    "resid_pdrop",
    "return_dict",
    "sep_token_id",
    "summary_activation",
    "summary_first_dropout",
    "summary_proj_to_labels",
    "summary_type",
    "summary_use_proj",
    "task_specific_params",
    "tie_encoder_decoder",
    "tokenizer_class",
    "torch_dtype",
    "torchscript",
    "transformers_version",
    "use_cache",
    "use_return_dict",
    // Biases are built when the checkpoint has their tensors.
    "attention_bias",
    "mlp_bias",
    "qkv_bias",
    // Generation settings (Gemma 2).
    "cache_implementation",
    // Used only without `layer_types`, which decides when present (Gemma 3).
    "sliding_window_pattern",
    "_sliding_window_pattern",
    // Heads ecospac does not build (the graph ends before them).
    "encoder_stride",
    "tie_word_embeddings",
];

/// Keys that change the computation unless they hold one of these values
/// (JSON): ecospac builds only the "off" setting.
const OFF_ONLY: &[(&str, &[&str])] = &[
    ("add_cross_attention", &["false"]),
    ("attention_chunk_size", &["null"]),
    ("attention_multiplier", &["null", "1"]),
    ("attn_logit_softcapping", &["null"]),
    ("embedding_multiplier", &["null", "1"]),
    ("final_logit_softcapping", &["null"]),
    ("is_decoder", &["false"]),
    ("is_encoder_decoder", &["false"]),
    ("layer_types", &[]),
    ("logits_scaling", &["null", "1"]),
    ("num_experts", &["null", "0"]),
    ("num_local_experts", &["null", "0"]),
    ("pruned_heads", &["null", "{}"]),
    ("qk_layernorm", &["false"]),
    ("quantization_config", &["null"]),
    ("query_pre_attn_scalar", &["null"]),
    ("residual_multiplier", &["null", "1"]),
    ("rope_parameters", &["null"]),
    ("rope_scaling", &["null"]),
    ("scale_embedding", &["false"]),
    ("sliding_window", &["null"]),
    ("use_bidirectional_attention", &["null", "false"]),
    ("use_parallel_residual", &["false"]),
    ("use_qk_norm", &["false"]),
    ("use_sliding_window", &["false"]),
];

fn same(a: &Value, b: &Value) -> bool {
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => x == y,
        _ => a == b,
    }
}

/// Checks the keys no builder read: an error for one that changes the
/// computation; the unknown ones, sorted, for a warning.
pub fn check_unread(cfg: &Config, model_type: &str) -> Result<Vec<String>, HfError> {
    let mut unknown = Vec::new();
    for path in cfg.unread() {
        if HARMLESS.contains(&path.as_str()) {
            continue;
        }
        let value = path.split('.').try_fold(&cfg.json, |v, k| v.get(k)).cloned().unwrap_or(Value::Null);
        if let Some((_, allowed)) = OFF_ONLY.iter().find(|(k, _)| *k == path) {
            let ok = allowed.iter().any(|a| serde_json::from_str::<Value>(a).is_ok_and(|a| same(&a, &value)))
                || (path == "layer_types" && value.as_array().is_some_and(|t| t.iter().all(|x| x == "full_attention")));
            if !ok {
                return Err(HfError::Config {
                    key: path,
                    problem: format!(
                        "is {value}, which changes the computation in a way ecospac does not build for {model_type}"
                    ),
                });
            }
            continue;
        }
        unknown.push(path);
    }
    Ok(unknown)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(json: &str) -> Result<Vec<String>, HfError> {
        check_unread(&Config::new(serde_json::from_str(json).expect("json")), "llama")
    }

    #[test]
    fn off_values_pass_and_others_fail() {
        assert_eq!(
            check(r#"{"use_cache": true, "sliding_window": null, "pruned_heads": {}}"#).expect("ok"),
            Vec::<String>::new()
        );
        let e = check(r#"{"final_logit_softcapping": 30.0}"#).expect_err("softcapping");
        assert!(e.to_string().contains("final_logit_softcapping"), "{e}");
        let e = check(r#"{"is_decoder": true}"#).expect_err("decoder");
        assert!(e.to_string().contains("is_decoder"), "{e}");
        assert!(check(r#"{"layer_types": ["full_attention", "full_attention"]}"#).is_ok());
        assert!(check(r#"{"layer_types": ["sliding_attention"]}"#).is_err());
        assert_eq!(check(r#"{"embedding_multiplier": 1.0, "mystery": 3}"#).expect("ok"), vec!["mystery".to_string()]);
    }
}
