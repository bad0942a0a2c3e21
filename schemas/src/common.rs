//! Conventions shared by every subject: errors, the event envelope, ids as subject tokens.

use chrono::{DateTime, Utc};
use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Largest id, in bytes, that the contract allows.
pub const MAX_ID_BYTES: usize = 256;

/// Error codes of contract section 1, each with its status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    InvalidRequest,
    Unauthorized,
    Forbidden,
    NotFound,
    Conflict,
    PayloadTooLarge,
    DriverError,
    Unavailable,
    Internal,
}

impl ErrorCode {
    /// The HTTP-like status carried in `Nats-Service-Error-Code`.
    #[must_use]
    pub fn status(self) -> u16 {
        match self {
            Self::InvalidRequest => 400,
            Self::Unauthorized => 401,
            Self::Forbidden => 403,
            Self::NotFound => 404,
            Self::Conflict => 409,
            Self::PayloadTooLarge => 413,
            Self::DriverError => 502,
            Self::Unavailable => 503,
            Self::Internal => 500,
        }
    }

    /// The code as it appears on the wire.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidRequest => "invalid_request",
            Self::Unauthorized => "unauthorized",
            Self::Forbidden => "forbidden",
            Self::NotFound => "not_found",
            Self::Conflict => "conflict",
            Self::PayloadTooLarge => "payload_too_large",
            Self::DriverError => "driver_error",
            Self::Unavailable => "unavailable",
            Self::Internal => "internal",
        }
    }
}

/// `{"error": {"code", "message"}}`: the body of every error reply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

/// The code and a message that says what to fix.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ErrorDetail {
    pub code: ErrorCode,
    pub message: String,
}

/// One event as stored in JetStream: a JSON object with at least these four fields.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Envelope {
    /// UUID v7, unique per event.
    pub id: uuid::Uuid,
    /// PascalCase event type, e.g. `ItemAdded`.
    #[serde(rename = "type")]
    pub kind: String,
    /// When the command that produced it was decided (RFC 3339 UTC).
    pub occurred_at: DateTime<Utc>,
    /// The event's own fields.
    pub data: serde_json::Value,
}

/// An optional consistency token every query accepts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct MinSeq {
    /// Wait until the read model has projected this stream sequence (at most 5 s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_seq: Option<u64>,
}

/// Bytes kept as they are when an id becomes a subject token: ASCII letters, digits, `-` and `_`.
/// Every other byte of the id's UTF-8 is written `%XX` (upper-case hex), so the token never holds `.`,
/// `*`, `>` or white space, is never empty, and decodes back to exactly the id.
const TOKEN_ESCAPED: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_');

/// Encodes an id as one valid subject token (see [`TOKEN_ESCAPED`]).
///
/// `jane.doe@example.com` becomes `jane%2Edoe%40example%2Ecom`.
#[must_use]
pub fn encode_token(id: &str) -> String {
    utf8_percent_encode(id, TOKEN_ESCAPED).to_string()
}

/// Decodes a token made by [`encode_token`]. Returns `None` for a token that is not valid UTF-8.
#[must_use]
pub fn decode_token(token: &str) -> Option<String> {
    percent_decode_str(token)
        .decode_utf8()
        .ok()
        .map(|s| s.into_owned())
}

/// Checks an id against the contract: 1..=256 bytes of UTF-8.
///
/// # Errors
/// A message naming the field and the rule it broke.
pub fn check_id(field: &str, id: &str) -> Result<(), String> {
    if id.is_empty() {
        return Err(format!("`{field}` must not be empty"));
    }
    if id.len() > MAX_ID_BYTES {
        return Err(format!(
            "`{field}` is {} bytes; ids are at most {MAX_ID_BYTES} bytes",
            id.len()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_valid_and_round_trip() {
        for id in [
            "jane.doe@example.com",
            "a*b>c",
            "x/y z",
            "plain-id_1",
            "ünï",
            "%41",
        ] {
            let t = encode_token(id);
            assert!(!t.is_empty());
            assert!(!t.contains(['.', '*', '>', ' ', '\t', '\n']), "{t}");
            assert_eq!(decode_token(&t).as_deref(), Some(id));
        }
        assert_eq!(
            encode_token("jane.doe@example.com"),
            "jane%2Edoe%40example%2Ecom"
        );
    }

    #[test]
    fn ids_are_checked() {
        assert!(check_id("customer_id", "").is_err());
        assert!(check_id("customer_id", &"x".repeat(257)).is_err());
        assert!(check_id("customer_id", &"x".repeat(256)).is_ok());
    }
}
