//! `runtime::follow::Follower` (#12), the one stream follower behind dispatch's and engine's views
//! and the live publishers: every event once, in order, across a restart of the nats-server; a
//! follower started at the stream's end sees only what comes after; a subject filter holds.

use chrono::Utc;
use e2e::NatsServer;
use runtime::follow::Follower;
use runtime::store::{encode_event, EventStore};
use serde::{Deserialize, Serialize};
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
enum Event {
    Noted { n: i64 },
}

async fn note(store: &EventStore, subject: &str, n: i64) -> anyhow::Result<u64> {
    let payload = encode_event(uuid::Uuid::now_v7(), Utc::now(), &Event::Noted { n })?;
    let ack = store
        .append_unchecked(subject, payload, &format!("note-{subject}-{n}"))
        .await?;
    Ok(ack.sequence)
}

/// Reads until `want` messages came (at most `timeout`); what came, as (seq, n).
async fn read(follower: &mut Follower, want: usize, timeout: Duration) -> Vec<(u64, i64)> {
    let mut got = Vec::new();
    let _ = tokio::time::timeout(timeout, async {
        while got.len() < want {
            for m in follower.next(100).await {
                let (_, Event::Noted { n }) = m.event::<Event>().expect("an event");
                got.push((m.seq, n));
            }
        }
    })
    .await;
    got
}

/// Appends go on while the server restarts; the follower hands every acknowledged event over
/// exactly once, in stream order, with nothing skipped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_once_in_order_across_a_server_restart() -> anyhow::Result<()> {
    e2e::init_logging();
    let mut nats = NatsServer::start()?;
    let client = async_nats::ConnectOptions::new()
        .retry_on_initial_connect()
        .connect(nats.url())
        .await?;
    let store = EventStore::open(async_nats::jetstream::new(client.clone()), "fw", "FW", 1).await?;
    let mut acked = Vec::new();
    for n in 1..=50 {
        acked.push((note(&store, "fw.events.a", n).await?, n));
    }
    let mut follower = Follower::new(store.jetstream(), "FW", "follow test").from(1);
    let mut got = read(&mut follower, 30, Duration::from_secs(10)).await;
    assert!(got.len() >= 30, "read {} before the restart", got.len());

    // Killed while the follower reads, down for a second, started again on its store.
    nats.stop();
    tokio::time::sleep(Duration::from_secs(1)).await;
    nats.restart()?;
    // Appends acknowledged after the restart (the client reconnects on its own).
    for n in 51..=100 {
        let seq = loop {
            match note(&store, "fw.events.a", n).await {
                Ok(seq) => break seq,
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        };
        acked.push((seq, n));
    }
    let rest = read(
        &mut follower,
        acked.len() - got.len(),
        Duration::from_secs(30),
    )
    .await;
    got.extend(rest);
    assert_eq!(got, acked, "every acknowledged event once, in order");
    assert_eq!(
        follower.next_seq(),
        Some(acked.last().map_or(0, |a| a.0) + 1)
    );
    Ok(())
}

/// From the end: what was there before is not handed over; with a filter, only its subjects.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn from_the_end_and_filtered() -> anyhow::Result<()> {
    e2e::init_logging();
    let nats = NatsServer::start()?;
    let client = async_nats::connect(nats.url()).await?;
    let store = EventStore::open(async_nats::jetstream::new(client), "fw", "FW", 1).await?;
    for n in 1..=10 {
        note(&store, "fw.events.a", n).await?;
    }
    let mut at_end = Follower::new(store.jetstream(), "FW", "at the end");
    let mut only_b = Follower::new(store.jetstream(), "FW", "only b")
        .subjects("fw.events.b")
        .from(1);
    assert_eq!(at_end.next_seq(), None);
    // The consumer is made on the first call: let it exist before the new events come.
    assert!(read(&mut at_end, 1, Duration::from_millis(500))
        .await
        .is_empty());
    let mut b = Vec::new();
    for n in 11..=20 {
        let subject = if n % 2 == 0 {
            "fw.events.b"
        } else {
            "fw.events.a"
        };
        let seq = note(&store, subject, n).await?;
        if n % 2 == 0 {
            b.push((seq, n));
        }
    }
    let got = read(&mut at_end, 10, Duration::from_secs(10)).await;
    assert_eq!(
        got.iter().map(|g| g.1).collect::<Vec<_>>(),
        (11..=20).collect::<Vec<_>>()
    );
    assert_eq!(read(&mut only_b, 5, Duration::from_secs(10)).await, b);
    Ok(())
}

/// A follower of a stream that is not there yet keeps trying, and hands over its events once it is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_made_later_is_followed_once_it_exists() -> anyhow::Result<()> {
    e2e::init_logging();
    let nats = NatsServer::start()?;
    let client = async_nats::connect(nats.url()).await?;
    let js = async_nats::jetstream::new(client);
    let mut follower = Follower::new(&js, "LATE", "late stream").from(1);
    let reading =
        tokio::spawn(async move { read(&mut follower, 5, Duration::from_secs(20)).await });
    tokio::time::sleep(Duration::from_millis(700)).await;
    let store = EventStore::open(js, "late", "LATE", 1).await?;
    let mut acked = Vec::new();
    for n in 1..=5 {
        acked.push((note(&store, "late.events.x", n).await?, n));
    }
    assert_eq!(reading.await?, acked);
    Ok(())
}
