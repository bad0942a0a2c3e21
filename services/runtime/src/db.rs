//! PostgreSQL: pool, the runtime's own schema (checkpoints, dead letters) and per-context migrations.

use anyhow::Context as _;
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgPool, PgPoolOptions};
use std::time::Duration;

/// Connects with a bounded pool, retrying for up to `patience` while the server is not up. A server
/// that answers and refuses (the database does not exist, the password is wrong) fails at once.
///
/// # Errors
/// The server still refuses after `patience`, or answered with an error.
pub async fn connect(url: &str, patience: Duration) -> anyhow::Result<PgPool> {
    let deadline = tokio::time::Instant::now() + patience;
    loop {
        let attempt = PgPoolOptions::new()
            .max_connections(16)
            .min_connections(0)
            .acquire_timeout(Duration::from_secs(3))
            .connect(url)
            .await;
        match attempt {
            Ok(pool) => return Ok(pool),
            Err(sqlx::Error::Database(db)) if db.code().as_deref() == Some("3D000") => {
                anyhow::bail!(
                    "PostgreSQL at {} answers, but {}: create the database or fix DATABASE_URL",
                    url,
                    db.message()
                );
            }
            Err(e) if !crate::error::is_lost_connection(&e) => {
                return Err(e).with_context(|| format!("connecting to PostgreSQL at {}", url))
            }
            Err(e) if tokio::time::Instant::now() < deadline => {
                tracing::warn!(error = %e, "PostgreSQL not reachable yet; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => return Err(e).with_context(|| format!("connecting to PostgreSQL at {url}")),
        }
    }
}

/// Applies a context's migrations in its own schema, recording them in `<schema>._sqlx_migrations`.
///
/// # Errors
/// A migration failed or the database is unreachable.
pub async fn migrate(
    pool: &PgPool,
    schema: &'static str,
    mut migrator: Migrator,
) -> anyhow::Result<()> {
    migrator.create_schema(schema);
    migrator.dangerous_set_table_name(format!("{schema}._sqlx_migrations"));
    migrator
        .run(pool)
        .await
        .with_context(|| format!("applying the {schema} migrations"))
}

/// The runtime's own tables: projection checkpoints and parked (dead-letter) events.
///
/// # Errors
/// As [`migrate`].
pub async fn migrate_runtime(pool: &PgPool) -> anyhow::Result<()> {
    migrate(pool, "runtime", sqlx::migrate!("./migrations")).await
}

/// `url` with its database (the path) replaced by `db`, keeping any query string.
#[must_use]
pub fn with_database(url: &str, db: &str) -> String {
    let (base, query) = url
        .split_once('?')
        .map_or((url, None), |(b, q)| (b, Some(q)));
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let host_end = base[scheme_end..]
        .find('/')
        .map_or(base.len(), |i| scheme_end + i);
    let mut out = format!("{}/{db}", &base[..host_end]);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn with_database_replaces_only_the_path() {
        assert_eq!(
            super::with_database("postgres://u@h:5/a?sslmode=disable", "b"),
            "postgres://u@h:5/b?sslmode=disable"
        );
        assert_eq!(
            super::with_database("postgres://u@h:5", "b"),
            "postgres://u@h:5/b"
        );
    }
}
