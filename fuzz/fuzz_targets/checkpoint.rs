//! Fuzz target: see [`ecospac_fuzz::checkpoint`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ecospac_fuzz::checkpoint(data));
