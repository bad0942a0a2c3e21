//! Id to subject token: the token is one valid subject token and decodes back to the id.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(id) = std::str::from_utf8(data) {
        let token = schemas::encode_token(id);
        assert!(!token.is_empty() || id.is_empty());
        assert!(
            !token.contains(['.', '*', '>', ' ', '\t', '\r', '\n', '\0']),
            "{token:?}"
        );
        assert_eq!(schemas::decode_token(&token).as_deref(), Some(id));
    }
    if let Ok(token) = std::str::from_utf8(data) {
        let _ = schemas::decode_token(token);
    }
});
