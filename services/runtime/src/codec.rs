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
                let body: &[u8] = if body.iter().all(u8::is_ascii_whitespace) {
                    b"{}"
                } else {
                    body
                };
                let value: serde_json::Value = serde_json::from_slice(body).map_err(|e| {
                    ServiceError::invalid(format!("the body is not valid JSON: {e}"))
                })?;
                if !value.is_object() {
                    return Err(ServiceError::invalid("the body must be a JSON object"));
                }
                serde_json::from_value(value).map_err(|e| {
                    ServiceError::invalid(format!("the body does not match the schema: {e}"))
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
