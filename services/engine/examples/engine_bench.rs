//! Runs the engine benchmark alone: `NATS_URL=... DATABASE_URL=... cargo run -p engine --example engine_bench`
//! (a nats-server with JetStream and a PostgreSQL database must be up).

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let nats = std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into());
    let db = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/switchyard".into());
    let report = engine::bench::bench(&nats, &db).await?;
    println!("{report}");
    std::process::exit(0);
}
