//! Runs the cluster benchmark on its own: `cargo run -p cluster --example cluster_bench`.
//! Uses `NATS_URL` / `DATABASE_URL` when set; otherwise starts a private nats-server (JetStream in a
//! temporary directory) and creates a scratch database on the local PostgreSQL
//! (`postgres://postgres@127.0.0.1:5432`), both removed at the end.

use std::process::{Command, Stdio};
use std::time::Duration;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("cluster-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let mut child = None;
    let nats_url = match std::env::var("NATS_URL") {
        Ok(u) => u,
        Err(_) => {
            let port = std::net::TcpListener::bind("127.0.0.1:0")?
                .local_addr()?
                .port();
            let conf = dir.join("nats.conf");
            std::fs::write(&conf, format!("listen: 127.0.0.1:{port}\nmax_payload: 8MB\njetstream {{ store_dir: \"{}\" }}\n", dir.join("js").display()))?;
            // As the tests find it: $SWITCHYARD_NATS_SERVER, else ./var/bin (infra/up.sh installs
            // 2.15.1 there), else PATH; never Debian's /usr/sbin/nats-server 2.9.10.
            let repo_bin = concat!(env!("CARGO_MANIFEST_DIR"), "/../../var/bin/nats-server");
            let bin = std::env::var("SWITCHYARD_NATS_SERVER")
                .ok()
                .filter(|b| !b.is_empty())
                .unwrap_or_else(|| {
                    if std::path::Path::new(repo_bin).exists() {
                        repo_bin.to_string()
                    } else {
                        "nats-server".to_string()
                    }
                });
            child = Some(
                Command::new(bin)
                    .arg("-c")
                    .arg(&conf)
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()?,
            );
            for _ in 0..200 {
                if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            format!("nats://127.0.0.1:{port}")
        }
    };
    let admin = "postgres://postgres@127.0.0.1:5432/postgres";
    let (database_url, scratch) = match std::env::var("DATABASE_URL") {
        Ok(u) => (u, None),
        Err(_) => {
            let name = format!("cluster_bench_{}", std::process::id());
            let pool = sqlx::PgPool::connect(admin).await?;
            sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
                .execute(&pool)
                .await?;
            (
                format!("postgres://postgres@127.0.0.1:5432/{name}"),
                Some((pool, name)),
            )
        }
    };
    let result = cluster::bench::bench(&nats_url, &database_url).await;
    if let Some((pool, name)) = scratch {
        let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
        )))
        .execute(&pool)
        .await;
    }
    if let Some(mut c) = child {
        let _ = c.kill();
        let _ = c.wait();
    }
    let _ = std::fs::remove_dir_all(&dir);
    println!("{}", result?);
    Ok(())
}
