//! Fuzz target: see [`ecospac_fuzz::onnx_import`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ecospac_fuzz::onnx_import(data));
