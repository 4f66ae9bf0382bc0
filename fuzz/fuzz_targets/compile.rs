//! Fuzz target: see [`ecospac_fuzz::compile`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ecospac_fuzz::compile(data));
