//! Runs the dfs benchmark against `NATS_URL` (JetStream, max_payload 8MB) and the PostgreSQL server
//! of `DATABASE_URL`: `cargo run -p dfs --example dfs_bench`.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    runtime::telemetry::init();
    let nats = std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into());
    let db = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    println!("{}", dfs::bench::bench(&nats, &db).await?);
    Ok(())
}
