//! The error every endpoint replies with: a contract code and a message that says what to fix.

use schemas::{ErrorBody, ErrorCode, ErrorDetail};

/// A user-facing error: code from the contract plus a message.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{code:?}: {message}")]
pub struct ServiceError {
    pub code: ErrorCode,
    pub message: String,
}

impl ServiceError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidRequest, message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::NotFound, message)
    }
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Conflict, message)
    }
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Unavailable, message)
    }
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Internal, message)
    }
    /// The wire body.
    #[must_use]
    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            error: ErrorDetail {
                code: self.code,
                message: self.message.clone(),
            },
        }
    }
    /// Whether the same request could succeed later (so its reply must not be remembered).
    #[must_use]
    pub fn is_transient(&self) -> bool {
        matches!(self.code, ErrorCode::Unavailable | ErrorCode::Internal)
    }
}

/// Why a domain refuses a command: the refusals every context's pure `decide` has, each with the
/// contract code it answers with. (A context with more kinds of refusal has its own error and its
/// own `From<..> for ServiceError`.)
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    /// Bad input: `invalid_request`.
    #[error("{0}")]
    Invalid(String),
    /// The thing named does not exist: `not_found`.
    #[error("{0}")]
    NotFound(String),
    /// Not allowed in the current state: `conflict`.
    #[error("{0}")]
    Conflict(String),
}

impl From<DomainError> for ServiceError {
    fn from(e: DomainError) -> Self {
        match e {
            DomainError::Invalid(m) => Self::invalid(m),
            DomainError::NotFound(m) => Self::not_found(m),
            DomainError::Conflict(m) => Self::conflict(m),
        }
    }
}

/// Whether `e` means PostgreSQL could not be reached or went away (the same query can succeed
/// later), as opposed to a query PostgreSQL refused (a bug, or data it rejects).
#[must_use]
pub fn is_lost_connection(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => {
            // 08: connection exception; 57P: operator intervention (shutdown, crash); 53: out of
            // resources (too many connections).
            let code = db.code().unwrap_or_default();
            code.starts_with("08") || code.starts_with("57P") || code.starts_with("53")
        }
        _ => false,
    }
}

/// A lost connection is `unavailable` (retry later); any other SQL error is `internal` (a bug: the
/// query or the schema is wrong). The conversion does not log: whoever handles the error does, with
/// its cause chain.
impl From<sqlx::Error> for ServiceError {
    fn from(e: sqlx::Error) -> Self {
        if is_lost_connection(&e) {
            Self::unavailable(format!("the read model database is unavailable: {e}"))
        } else {
            Self::internal(format!("read model query failed: {e}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lost_connection_is_unavailable_and_a_bad_query_internal() {
        let lost = ServiceError::from(sqlx::Error::Io(std::io::Error::from(
            std::io::ErrorKind::ConnectionReset,
        )));
        assert_eq!(lost.code, schemas::ErrorCode::Unavailable);
        assert_eq!(
            ServiceError::from(sqlx::Error::PoolTimedOut).code,
            schemas::ErrorCode::Unavailable
        );
        let bug = ServiceError::from(sqlx::Error::ColumnNotFound("nope".into()));
        assert_eq!(bug.code, schemas::ErrorCode::Internal);
        assert!(bug.message.contains("nope"), "{}", bug.message);
        assert_eq!(
            ServiceError::from(sqlx::Error::RowNotFound).code,
            schemas::ErrorCode::Internal
        );
    }
}
