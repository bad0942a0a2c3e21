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

/// Whether a PostgreSQL error means the database cannot be reached (or is shutting down, or out of
/// resources for now): the same request can succeed later. Anything else is a bug.
#[must_use]
pub fn sql_is_unavailable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(db) => {
            let code = db.code().unwrap_or_default();
            code.starts_with("08") || code.starts_with("57") || code.starts_with("53")
        }
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        _ => false,
    }
}

impl From<sqlx::Error> for ServiceError {
    /// A lost connection is `unavailable` (retry); any other SQL error is `internal` (a bug: the
    /// request will never succeed as it is, so a client must not be told to retry it).
    fn from(e: sqlx::Error) -> Self {
        if sql_is_unavailable(&e) {
            tracing::warn!(error = %e, "database unavailable");
            Self::unavailable(format!("the read model database is unavailable: {e}"))
        } else {
            let chain = anyhow::Error::from(e);
            tracing::error!(error = format!("{chain:#}"), "database error");
            Self::internal(format!("the read model query failed (a bug): {chain:#}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lost_connections_are_unavailable_and_other_sql_errors_internal() {
        let lost: ServiceError = sqlx::Error::PoolTimedOut.into();
        assert_eq!(lost.code, schemas::ErrorCode::Unavailable);
        let io: ServiceError = sqlx::Error::Io(std::io::Error::other("reset")).into();
        assert_eq!(io.code, schemas::ErrorCode::Unavailable);
        let bug: ServiceError = sqlx::Error::RowNotFound.into();
        assert_eq!(bug.code, schemas::ErrorCode::Internal);
        let decode: ServiceError = sqlx::Error::ColumnNotFound("x".into()).into();
        assert_eq!(decode.code, schemas::ErrorCode::Internal);
    }
}
