//! `engine.exec` tokens: HS256 JWTs with `sub` and `roles` (and `exp`, checked when present).

use crate::domain::Caller;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use schemas::engine::Claims;

/// The claims as a verified token may carry them: `roles` as a list or a comma-separated string.
#[derive(serde::Deserialize)]
struct Incoming {
    #[serde(default)]
    sub: String,
    #[serde(default)]
    roles: Roles,
}

#[derive(serde::Deserialize, Default)]
#[serde(untagged)]
enum Roles {
    List(Vec<String>),
    Text(String),
    #[default]
    None,
}

impl Roles {
    fn into_list(self) -> Vec<String> {
        match self {
            Self::List(l) => l,
            Self::Text(t) => t
                .split(',')
                .map(|r| r.trim().to_string())
                .filter(|r| !r.is_empty())
                .collect(),
            Self::None => Vec::new(),
        }
    }
}

/// Signs a token for `sub` with `roles`, valid for `ttl_secs`.
///
/// # Errors
/// Signing failed (an empty secret is fine for HS256; this does not happen in practice).
pub fn issue(secret: &str, sub: &str, roles: &[String], ttl_secs: u64) -> anyhow::Result<String> {
    let now = jsonwebtoken::get_current_timestamp();
    issue_with_expiry(secret, sub, roles, now + ttl_secs)
}

/// Signs a token that expires at `exp` (seconds since the epoch; may be in the past, for tests).
///
/// # Errors
/// Signing failed.
pub fn issue_with_expiry(
    secret: &str,
    sub: &str,
    roles: &[String],
    exp: u64,
) -> anyhow::Result<String> {
    let now = jsonwebtoken::get_current_timestamp();
    let claims = Claims {
        sub: sub.to_string(),
        roles: roles.to_vec(),
        exp: Some(exp),
        iat: Some(now.min(exp)),
    };
    Ok(jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )?)
}

/// Who sends a request with this `Authorization` header value.
#[must_use]
pub fn caller(authorization: Option<&str>, secret: &str) -> Caller {
    let Some(value) = authorization.map(str::trim).filter(|v| !v.is_empty()) else {
        return Caller::Anonymous;
    };
    let token = match value.split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => token.trim(),
        _ => return Caller::BadToken("the Authorization header must be `Bearer <token>`".into()),
    };
    let mut v = Validation::new(Algorithm::HS256);
    v.required_spec_claims.clear();
    v.leeway = 0;
    v.validate_aud = false;
    v.validate_exp = true;
    match jsonwebtoken::decode::<Incoming>(token, &DecodingKey::from_secret(secret.as_bytes()), &v)
    {
        Ok(data) => Caller::User {
            sub: data.claims.sub,
            roles: data.claims.roles.into_list(),
        },
        Err(e) => Caller::BadToken(match e.kind() {
            jsonwebtoken::errors::ErrorKind::ExpiredSignature => "the token has expired".into(),
            jsonwebtoken::errors::ErrorKind::InvalidSignature => {
                "the token's signature does not verify".into()
            }
            _ => format!("the token is not valid: {e}"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issued_tokens_verify_with_their_roles() {
        let t = issue("s3cret", "jane", &["support".into()], 60).unwrap();
        assert_eq!(
            caller(Some(&format!("Bearer {t}")), "s3cret"),
            Caller::User {
                sub: "jane".into(),
                roles: vec!["support".into()]
            }
        );
        assert_eq!(
            caller(Some(&format!("bearer {t}")), "s3cret"),
            Caller::User {
                sub: "jane".into(),
                roles: vec!["support".into()]
            }
        );
    }

    #[test]
    fn roles_may_be_a_comma_separated_string() {
        let claims = serde_json::json!({"sub": "joe", "roles": "support, administrator", "exp": jsonwebtoken::get_current_timestamp() + 60});
        let t = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(b"k"),
        )
        .unwrap();
        assert_eq!(
            caller(Some(&format!("Bearer {t}")), "k"),
            Caller::User {
                sub: "joe".into(),
                roles: vec!["support".into(), "administrator".into()]
            }
        );
    }

    #[test]
    fn bad_tokens_are_refused_with_a_reason() {
        let t = issue("s3cret", "jane", &[], 60).unwrap();
        assert_eq!(caller(None, "s3cret"), Caller::Anonymous);
        assert!(
            matches!(caller(Some(&format!("Bearer {t}")), "other"), Caller::BadToken(m) if m.contains("signature"))
        );
        assert!(matches!(caller(Some(&t), "s3cret"), Caller::BadToken(_)));
        assert!(matches!(
            caller(Some("Bearer not.a.jwt"), "s3cret"),
            Caller::BadToken(_)
        ));
        let now = jsonwebtoken::get_current_timestamp();
        let claims = Claims {
            sub: "jane".into(),
            roles: vec![],
            exp: Some(now - 10),
            iat: None,
        };
        let old = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(b"s3cret"),
        )
        .unwrap();
        assert!(
            matches!(caller(Some(&format!("Bearer {old}")), "s3cret"), Caller::BadToken(m) if m.contains("expired"))
        );
    }
}
