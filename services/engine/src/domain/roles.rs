//! Roles, callers and the role check of `exec`.

use super::*;

/// Roles a token can carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Support,
    Administrator,
}

impl Role {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Support => "support",
            Self::Administrator => "administrator",
        }
    }
}

/// Who calls: what a valid token says, or why there is none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// A valid token.
    User { sub: String, roles: Vec<String> },
    /// No `Authorization` header.
    Anonymous,
    /// A header whose token did not verify (the reason).
    BadToken(String),
}

/// Checks that `caller` may run `function`.
///
/// # Errors
/// [`Error::Unauthorized`] when the function is protected and the caller has no valid token;
/// [`Error::Forbidden`] when the token lacks the role.
pub fn authorize(meta: &Metadata, function: &str, caller: &Caller) -> Result<(), Error> {
    let Some(needed) = meta.required_role(function) else {
        return Ok(());
    };
    match caller {
        Caller::Anonymous => Err(Error::Unauthorized(format!(
            "{function} needs role {}: send `Authorization: Bearer <token>`",
            needed.as_str()
        ))),
        Caller::BadToken(why) => Err(Error::Unauthorized(format!(
            "{function} needs a valid token: {why}"
        ))),
        Caller::User { sub, roles } => {
            let has = |r: &str| roles.iter().any(|x| x == r);
            let ok = match needed {
                Role::Support => has("support") || has("administrator"),
                Role::Administrator => has("administrator"),
            };
            if ok {
                Ok(())
            } else {
                Err(Error::Forbidden(format!(
                    "{sub} has roles [{}]; {function} needs {}",
                    roles.join(", "),
                    if needed == Role::Support {
                        "support or administrator"
                    } else {
                        "administrator"
                    }
                )))
            }
        }
    }
}
