//! `make bench` (peers part): the shop cart workload on Switchyard and on two established Rust
//! event-sourcing frameworks with a PostgreSQL event store, side by side in one run:
//! `cqrs-es` + `postgres-es` and `disintegrate` + `disintegrate-postgres` (from crates.io, used
//! in-process the way their documentation shows), each on a fresh database of the same PostgreSQL
//! server as Switchyard, Switchyard driven through NATS as a client would. Prints one Markdown table.
//!
//! All three run the same cart rules: the peers call Switchyard's own pure `shop::domain::decide`
//! and `apply` inside their framework's aggregate / decision, so that only the frameworks differ.
//! A check at the start runs the same command sequence (add with a sale price, add again, update,
//! update of an unknown item, remove, checkout, checkout of an empty cart) on all three and stops
//! the bench if they disagree.
//!
//! Settings: `PEERS_BENCH_QUICK=1` (or `--quick`) for a run of a few minutes; otherwise the full
//! run. `PEERS_BENCH_REPS`, `PEERS_BENCH_THROUGHPUT`, `PEERS_BENCH_HOT`, `PEERS_BENCH_RYW`,
//! `PEERS_BENCH_REPLAY_CARTS` (x 100 events) override single figures.

mod cqrs;
mod disint;
mod stores;

use anyhow::Context as _;
use e2e::{Client, NatsServer, Services, TestDb};
use futures::stream::{FuturesUnordered, StreamExt};
use shop::domain::{self, Money};
use std::fmt::Write as _;
use std::future::IntoFuture as _;
use std::sync::Arc;
use std::time::{Duration, Instant};
use stores::{CartStore, Cmd, Order, Outcome, Switchyard};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return f64::NAN;
    }
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The `i`-th event of a replay cart: 100 distinct items, every other one on sale.
pub(crate) fn replay_event(customer: &str, i: usize) -> domain::Event {
    domain::Event::ItemAdded {
        customer_id: customer.to_string(),
        item_id: format!("item-{i}"),
        item_count: 1,
        offered_price: Money(999),
        special_sale: i.is_multiple_of(2).then_some(Money(749)),
        sale_expiration: None,
    }
}

/// The order a `CartCheckedOut` event records.
pub(crate) fn order_of(e: &domain::Event) -> Option<Order> {
    match e {
        domain::Event::CartCheckedOut { items, total, .. } => Some(Order {
            lines: items.len(),
            total_cents: total.0,
        }),
        _ => None,
    }
}

/// The `i`-th item of the add-100 workload: 9.99, every other one on sale at 7.49 for an hour.
fn add(customer: &str, item: &str, i: usize) -> Cmd {
    Cmd::Add {
        customer: customer.to_string(),
        item: item.to_string(),
        price: 999,
        count: 1,
        sale: i.is_multiple_of(2).then_some(749),
    }
}

/// The total of a checkout of the first `n` items of the workload, in cents.
fn expected_total(n: usize) -> i64 {
    (0..n).map(|i| if i % 2 == 0 { 749 } else { 999 }).sum()
}

/// Checks out and returns the order the write side priced.
async fn checkout(store: &Store, customer: &str) -> anyhow::Result<Order> {
    match store {
        Store::Switchyard(s) => s.checkout(customer).await,
        Store::Peer(p) => {
            p.execute(&Cmd::Checkout {
                customer: customer.into(),
            })
            .await?
            .done()?;
            p.last_order(customer)
                .await?
                .context("no CartCheckedOut event stored")
        }
    }
}

#[derive(Clone)]
enum Store {
    Switchyard(Arc<Switchyard>),
    Peer(Arc<dyn CartStore>),
}

impl Store {
    fn get(&self) -> &dyn CartStore {
        match self {
            Self::Switchyard(s) => s.as_ref(),
            Self::Peer(p) => p.as_ref(),
        }
    }
}

/// Waits until `customer`'s cart in the read model satisfies `ok`; the time it took.
async fn until_read(
    store: &dyn CartStore,
    customer: &str,
    after: Option<stores::Ack>,
    deadline: Duration,
    ok: impl Fn(&[(String, i64)]) -> bool,
) -> anyhow::Result<(Duration, Vec<(String, i64)>)> {
    let t = Instant::now();
    loop {
        let lines = store.read(customer, after).await?;
        if ok(&lines) || t.elapsed() > deadline {
            return Ok((t.elapsed(), lines));
        }
        tokio::task::yield_now().await;
    }
}

