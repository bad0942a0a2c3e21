//! Slow consumers (README, Security -> Hostile input): a connection made by
//! `runtime::ctx::connect_nats` buffers at most `SWITCHYARD_NATS_SUBSCRIPTION_CAPACITY` messages per
//! subscription; a flood that outruns a subscriber nobody reads is dropped beyond that, and the
//! drop is logged at warn with the subscription. A real nats-server; the capacity is set small so
//! the flood is small.

use e2e::NatsServer;
use std::io::Write;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const CAPACITY: usize = 64;
const FLOOD: usize = 5_000;

/// Everything the process logs, as text.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_beyond_the_subscription_capacity_is_dropped_and_logged_at_warn() {
    let logs = Captured::default();
    let writer = logs.clone();
    tracing_subscriber::fmt()
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .with_writer(move || writer.clone())
        .init();
    // Read by `connect_nats` (edition 2021: set_var is safe; this binary has one test).
    std::env::set_var(
        "SWITCHYARD_NATS_SUBSCRIPTION_CAPACITY",
        CAPACITY.to_string(),
    );

    let server = NatsServer::start().unwrap();
    let slow = runtime::ctx::connect_nats(&server.url(), "slow-consumer-test")
        .await
        .unwrap();
    let mut sub = slow.subscribe("flood.slow").await.unwrap();
    slow.flush().await.unwrap();

    let flooder = async_nats::connect(server.url()).await.unwrap();
    for i in 0..FLOOD {
        flooder
            .publish("flood.slow", i.to_string().into())
            .await
            .unwrap();
    }
    flooder.flush().await.unwrap();
    // Wait until `slow`'s connection has read every message of the flood off its socket (it counts
    // each before offering it to the subscription): then every one has been kept or dropped, and
    // none is still on its way while the subscription is drained below. (`flush` only writes out
    // the client's own buffer; it does not wait for what the server is still sending.)
    let stats = slow.statistics();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while stats.in_messages.load(Ordering::Relaxed) < FLOOD as u64 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the slow connection read {} of {FLOOD} messages in 10 s",
            stats.in_messages.load(Ordering::Relaxed)
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let warned = |text: &str| {
        text.lines().any(|l| {
            l.contains("WARN")
                && l.contains("slow consumer: messages arrived faster")
                && l.contains("subscription=")
        })
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !warned(&logs.text()) && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        warned(&logs.text()),
        "no `slow consumer` warning with the subscription; the log was:\n{}",
        logs.text()
    );

    let mut got = Vec::new();
    while let Ok(Some(m)) = tokio::time::timeout(Duration::from_millis(500), {
        use futures::StreamExt;
        sub.next()
    })
    .await
    {
        got.push(String::from_utf8(m.payload.to_vec()).unwrap());
    }
    assert!(
        !got.is_empty() && got.len() <= CAPACITY,
        "the subscription kept {} of {FLOOD} messages; its capacity is {CAPACITY}",
        got.len()
    );
    // What was kept is the start of the flood, in order; the rest was dropped, not queued.
    let expected: Vec<String> = (0..got.len()).map(|i| i.to_string()).collect();
    assert_eq!(got, expected);
    // The connection survives the drop: a new message to the drained subscription arrives.
    flooder.publish("flood.slow", "after".into()).await.unwrap();
    flooder.flush().await.unwrap();
    let next = tokio::time::timeout(Duration::from_secs(5), {
        use futures::StreamExt;
        sub.next()
    })
    .await
    .expect("the subscription still delivers after the flood")
    .unwrap();
    assert_eq!(&next.payload[..], b"after");
}
