//! libFuzzer target: see [`smelt_fuzz::targets::jsonl`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    smelt_fuzz::init();
    smelt_fuzz::targets::jsonl(data);
});