/// The same command sequence on every store; stops the bench if one disagrees.
async fn same_rules(store: &Store) -> anyhow::Result<()> {
    let s = store.get();
    let c = "rules";
    let cmd = |x: Cmd| async move { s.execute(&x).await };
    let a = |item: &str, price, count, sale| Cmd::Add {
        customer: c.into(),
        item: item.into(),
        price,
        count,
        sale,
    };
    cmd(a("apple", 125, 2, None)).await?.done()?;
    cmd(a("apple", 200, 3, None)).await?.done()?;
    cmd(a("pear", 1000, 2, Some(700))).await?.done()?;
    cmd(Cmd::Update {
        customer: c.into(),
        item: "apple".into(),
        count: 7,
    })
    .await?
    .done()?;
    let unknown = cmd(Cmd::Update {
        customer: c.into(),
        item: "plum".into(),
        count: 1,
    })
    .await?;
    anyhow::ensure!(
        matches!(unknown, Outcome::Refused(_)),
        "{}: update of an unknown item was not refused",
        s.name()
    );
    cmd(a("fig", 250, 3, Some(200))).await?.done()?;
    let last = cmd(Cmd::Remove {
        customer: c.into(),
        item: "pear".into(),
    })
    .await?
    .done()?;
    let want = vec![("apple".to_string(), 7), ("fig".to_string(), 3)];
    let (_, lines) = until_read(s, c, Some(last), Duration::from_secs(10), |l| {
        l == want.as_slice()
    })
    .await?;
    anyhow::ensure!(lines == want, "{}: read model {lines:?}", s.name());
    let order = checkout(store, c).await?;
    anyhow::ensure!(
        order
            == Order {
                lines: 2,
                total_cents: 7 * 200 + 3 * 200
            },
        "{}: order {order:?}",
        s.name()
    );
    let again = cmd(Cmd::Checkout { customer: c.into() }).await?;
    anyhow::ensure!(
        matches!(again, Outcome::Refused(_)),
        "{}: checkout of an empty cart was not refused",
        s.name()
    );
    let (_, lines) = until_read(s, c, None, Duration::from_secs(10), <[_]>::is_empty).await?;
    anyhow::ensure!(
        lines.is_empty(),
        "{}: read model after checkout {lines:?}",
        s.name()
    );
    Ok(())
}

/// `total` add-item commands from 64 concurrent clients, each on carts of its own (`carts` per
/// client, named after `prefix`; 1 = one cart shared by all when `shared`), until `total` or the
/// deadline. Returns (commands acked, retries, seconds).
async fn with_64_clients(
    store: &Store,
    total: usize,
    prefix: &str,
    shared: bool,
    deadline: Duration,
) -> anyhow::Result<(u64, u64, f64)> {
    let t = Instant::now();
    let stop = t + deadline;
    let mut tasks = Vec::new();
    for w in 0..64 {
        let (store, prefix) = (store.clone(), prefix.to_string());
        tasks.push(tokio::spawn(async move {
            let (mut acked, mut retries) = (0u64, 0u64);
            for i in 0..total / 64 {
                if Instant::now() > stop {
                    break;
                }
                let (customer, item) = if shared {
                    (prefix.clone(), format!("h-{w}-{i}"))
                } else {
                    (format!("{prefix}-{w}-{}", i % 100), format!("i-{i}"))
                };
                let ack = store
                    .get()
                    .execute(&add(&customer, &item, i))
                    .await?
                    .done()?;
                acked += 1;
                retries += u64::from(ack.retries);
            }
            Ok::<_, anyhow::Error>((acked, retries))
        }));
    }
    let (mut acked, mut retries) = (0, 0);
    for task in tasks {
        let (a, r) = task.await??;
        acked += a;
        retries += r;
    }
    Ok((acked, retries, t.elapsed().as_secs_f64()))
}

struct Row {
    add100_ms: f64,
    checkout_ms: f64,
    distinct: (u64, u64, f64),
    hot: (u64, u64, f64),
    hot_write: usize,
    hot_read: usize,
    ryw: (f64, f64, usize),
    replay: Option<(u64, f64)>,
    replay_note: String,
}

fn main() -> anyhow::Result<()> {
    runtime::allocator::keep_freed_memory();
    run()
}

