//! Request and reply bodies: JSON by default, postcard with `Content-Type: application/postcard`.

use crate::error::ServiceError;
use bytes::Bytes;
use serde::{de::DeserializeOwned, Serialize};

/// The content type header value that selects postcard.
pub const POSTCARD: &str = "application/postcard";

/// Body encoding of one request, and so of its reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Codec {
    #[default]
    Json,
    Postcard,
}

impl Codec {
    /// Picks the codec from a request's headers.
    #[must_use]
    pub fn from_headers(headers: Option<&async_nats::HeaderMap>) -> Self {
        let is_postcard = headers
            .and_then(|h| h.get("Content-Type"))
            .is_some_and(|v| v.as_str().eq_ignore_ascii_case(POSTCARD));
        if is_postcard {
            Self::Postcard
        } else {
            Self::Json
        }
    }

    /// Decodes a request body. An empty JSON body reads as `{}`.
    ///
    /// # Errors
    /// `invalid_request` naming what is wrong with the body.
    pub fn decode<T: DeserializeOwned>(self, body: &[u8]) -> Result<T, ServiceError> {
        match self {
            Self::Json => {
                // One pass, straight into `T`; a non-object is refused first (serde would accept
                // an array for a struct).
                let first = body.iter().find(|b| !b.is_ascii_whitespace());
                let body: &[u8] = match first {
                    None => b"{}",
                    Some(b'{') => body,
                    Some(_) => {
                        return Err(
                            match serde_json::from_slice::<serde::de::IgnoredAny>(body) {
                                Ok(_) => ServiceError::invalid("the body must be a JSON object"),
                                Err(e) => ServiceError::invalid(format!(
                                    "the body is not valid JSON: {e}"
                                )),
                            },
                        )
                    }
                };
                serde_json::from_slice(body).map_err(|e| {
                    if e.is_syntax() || e.is_eof() {
                        ServiceError::invalid(format!("the body is not valid JSON: {e}"))
                    } else {
                        ServiceError::invalid(format!("the body does not match the schema: {e}"))
                    }
                })
            }
            Self::Postcard => postcard::from_bytes(body).map_err(|e| {
                ServiceError::invalid(format!("the postcard body does not decode: {e}"))
            }),
        }
    }

    /// Encodes a reply body.
    ///
    /// # Errors
    /// `internal` if the value cannot be encoded (a bug).
    pub fn encode<T: Serialize>(self, value: &T) -> Result<Bytes, ServiceError> {
        match self {
            Self::Json => serde_json::to_vec(value).map(Bytes::from),
            Self::Postcard => postcard::to_stdvec(value)
                .map(Bytes::from)
                .map_err(|e| serde_json::Error::io(std::io::Error::other(e))),
        }
        .map_err(|e| ServiceError::internal(format!("reply encoding failed: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use schemas::ErrorCode;

    #[derive(Debug, serde::Deserialize, serde::Serialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct T {
        a: i64,
        #[serde(default)]
        b: Option<String>,
    }

    #[test]
    fn json_bodies_decode_or_say_what_is_wrong() {
        let c = Codec::Json;
        assert_eq!(c.decode::<T>(br#"{"a": 1}"#).unwrap(), T { a: 1, b: None });
        for (body, needle) in [
            (&b"not json"[..], "not valid JSON"),
            (b"[1, null]", "must be a JSON object"),
            (b"{\"a\": \"1\"}", "does not match"),
            (b"{}", "missing field `a`"),
            (b"{\"a\": 1, \"c\": 2}", "unknown field `c`"),
            (b"{\"a\": 1", "not valid JSON"),
            (b"   ", "missing field `a`"),
        ] {
            let e = c.decode::<T>(body).unwrap_err();
            assert_eq!(e.code, ErrorCode::InvalidRequest);
            assert!(
                e.message.contains(needle),
                "{:?}: {}",
                String::from_utf8_lossy(body),
                e.message
            );
        }
    }

    #[test]
    fn postcard_round_trips() {
        let c = Codec::Postcard;
        let bytes = c
            .encode(&T {
                a: 7,
                b: Some("x".into()),
            })
            .unwrap();
        assert_eq!(
            c.decode::<T>(&bytes).unwrap(),
            T {
                a: 7,
                b: Some("x".into())
            }
        );
        assert_eq!(
            c.decode::<T>(b"").unwrap_err().code,
            ErrorCode::InvalidRequest
        );
    }

    #[test]
    fn error_replies_carry_the_micro_headers() {
        let (h, body) = crate::service::error_reply(
            Codec::Json,
            &crate::ServiceError::conflict("cart is empty\nadd items"),
        );
        assert_eq!(h.get("Nats-Service-Error-Code").unwrap().as_str(), "409");
        assert_eq!(
            h.get("Nats-Service-Error").unwrap().as_str(),
            "cart is empty add items"
        );
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["error"]["code"], "conflict");
    }
}
