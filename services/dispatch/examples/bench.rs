//! Runs the dispatch benchmark alone: `NATS_URL=.. DATABASE_URL=.. cargo run -p dispatch --example bench`.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    runtime::telemetry::init();
    let nats = std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into());
    let db = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/switchyard".into());
    println!("{}", dispatch::bench::bench(&nats, &db).await?);
    Ok(())
}
