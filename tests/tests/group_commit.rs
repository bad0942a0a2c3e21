//! Group commit (issue #16): concurrent appends on different aggregates share atomic batches, and
//! every append still gets exactly its own answer, checked against what the stream holds.

use e2e::NatsServer;
use futures::future::join_all;
use runtime::store::{AppendError, EventStore};
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

async fn store(nats: &NatsServer, group_commit: bool) -> anyhow::Result<EventStore> {
    let client = async_nats::connect(nats.url()).await?;
    let js = async_nats::jetstream::new(client);
    EventStore::open_with(js, "gc", "GC", 1, group_commit).await
}

/// 600 concurrent appends, one in six of them expecting a wrong sequence, a tenth of them sent a
/// second time with the same msg id: every right one is stored once at the sequence its ack names,
/// every wrong one is refused with `WrongLastSequence` and stored nowhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_append_of_a_batch_gets_its_own_answer() -> anyhow::Result<()> {
    let nats = NatsServer::start()?;
    let s = store(&nats, true).await?;
    // Each subject gets one event first, all 600 at once (every one of them right), so "expected 0"
    // is wrong for it from then on.
    let seeds = join_all((0..600).map(|i| {
        let s = s.clone();
        async move {
            let subject = format!("gc.events.a{i}");
            let ack = s
                .append(
                    &subject,
                    format!("seed-{i}").into(),
                    0,
                    &format!("seed-{i}"),
                )
                .await;
            (i, ack)
        }
    }))
    .await;
    let mut seeded = BTreeMap::new();
    for (i, ack) in seeds {
        let ack = ack.map_err(|e| anyhow::anyhow!("seed {i}: {e}"))?;
        seeded.insert(i, ack.sequence);
    }
    let mut seqs: Vec<u64> = seeded.values().copied().collect();
    seqs.sort_unstable();
    assert_eq!(
        seqs,
        (1..=600).collect::<Vec<_>>(),
        "every seed acked at its own sequence"
    );
    let stats = s.group_commit_stats().expect("group commit is on");
    assert!(
        stats.batches.load(Ordering::Relaxed) > 0,
        "no batch was formed by 600 concurrent appends"
    );
    assert_eq!(
        stats.refused.load(Ordering::Relaxed),
        0,
        "a batch of right appends was refused"
    );
    let results = join_all((0..600).map(|i| {
        let s = s.clone();
        let expected = if i % 6 == 0 { 0 } else { seeded[&i] };
        async move {
            let subject = format!("gc.events.a{i}");
            let r = s
                .append(
                    &subject,
                    format!("second-{i}").into(),
                    expected,
                    &format!("second-{i}"),
                )
                .await;
            (i, r)
        }
    }))
    .await;
    assert!(
        stats.refused.load(Ordering::Relaxed) > 0,
        "no batch held a wrong expected sequence"
    );
    let js = s.jetstream().clone();
    let stream = js.get_stream("GC").await?;
    let mut stored_seqs = std::collections::BTreeSet::new();
    for (i, r) in results {
        let subject = format!("gc.events.a{i}");
        let last = stream.get_last_raw_message_by_subject(&subject).await?;
        if i % 6 == 0 {
            assert!(
                matches!(r, Err(AppendError::WrongLastSequence)),
                "append {i} expected a wrong sequence and got {r:?}"
            );
            assert_eq!(
                last.sequence, seeded[&i],
                "a refused append was stored on {subject}"
            );
        } else {
            let ack = r.map_err(|e| anyhow::anyhow!("append {i}: {e}"))?;
            assert!(!ack.duplicate);
            assert_eq!(
                ack.sequence, last.sequence,
                "{subject}: the ack names another sequence"
            );
            assert_eq!(&last.payload[..], format!("second-{i}").as_bytes());
            assert!(
                stored_seqs.insert(ack.sequence),
                "two acks named sequence {}",
                ack.sequence
            );
        }
    }
    let info = stream.get_info().await?;
    assert_eq!(
        info.state.messages,
        600 + 500,
        "stored: 600 seeds and 500 right appends"
    );

    // The same msg ids again, now with the right expected sequence: duplicates, nothing stored.
    let again = join_all((1..600).filter(|i| i % 6 != 0).map(|i| {
        let s = s.clone();
        let expected = seeded[&i];
        async move {
            let subject = format!("gc.events.a{i}");
            s.append(
                &subject,
                format!("second-{i}").into(),
                expected,
                &format!("second-{i}"),
            )
            .await
        }
    }))
    .await;
    for r in again {
        // Either answer leaves the stream as it was: a duplicate ack, or the sequence check first.
        match r {
            Ok(ack) => assert!(ack.duplicate, "a repeated msg id was stored: {ack:?}"),
            Err(AppendError::WrongLastSequence) => {}
            Err(e) => anyhow::bail!("a repeated msg id: {e}"),
        }
    }
    assert_eq!(stream.get_info().await?.state.messages, 1100);
    Ok(())
}

/// With group commit off, the same store appends one by one and has no batch counters.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_commit_off_appends_one_by_one() -> anyhow::Result<()> {
    let nats = NatsServer::start()?;
    let s = store(&nats, false).await?;
    assert!(s.group_commit_stats().is_none());
    let acks = join_all((0..50).map(|i| {
        let s = s.clone();
        async move {
            s.append(&format!("gc.events.b{i}"), "x".into(), 0, &format!("b-{i}"))
                .await
        }
    }))
    .await;
    let mut seqs: Vec<u64> = acks
        .into_iter()
        .map(|a| a.map(|a| a.sequence))
        .collect::<Result<_, _>>()?;
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=50).collect::<Vec<_>>());
    Ok(())
}
