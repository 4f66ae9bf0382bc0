//! What the training runtime's tests share: the repository root and the ONNX
//! Runtime library that `scripts/setup.sh` installs in `.venv`.

use std::path::{Path, PathBuf};

/// The repository root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// ONNX Runtime's shared library in `.venv`.
pub fn ort_library() -> PathBuf {
    std::fs::read_dir(root().join(".venv/lib"))
        .ok()
        .and_then(|d| {
            d.flatten()
                .map(|e| e.path().join("site-packages/onnxruntime/capi/libonnxruntime.so.1.31.1"))
                .find(|p| p.exists())
        })
        .expect("ONNX Runtime in .venv; run scripts/setup.sh")
}
