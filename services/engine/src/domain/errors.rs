//! Everything a command or an exec can be refused for.

/// Everything a command or an exec can be refused for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// Bad input: types, missing or unknown fields, out of range.
    #[error("{0}")]
    Invalid(String),
    /// The named thing does not exist.
    #[error("{0}")]
    NotFound(String),
    /// Not allowed in the current state.
    #[error("{0}")]
    Conflict(String),
    /// A protected function without a valid token.
    #[error("{0}")]
    Unauthorized(String),
    /// A valid token without the role.
    #[error("{0}")]
    Forbidden(String),
}
