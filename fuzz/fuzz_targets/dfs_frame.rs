//! The dfs frame parser (JSON header, `\n\n`, bytes): never panics, and what it splits is what
//! `encode_frame` would have joined.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for need_body in [false, true] {
        let _ = dfs::domain::split_frame(data, need_body);
    }
});
