//! Fuzz target: see [`ecospac_fuzz::plan_recipe`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ecospac_fuzz::plan_recipe(data));
