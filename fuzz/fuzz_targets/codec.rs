//! The JSON and postcard body codec: any bytes decode to a wire type or an `invalid_request`.
#![no_main]
use libfuzzer_sys::fuzz_target;
use runtime::codec::Codec;

fuzz_target!(|data: &[u8]| {
    for codec in [Codec::Json, Codec::Postcard] {
        let _ = codec.decode::<schemas::shop::AddItem>(data);
        let _ = codec.decode::<schemas::cluster::CommitGraph>(data);
        let _ = codec.decode::<schemas::engine::Exec>(data);
        let _ = codec.decode::<schemas::dfs::CoordinatorRequest>(data);
        if let Err(e) = codec.decode::<schemas::engine::AuditQuery>(data) {
            assert_eq!(e.code, schemas::ErrorCode::InvalidRequest);
        }
    }
});
