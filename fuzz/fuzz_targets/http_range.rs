//! The HTTP Range parser: any header on any length gives whole, unsatisfiable, or a range inside
//! the file.
#![no_main]
use dfs::domain::{parse_range, RangeAsk};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 8 {
        return;
    }
    let len = u64::from_le_bytes(data[..8].try_into().unwrap()) % (1 << 40);
    let Ok(h) = std::str::from_utf8(&data[8..]) else { return };
    if let RangeAsk::Part(r) = parse_range(Some(h), len) {
        assert!(r.start <= r.end && r.end < len, "{h:?} on {len}: {}..={}", r.start, r.end);
    }
});