#[tokio::main]
async fn run() -> anyhow::Result<()> {
    let quick = std::env::args().any(|a| a == "--quick")
        || std::env::var("PEERS_BENCH_QUICK").is_ok_and(|v| v == "1");
    let reps: usize = env_or("PEERS_BENCH_REPS", if quick { 20 } else { 100 });
    let tp: usize = env_or("PEERS_BENCH_THROUGHPUT", if quick { 3200 } else { 12800 });
    let hot: usize = env_or("PEERS_BENCH_HOT", if quick { 320 } else { 1280 });
    let ryw_n: usize = env_or("PEERS_BENCH_RYW", if quick { 200 } else { 1000 });
    let replay_carts: usize = env_or("PEERS_BENCH_REPLAY_CARTS", if quick { 200 } else { 1000 });
    let limit = Duration::from_secs(env_or("PEERS_BENCH_DEADLINE_S", 180));

    let nats = NatsServer::start()?;
    let client = Client::connect(&nats.url()).await?;
    let sy_db = TestDb::create().await?;
    let _svc = Services::start(
        runtime::Config::for_urls(&nats.url(), &sy_db.url),
        &["shop"],
    )
    .await?;
    let cq_db = TestDb::create().await?;
    let di_db = TestDb::create().await?;
    let cq = Arc::new(cqrs::Cqrs::start(&cq_db.url).await?);
    let di = Arc::new(disint::Disintegrate::start(&di_db.url, true).await?);
    let stores = [
        Store::Switchyard(Arc::new(Switchyard {
            client: client.clone(),
        })),
        Store::Peer(cq.clone()),
        Store::Peer(di.clone()),
    ];
    for s in &stores {
        same_rules(s)
            .await
            .with_context(|| format!("{}: not the same cart rules", s.get().name()))?;
    }
    eprintln!("peers: the same cart rules on all three");

    // Add 100 items one by one, then check out the 100; the stores take turns each repetition.
    let mut add100 = vec![Vec::new(); 3];
    let mut co = vec![Vec::new(); 3];
    for r in 0..reps {
        for (k, s) in stores.iter().enumerate() {
            let customer = format!("add100-{r}");
            let t = Instant::now();
            for i in 0..100 {
                s.get()
                    .execute(&add(&customer, &format!("item-{i}"), i))
                    .await?
                    .done()?;
            }
            add100[k].push(ms(t.elapsed()));
            let t = Instant::now();
            let order = checkout(s, &customer).await?;
            let took = ms(t.elapsed());
            anyhow::ensure!(
                order.lines == 100 && order.total_cents == expected_total(100),
                "{}: checkout of 100 items gave {order:?}",
                s.get().name()
            );
            co[k].push(took);
        }
    }
    eprintln!("peers: add 100 / checkout done");

    let mut rows = Vec::new();
    for (k, s) in stores.iter().enumerate() {
        let name = s.get().name();
        eprintln!("peers: {name}: 64 clients");
        let distinct = with_64_clients(s, tp, "tp", false, limit).await?;
        let hot_cart = "hot";
        let hot_r = with_64_clients(s, hot, hot_cart, true, limit).await?;
        // What the read model and the write side hold of the hot cart once the read model settled.
        let (_, read) = until_read(s.get(), hot_cart, None, Duration::from_secs(30), |l| {
            l.len() as u64 >= hot_r.0
        })
        .await?;
        let order = checkout(s, hot_cart).await?;
        eprintln!("peers: {name}: read your writes");
        let mut ryw = Vec::new();
        let mut ryw_late = 0;
        for n in 0..ryw_n {
            let customer = format!("ryw-{}", n % 20);
            let item = format!("ryw-item-{n}");
            let ack = s.get().execute(&add(&customer, &item, n)).await?.done()?;
            let (took, lines) = until_read(
                s.get(),
                &customer,
                Some(ack),
                Duration::from_secs(10),
                |l| l.iter().any(|(i, _)| *i == item),
            )
            .await?;
            if !lines.iter().any(|(i, _)| *i == item) {
                ryw_late += 1;
            }
            ryw.push(took.as_secs_f64() * 1e6);
        }
        rows.push(Row {
            add100_ms: pct(&mut add100[k], 0.5),
            checkout_ms: pct(&mut co[k], 0.5),
            distinct,
            hot: hot_r,
            hot_write: order.lines,
            hot_read: read.len(),
            ryw: (pct(&mut ryw.clone(), 0.5), pct(&mut ryw, 0.99), ryw_late),
            replay: None,
            replay_note: String::new(),
        });
    }
    drop(stores);
    let cq_view_errors = cq.view_errors.load(std::sync::atomic::Ordering::Relaxed);
    drop(cq);
    drop(di);
    drop(_svc);

    // Projection replay: the same events (carts x 100 ItemAdded) written straight into each
    // store, then each framework's own replay into an empty read model.
    eprintln!("peers: replay");
    let per_cart = 100;
    rows[0].replay = Some(switchyard_replay(replay_carts, per_cart).await?);
    rows[0].replay_note = "a fresh database: from starting the shop (connecting, migrations, consumer) until its checkpoint is the stream's last sequence".into();
    {
        let db = TestDb::create().await?;
        let c = cqrs::Cqrs::start(&db.url).await?;
        let n = c.seed(replay_carts, per_cart).await?;
        let t = Instant::now();
        c.replay_all().await?;
        let secs = t.elapsed().as_secs_f64();
        let (views, lines) = c.view_count().await?;
        anyhow::ensure!(
            views as usize == replay_carts && lines as u64 == n,
            "cqrs-es replay: {views} views, {lines} lines of {n} events"
        );
        rows[1].replay = Some((n, secs));
        rows[1].replay_note =
            "`QueryReplay::replay_all` into an empty view table: one event at a time (load view, update view)".into();
    }
    {
        let db = TestDb::create().await?;
        let mut d = disint::Disintegrate::start(&db.url, false).await?;
        let n = d.seed(replay_carts, per_cart).await?;
        let last = d.last_event_id().await?;
        let t = Instant::now();
        d.listen("replay", "replay_line").await?;
        while d.listener_position("replay").await? < last {
            anyhow::ensure!(
                t.elapsed() < Duration::from_secs(600),
                "disintegrate replay did not finish in 600 s"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let secs = t.elapsed().as_secs_f64();
        let lines = d.lines_in("replay_line").await?;
        anyhow::ensure!(
            lines as u64 == n,
            "disintegrate replay: {lines} lines of {n} events"
        );
        rows[2].replay = Some((n, secs));
        rows[2].replay_note = "a `PgEventListener` with a new id on an empty table: from its start until its stored position is the last event id".into();
    }

    println!(
        "{}",
        table(&rows, reps, tp, hot, ryw_n, cq_view_errors, quick)?
    );
    Ok(())
}

/// Switchyard's replay: a nats-server of its own whose SHOP stream holds only the seeded events
/// (written with the shop's own envelope), then the shop started on a fresh database.
async fn switchyard_replay(carts: usize, per_cart: usize) -> anyhow::Result<(u64, f64)> {
    let nats = NatsServer::start()?;
    {
        // Let the shop create its stream (and nothing else), then stop it.
        let db = TestDb::create().await?;
        let svc =
            Services::start(runtime::Config::for_urls(&nats.url(), &db.url), &["shop"]).await?;
        drop(svc);
    }
    let client = Client::connect(&nats.url()).await?;
    let js = async_nats::jetstream::new(client.nats.clone());
    let mut inflight = FuturesUnordered::new();
    for c in 0..carts {
        let customer = format!("replay-{c}");
        let subject = shop::cart_subject(&customer);
        for i in 0..per_cart {
            if inflight.len() >= 64 {
                inflight.next().await.context("ack")??;
            }
            let payload = runtime::store::encode_event(
                uuid::Uuid::now_v7(),
                chrono::Utc::now(),
                &replay_event(&customer, i),
            )
            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
            inflight.push(js.publish(subject.clone(), payload).await?.into_future());
        }
    }
    while let Some(a) = inflight.next().await {
        a?;
    }
    let last_seq = js
        .get_stream(shop::STREAM)
        .await?
        .info()
        .await?
        .state
        .last_sequence;
    let n = (carts * per_cart) as u64;
    let db = TestDb::create().await?;
    let watcher = sqlx::PgPool::connect(&db.url).await?;
    let t = Instant::now();
    let starting = tokio::spawn(Services::start(
        runtime::Config::for_urls(&nats.url(), &db.url),
        &["shop"],
    ));
    loop {
        let seq: i64 =
            sqlx::query_scalar("SELECT seq FROM runtime.checkpoints WHERE projection = 'shop_dht'")
                .fetch_optional(&watcher)
                .await
                .ok()
                .flatten()
                .unwrap_or(0);
        if seq >= last_seq as i64 {
            break;
        }
        anyhow::ensure!(
            t.elapsed() < Duration::from_secs(600),
            "Switchyard replay did not finish in 600 s"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let secs = t.elapsed().as_secs_f64();
    let svc = starting.await??;
    watcher.close().await;
    drop(svc);
    Ok((n, secs))
}

fn table(
    rows: &[Row],
    reps: usize,
    tp: usize,
    hot: usize,
    ryw_n: usize,
    cq_view_errors: u64,
    quick: bool,
) -> anyhow::Result<String> {
    let mut out = String::new();
    let cmd = if quick {
        "PEERS_BENCH_QUICK=1 make bench-peers"
    } else {
        "make bench (its peers part: make bench-peers)"
    };
    writeln!(
        out,
        "## Peers: the shop cart on Switchyard, cqrs-es and disintegrate\n"
    )?;
    writeln!(out, "Command: `{cmd}`. One run, one nats-server, one PostgreSQL server (a fresh database each); ratios are against Switchyard in this run.\n")?;
    writeln!(out, "| measure | Switchyard (through NATS) | cqrs-es 0.5 + postgres-es 0.5 | disintegrate 4 + disintegrate-postgres 4 |\n|---|---|---|---|")?;
    let cells = |f: &dyn Fn(&Row) -> String| rows.iter().map(f).collect::<Vec<_>>().join(" | ");
    let base = &rows[0];
    writeln!(
        out,
        "| add 100 items one by one, median of {reps} (ms) | {} |",
        cells(&|r| format!("{:.1} ({:.2}x)", r.add100_ms, r.add100_ms / base.add100_ms))
    )?;
    writeln!(
        out,
        "| checkout of 100 items, median of {reps} (ms) | {} |",
        cells(&|r| format!(
            "{:.2} ({:.2}x)",
            r.checkout_ms,
            r.checkout_ms / base.checkout_ms
        ))
    )?;
    let rate = |x: &(u64, u64, f64)| x.0 as f64 / x.2;
    writeln!(
        out,
        "| 64 clients, distinct carts (100 per client), {tp} add-item commands: cmd/s | {} |",
        cells(&|r| format!(
            "{:.0} ({:.2}x)",
            rate(&r.distinct),
            rate(&r.distinct) / rate(&base.distinct)
        ))
    )?;
    writeln!(
        out,
        "| 64 clients, distinct carts: conflicts the client retried | {} |",
        cells(&|r| r.distinct.1.to_string())
    )?;
    writeln!(
        out,
        "| 64 clients, one hot cart, up to {hot} add-item commands (distinct items): cmd/s | {} |",
        cells(&|r| format!(
            "{:.0} ({:.2}x)",
            rate(&r.hot),
            rate(&r.hot) / rate(&base.hot)
        ))
    )?;
    writeln!(
        out,
        "| one hot cart: conflicts the client retried (per acked command) | {} |",
        cells(&|r| format!(
            "{} ({:.1})",
            r.hot.1,
            r.hot.1 as f64 / r.hot.0.max(1) as f64
        ))
    )?;
    writeln!(out, "| one hot cart: acked / lines in the write model (checkout) / lines in the read model; lost updates | {} |", cells(&|r| format!("{} / {} / {}; lost {} (write), {} (read)", r.hot.0, r.hot_write, r.hot_read, r.hot.0 as i64 - r.hot_write as i64, r.hot.0 as i64 - r.hot_read as i64)))?;
    writeln!(out, "| read your write: command acknowledged -> read model shows it, p50 / p99 of {ryw_n} (us) | {} |", cells(&|r| format!("{:.0} / {:.0}{}", r.ryw.0, r.ryw.1, if r.ryw.2 > 0 { format!(" ({} not seen in 10 s)", r.ryw.2) } else { String::new() })))?;
    writeln!(
        out,
        "| projection replay into an empty read model: events/s | {} |",
        cells(&|r| r.replay.map_or("-".into(), |(n, s)| format!(
            "{:.0} ({n} events in {s:.1} s; {:.2}x)",
            n as f64 / s,
            (n as f64 / s) / base.replay.map_or(f64::NAN, |(bn, bs)| bn as f64 / bs)
        )))
    )?;
    writeln!(
        out,
        "\nReplay, how each was measured: {}.",
        rows.iter()
            .map(|r| r.replay_note.clone())
            .collect::<Vec<_>>()
            .join("; ")
    )?;
    writeln!(out, "\ncqrs-es view updates refused by the view's optimistic lock during the run (reported to the `GenericQuery` error handler; the view misses those events): {cq_view_errors}.")?;
    Ok(out)
}
