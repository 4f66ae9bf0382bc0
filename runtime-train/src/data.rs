//! Training data: UTF-8 text files tokenized with a `tokenizer.json` (or a
//! byte-level BPE trained on the corpus and saved), packed into fixed-length
//! sequences with a held-out validation split, batched in a seeded order that
//! depends only on the batch number (so a resumed run sees the same data).

use crate::TrainError;
use std::path::{Path, PathBuf};
use tokenizers::models::bpe::{BpeTrainerBuilder, BPE};
use tokenizers::normalizers::NormalizerWrapper;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::processors::PostProcessorWrapper;
use tokenizers::{AddedToken, Tokenizer, TokenizerBuilder};

/// The end-of-text token a trained tokenizer gets.
pub const EOS: &str = "<|endoftext|>";

/// Text files under `path` (a file, or a folder searched for .txt, .rst and .md), sorted.
pub fn text_files(path: &Path) -> Result<Vec<PathBuf>, TrainError> {
    let out = ecospac_frontends::data::text_files(path).map_err(|e| match e {
        ecospac_frontends::data::DataError::Io { path, source } => TrainError::Io(path, source),
        other => TrainError::Config(other.to_string()),
    })?;
    if out.is_empty() {
        return Err(TrainError::Config(format!("no .txt, .rst or .md files under {}", path.display())));
    }
    Ok(out)
}

/// Trains a byte-level BPE of `vocab` tokens on `files` and saves it as `out`.
pub fn train_bpe(files: &[PathBuf], vocab: usize, out: &Path) -> Result<Tokenizer, TrainError> {
    let tk = |e: tokenizers::Error| TrainError::Tokenizer(e.to_string());
    let mut trainer = BpeTrainerBuilder::new()
        .vocab_size(vocab)
        .min_frequency(2)
        .show_progress(false)
        .special_tokens(vec![AddedToken::from(EOS, true)])
        .initial_alphabet(ByteLevel::alphabet().into_iter().collect())
        .build();
    let mut tok = TokenizerBuilder::<BPE, NormalizerWrapper, ByteLevel, PostProcessorWrapper, ByteLevel>::new()
        .with_model(BPE::default())
        .with_normalizer(None)
        .with_pre_tokenizer(Some(ByteLevel::default()))
        .with_post_processor(None)
        .with_decoder(Some(ByteLevel::default()))
        .build()
        .map_err(tk)?;
    let names: Vec<String> = files.iter().map(|f| f.to_string_lossy().into_owned()).collect();
    tok.train_from_files(&mut trainer, names).map_err(tk)?;
    tok.save(out, false).map_err(tk)?;
    Tokenizer::from_file(out).map_err(tk)
}

/// Packed sequences: training and validation.
pub struct Dataset {
    /// Tokens per sequence.
    pub seq_len: usize,
    /// Training sequences.
    pub train: Vec<Vec<i64>>,
    /// Validation sequences.
    pub val: Vec<Vec<i64>>,
}

impl Dataset {
    /// Tokenizes every file (documents separated by the end token when the
    /// tokenizer has one) and packs the stream; the last `val_fraction` is validation.
    pub fn build(files: &[PathBuf], tok: &Tokenizer, seq_len: usize, val_fraction: f64) -> Result<Dataset, TrainError> {
        let sep = tok.token_to_id(EOS).or_else(|| tok.token_to_id("[SEP]"));
        let mut stream: Vec<i64> = Vec::new();
        for f in files {
            let text = std::fs::read_to_string(f).map_err(|e| TrainError::Io(f.clone(), e))?;
            // Line blocks keep encodings short (tokenizers is quadratic in nothing, but memory is not free).
            for chunk in text.split("\n\n").filter(|c| !c.trim().is_empty()) {
                let enc = tok.encode(chunk, false).map_err(|e| TrainError::Tokenizer(e.to_string()))?;
                stream.extend(enc.get_ids().iter().map(|&i| i as i64));
            }
            if let Some(s) = sep {
                stream.push(s as i64);
            }
        }
        let seqs: Vec<Vec<i64>> = stream.chunks_exact(seq_len).map(<[i64]>::to_vec).collect();
        let n_val = ((seqs.len() as f64 * val_fraction).ceil() as usize).max(1);
        if seqs.len() < n_val + 1 {
            return Err(TrainError::Config(format!(
                "the corpus gives {} sequences of {seq_len} tokens; too few",
                seqs.len()
            )));
        }
        let split = seqs.len() - n_val;
        let (train, val) = (seqs[..split].to_vec(), seqs[split..].to_vec());
        Ok(Dataset { seq_len, train, val })
    }

    /// Tokens in the training split.
    pub fn train_tokens(&self) -> usize {
        self.train.len() * self.seq_len
    }

    /// Micro-batch number `k` of `batch` sequences: a seeded shuffle per epoch.
    pub fn batch(&self, k: usize, batch: usize, seed: u64) -> Vec<i64> {
        let n = self.train.len();
        let mut out = Vec::with_capacity(batch * self.seq_len);
        for j in 0..batch {
            let flat = k * batch + j;
            let (epoch, pos) = (flat / n, flat % n);
            out.extend_from_slice(&self.train[permutation(n, seed ^ (epoch as u64).wrapping_mul(0x9e37_79b9))[pos]]);
        }
        out
    }
}

/// A seeded permutation of `0..n`.
fn permutation(n: usize, seed: u64) -> Vec<usize> {
    use rand::seq::SliceRandom;
    use rand::SeedableRng;
    let mut p: Vec<usize> = (0..n).collect();
    p.shuffle(&mut rand::rngs::StdRng::seed_from_u64(seed));
    p
}
