//! The checkpoint frontend: a `config.json` and a safetensors file (the
//! input: 4 bytes little-endian config length, the config, the weights).
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::io::Write;

fuzz_target!(|data: &[u8]| {
    let Some((len, rest)) = data.split_first_chunk::<4>() else { return };
    let n = (u32::from_le_bytes(*len) as usize).min(rest.len());
    let (config, weights) = rest.split_at(n);
    let Ok(json) = serde_json::from_slice::<serde_json::Value>(config) else { return };
    let Ok(dir) = tempfile_dir() else { return };
    let path = dir.join("model.safetensors");
    let Ok(mut f) = std::fs::File::create(&path) else { return };
    if f.write_all(weights).is_err() {
        return;
    }
    drop(f);
    let mut w = ecospac_frontends::hf::Weights::default();
    if w.read_file(&path).is_err() {
        return;
    }
    if let Ok(mut hf) = ecospac_frontends::hf::build_graph(&dir, json, w) {
        let _ = ecospac_passes::infer_shapes(&mut hf.model);
    }
});

/// One folder per fuzzing process, reused by every run.
fn tempfile_dir() -> std::io::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("ecospac-fuzz-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
