//! `ProjectionHandle::drain` (#12): a test waits for a projection to apply what the stream holds
//! instead of sleeping.

use chrono::Utc;
use e2e::{NatsServer, TestDb};
use runtime::projector::{self, Batching, Projection};
use runtime::store::{encode_event, EventStore, Stored};
use serde::{Deserialize, Serialize};
use sqlx::{PgConnection, PgPool};
use std::time::Duration;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
enum Event {
    Noted { n: i64 },
}

/// Writes every event's number and sequence into `drained`.
struct Notes;

impl Projection for Notes {
    type Event = Event;
    const NAME: &'static str = "drain_notes";

    async fn apply(
        &self,
        tx: &mut PgConnection,
        events: &[Stored<Event>],
    ) -> Result<(), sqlx::Error> {
        for e in events {
            let Event::Noted { n } = e.event;
            sqlx::query("INSERT INTO drained (seq, n) VALUES ($1, $2)")
                .bind(e.seq as i64)
                .bind(n)
                .execute(&mut *tx)
                .await?;
        }
        Ok(())
    }

    async fn reset(&self, tx: &mut PgConnection) -> Result<(), sqlx::Error> {
        sqlx::query("DELETE FROM drained").execute(tx).await?;
        Ok(())
    }
}

async fn note(store: &EventStore, n: i64) -> anyhow::Result<u64> {
    let payload = encode_event(uuid::Uuid::now_v7(), Utc::now(), &Event::Noted { n })?;
    let ack = store
        .append_unchecked(&format!("dn.events.{n}"), payload, &format!("note-{n}"))
        .await?;
    Ok(ack.sequence)
}

async fn rows(pool: &PgPool) -> anyhow::Result<i64> {
    Ok(sqlx::query_scalar("SELECT count(*) FROM drained")
        .fetch_one(pool)
        .await?)
}

/// A nats-server and a database of their own, the runtime's tables, the read model `drained`, the
/// stream `DN`.
async fn setup() -> anyhow::Result<(NatsServer, TestDb, PgPool, EventStore)> {
    e2e::init_logging();
    let nats = NatsServer::start()?;
    let db = TestDb::create().await?;
    let pool = PgPool::connect(&db.url).await?;
    runtime::db::migrate_runtime(&pool).await?;
    sqlx::query("CREATE TABLE drained (seq BIGINT PRIMARY KEY, n BIGINT NOT NULL)")
        .execute(&pool)
        .await?;
    let js = async_nats::jetstream::new(async_nats::connect(nats.url()).await?);
    let store = EventStore::open(js, "dn", "DN", 1).await?;
    Ok((nats, db, pool, store))
}

/// Events appended while a batch lingers are not in the read model yet; `drain` returns once they
/// all are, with the checkpoint at the stream's last sequence, and at once when nothing is new.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_waits_for_everything_the_stream_holds() -> anyhow::Result<()> {
    let (_nats, _db, pool, store) = setup().await?;

    // Nothing in the stream: drained at once, at 0.
    let batching = Batching {
        max: 1000,
        linger: Duration::from_millis(500),
        // Commits that do not wait for the WAL flush: the same answers.
        sync_commit: false,
    };
    let handle = projector::spawn(store.clone(), pool.clone(), Notes, batching).await?;
    assert_eq!(handle.drain(Duration::from_secs(10)).await?, 0);

    let mut last = 0;
    for n in 1..=40 {
        last = note(&store, n).await?;
    }
    let cp = handle.drain(Duration::from_secs(10)).await?;
    assert_eq!(cp, last, "drained to the stream's last sequence");
    assert_eq!(rows(&pool).await?, 40, "every event is in the read model");

    // More events: the next drain covers them too.
    for n in 41..=50 {
        last = note(&store, n).await?;
    }
    assert_eq!(handle.drain(Duration::from_secs(10)).await?, last);
    assert_eq!(rows(&pool).await?, 50);
    // Caught up: drained again at once.
    assert_eq!(handle.drain(Duration::from_millis(100)).await?, last);
    Ok(())
}

/// A projection that cannot catch up in time: `drain` says so instead of returning.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_times_out_naming_where_the_projection_is() -> anyhow::Result<()> {
    let (_nats, _db, pool, store) = setup().await?;
    let batching = Batching {
        max: 1000,
        linger: Duration::from_secs(5),
        ..Batching::default()
    };
    let handle = projector::spawn(store.clone(), pool.clone(), Notes, batching).await?;
    note(&store, 1).await?;
    let err = handle
        .drain(Duration::from_millis(200))
        .await
        .expect_err("a batch lingering 5 s is not drained in 200 ms");
    assert!(
        err.to_string().contains("drain_notes"),
        "the error names the projection: {err}"
    );
    Ok(())
}

/// The checkpoint moved under the owner (what a rebuild does: read model emptied, checkpoint back
/// to 0): the next batch's compare-and-set, sent with its BEGIN, fails and changes nothing; the
/// owner starts again from the checkpoint it finds, on the same connection, and every event is in
/// the read model once, including those appended afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkpoint_moved_under_the_owner_makes_it_start_again_from_there() -> anyhow::Result<()>
{
    let (_nats, _db, pool, store) = setup().await?;
    let batching = Batching {
        linger: Duration::ZERO,
        ..Batching::default()
    };
    let handle = projector::spawn(store.clone(), pool.clone(), Notes, batching).await?;
    for n in 1..=10 {
        note(&store, n).await?;
    }
    handle.drain(Duration::from_secs(10)).await?;
    assert_eq!(rows(&pool).await?, 10);

    for round in 0..3 {
        let mut tx = pool.begin().await?;
        sqlx::query("DELETE FROM drained").execute(&mut *tx).await?;
        sqlx::query("UPDATE runtime.checkpoints SET seq = 0 WHERE projection = 'drain_notes'")
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        // At once (well within the owner's idle check): the next batch meets the moved checkpoint.
        let mut last = 0;
        for n in 0..5 {
            last = note(&store, 100 * (round + 1) + n).await?;
        }
        assert_eq!(handle.drain(Duration::from_secs(10)).await?, last);
        let expected = 10 + 5 * (round + 1);
        assert_eq!(
            rows(&pool).await?,
            expected,
            "round {round}: every event once"
        );
        let max: i64 = sqlx::query_scalar("SELECT max(seq) FROM drained")
            .fetch_one(&pool)
            .await?;
        assert_eq!(max as u64, last);
    }
    Ok(())
}
