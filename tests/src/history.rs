//! A history checker in the manner of Jepsen: clients record every command they send (its
//! `Nats-Msg-Id`, every attempt and the final reply); after the run the checker reads every stream
//! and every read model and classifies each command.
//!
//! - An acknowledged command (a success reply with `seq`) must be in its stream exactly once, at that
//!   `seq`: else it is *lost* (0 events with its `Nats-Msg-Id`) or *doubled* (2 or more).
//! - A refused command (a definitive error: `conflict`, `not_found`, ...) must have appended nothing.
//! - A command that never got a reply (the client gave up) may be there once or not at all.
//! - An event carrying a `Nats-Msg-Id` of this run that no client sent is *unexpected*; so is any
//!   event in a stream the services only write on a client's command (`SHOP`, `ENGINE`, `CLUSTER`)
//!   without one of this run's ids. Events the services append by themselves (the default facility
//!   in `DISPATCH`, engine drivers registered at start, dfs bookkeeping) are counted as internal.
//! - Read models are compared with a replay of their streams: shop carts (item counts), cluster
//!   trees (worker ids and version), dispatch carts (home, SSDs and their datasets), engine statuses.

use crate::Client;
use anyhow::Context as _;
use bytes::Bytes;
use futures::StreamExt;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What one attempt of a command got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    /// A success reply.
    Ok,
    /// No reply in time.
    Timeout,
    /// No service listening (`no responders`) or the connection was down.
    NoResponders,
    /// `unavailable` (a dependency was down; retried with the same msg id).
    Unavailable,
    /// A definitive error (not retried).
    Refused(String),
}

/// The final result of a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Acknowledged with this stream sequence.
    Ok(u64),
    /// Refused with this error code.
    Refused(String),
    /// The client gave up: it never learnt whether the command was stored.
    Indeterminate,
}

/// One command as a client saw it.
#[derive(Debug, Clone)]
pub struct Op {
    pub client: String,
    pub subject: String,
    pub msg_id: String,
    pub body: Value,
    /// Each attempt: start and end (since the history began) and what it got.
    pub attempts: Vec<(Duration, Duration, Attempt)>,
    pub outcome: Outcome,
    pub reply: Value,
}

impl Op {
    fn excerpt(&self) -> String {
        let attempts: Vec<String> = self
            .attempts
            .iter()
            .map(|(s, e, a)| format!("{:.3}-{:.3}s {a:?}", s.as_secs_f64(), e.as_secs_f64()))
            .collect();
        format!(
            "{} {} msg_id={} body={} outcome={:?} reply={} attempts=[{}]",
            self.client,
            self.subject,
            self.msg_id,
            self.body,
            self.outcome,
            self.reply,
            attempts.join(", ")
        )
    }
}

/// A file a client stored in dfs (acknowledged by `put`), with its checksum.
#[derive(Debug, Clone)]
pub struct StoredFile {
    pub file_id: String,
    pub sha256: String,
    pub size: usize,
}

/// Every client's record of a run. Cheap to clone (shared).
#[derive(Clone)]
pub struct History {
    /// Prefix of every `Nats-Msg-Id` of this run.
    pub run: String,
    start: Instant,
    ops: Arc<Mutex<Vec<Op>>>,
    files: Arc<Mutex<Vec<StoredFile>>>,
    dfs_failures: Arc<Mutex<Vec<(Duration, String)>>>,
    queries: Arc<Mutex<Vec<(Duration, Duration, Attempt)>>>,
}

/// Per-attempt timeout of [`History::command`].
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(3);

impl History {
    /// A new, empty history; its msg ids start with `run`.
    #[must_use]
    pub fn new(run: &str) -> Self {
        Self {
            run: run.into(),
            start: Instant::now(),
            ops: Arc::default(),
            files: Arc::default(),
            dfs_failures: Arc::default(),
            queries: Arc::default(),
        }
    }

    /// Time since the history began.
    #[must_use]
    pub fn now(&self) -> Duration {
        self.start.elapsed()
    }

    /// A msg id of this run.
    #[must_use]
    pub fn msg_id(&self, client: &str, n: u64) -> String {
        format!("{}-{client}-{n}", self.run)
    }

    /// Sends a command with `msg_id`, retrying the same msg id on timeout, no responders and
    /// `unavailable` until `give_up`; records every attempt and the outcome.
    pub async fn command(
        &self,
        c: &Client,
        client: &str,
        subject: &str,
        msg_id: &str,
        body: &Value,
        give_up: Duration,
    ) -> (Outcome, Value) {
        let payload = Bytes::from(serde_json::to_vec(body).unwrap_or_default());
        let first = self.now();
        let mut attempts = Vec::new();
        let (outcome, reply) = loop {
            let mut h = async_nats::HeaderMap::new();
            h.insert("Nats-Msg-Id", msg_id);
            let req = async_nats::Request::new()
                .headers(h)
                .payload(payload.clone())
                .timeout(Some(ATTEMPT_TIMEOUT));
            let s = self.now();
            let r = c.nats.send_request(subject.to_string(), req).await;
            let e = self.now();
            let (attempt, done) = match r {
                Ok(msg) => {
                    let v: Value = serde_json::from_slice(&msg.payload).unwrap_or(Value::Null);
                    match v
                        .get("error")
                        .and_then(|e| e.get("code"))
                        .and_then(Value::as_str)
                    {
                        None => {
                            let seq = v.get("seq").and_then(Value::as_u64).unwrap_or(0);
                            (Attempt::Ok, Some((Outcome::Ok(seq), v)))
                        }
                        Some("unavailable") => (Attempt::Unavailable, None),
                        Some(code) => (
                            Attempt::Refused(code.to_string()),
                            Some((Outcome::Refused(code.to_string()), v)),
                        ),
                    }
                }
                Err(err) => match err.kind() {
                    async_nats::client::RequestErrorKind::TimedOut => (Attempt::Timeout, None),
                    _ => (Attempt::NoResponders, None),
                },
            };
            attempts.push((s, e, attempt.clone()));
            if let Some(d) = done {
                break d;
            }
            if e.saturating_sub(first) > give_up {
                break (Outcome::Indeterminate, Value::Null);
            }
            if attempt != Attempt::Timeout {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        };
        self.ops.lock().unwrap().push(Op {
            client: client.into(),
            subject: subject.into(),
            msg_id: msg_id.into(),
            body: body.clone(),
            attempts,
            outcome: outcome.clone(),
            reply: reply.clone(),
        });
        (outcome, reply)
    }

    /// Adds an op as a client would have recorded it (for the checker's own tests).
    pub fn record(&self, op: Op) {
        self.ops.lock().unwrap().push(op);
    }

    /// Sends a query (no retry) and records the attempt apart from the commands (queries append
    /// nothing; they measure how long the read side was unavailable).
    pub async fn query(&self, c: &Client, subject: &str, body: &Value) {
        let payload = Bytes::from(serde_json::to_vec(body).unwrap_or_default());
        let req = async_nats::Request::new()
            .payload(payload)
            .timeout(Some(ATTEMPT_TIMEOUT));
        let s = self.now();
        let r = c.nats.send_request(subject.to_string(), req).await;
        let e = self.now();
        let a = match r {
            Ok(msg) => {
                let v: Value = serde_json::from_slice(&msg.payload).unwrap_or(Value::Null);
                match v["error"]["code"].as_str() {
                    None => Attempt::Ok,
                    Some("unavailable") => Attempt::Unavailable,
                    Some(code) => Attempt::Refused(code.to_string()),
                }
            }
            Err(err) => match err.kind() {
                async_nats::client::RequestErrorKind::TimedOut => Attempt::Timeout,
                _ => Attempt::NoResponders,
            },
        };
        self.queries.lock().unwrap().push((s, e, a));
    }

    /// Records a file `put` acknowledged.
    pub fn stored_file(&self, f: StoredFile) {
        self.files.lock().unwrap().push(f);
    }

    /// Records a failed `put` (its file is not expected to be readable).
    pub fn dfs_failure(&self, why: String) {
        let t = self.now();
        self.dfs_failures.lock().unwrap().push((t, why));
    }

    /// The commands recorded so far.
    #[must_use]
    pub fn ops(&self) -> Vec<Op> {
        self.ops.lock().unwrap().clone()
    }

    /// The files stored so far.
    #[must_use]
    pub fn files(&self) -> Vec<StoredFile> {
        self.files.lock().unwrap().clone()
    }

    /// Failed dfs puts (time, reason).
    #[must_use]
    pub fn dfs_failures(&self) -> Vec<(Duration, String)> {
        self.dfs_failures.lock().unwrap().clone()
    }

    /// The failover gap after a fault at `t`: how long commands were refused or timed out.
    #[must_use]
    pub fn gap_after(&self, t: Duration, window: Duration) -> Gap {
        let ops = self.ops();
        let mut g = Gap::default();
        for op in &ops {
            for (s, e, a) in &op.attempts {
                if *e < t || *s > t + window {
                    continue;
                }
                if *a != Attempt::Ok && !matches!(a, Attempt::Refused(_)) {
                    g.failed_attempts += 1;
                    g.refused_for = g.refused_for.max(e.saturating_sub(t));
                }
            }
            let (Some(first), Some(last)) = (op.attempts.first(), op.attempts.last()) else {
                continue;
            };
            if last.1 >= t && first.0 <= t + window {
                g.longest_command = g.longest_command.max(last.1.saturating_sub(first.0));
            }
        }
        // Per context, the longest stretch without a successful reply (from one success to the
        // next, or from the fault to the first) within the window.
        let mut ok_ends: BTreeMap<String, Vec<Duration>> = BTreeMap::new();
        for op in &ops {
            let ctx = op.subject.split('.').next().unwrap_or_default().to_string();
            for (_, e, a) in &op.attempts {
                if matches!(a, Attempt::Ok | Attempt::Refused(_)) {
                    ok_ends.entry(ctx.clone()).or_default().push(*e);
                }
            }
        }
        for (ctx, mut ends) in ok_ends {
            ends.sort();
            let mut prev = t;
            for e in ends.into_iter().filter(|e| *e >= t && *e <= t + window) {
                let stretch = e.saturating_sub(prev);
                if stretch > g.stalled_for {
                    g.stalled_for = stretch;
                    g.stalled_context = ctx.clone();
                }
                prev = e;
            }
        }
        for (s, e, a) in self.queries.lock().unwrap().iter() {
            if *e < t || *s > t + window {
                continue;
            }
            if *a != Attempt::Ok {
                g.failed_queries += 1;
                g.queries_refused_for = g.queries_refused_for.max(e.saturating_sub(t));
            }
        }
        g
    }
}

/// How commands fared after a fault.
#[derive(Debug, Default, Clone)]
pub struct Gap {
    /// Attempts that timed out, found no responder or were `unavailable`.
    pub failed_attempts: usize,
    /// From the fault to the end of the last such attempt.
    pub refused_for: Duration,
    /// The longest time one command took (first send to final reply), retries included.
    pub longest_command: Duration,
    /// The longest time one context answered no command at all (success or refusal) after the fault.
    pub stalled_for: Duration,
    pub stalled_context: String,
    /// Queries (`shop.query.cart`) that failed, and from the fault to the end of the last one.
    pub failed_queries: usize,
    pub queries_refused_for: Duration,
}

impl std::fmt::Display for Gap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} answered nothing for {:.1} s; last failed command attempt ended {:.1} s after the fault \
             ({} failed attempts), longest command {:.1} s; queries failed until {:.1} s ({} failed)",
            self.stalled_context,
            self.stalled_for.as_secs_f64(),
            self.refused_for.as_secs_f64(),
            self.failed_attempts,
            self.longest_command.as_secs_f64(),
            self.queries_refused_for.as_secs_f64(),
            self.failed_queries
        )
    }
}

/// One stored event.
#[derive(Debug, Clone)]
pub struct Event {
    pub stream: String,
    pub seq: u64,
    pub subject: String,
    pub msg_id: Option<String>,
    pub kind: String,
    pub data: Value,
}

/// Reads every message of `stream` (with its headers) through an ordered consumer.
///
/// # Errors
/// JetStream did not answer.
pub async fn read_stream(c: &Client, stream: &str) -> anyhow::Result<Vec<Event>> {
    let js = async_nats::jetstream::new(c.nats.clone());
    let mut s = js
        .get_stream(stream)
        .await
        .with_context(|| format!("stream {stream}"))?;
    let info = s.info().await?;
    let last = info.state.last_sequence;
    let mut out = Vec::new();
    if info.state.messages == 0 {
        return Ok(out);
    }
    let consumer = s
        .create_consumer(async_nats::jetstream::consumer::pull::OrderedConfig {
            deliver_policy: async_nats::jetstream::consumer::DeliverPolicy::All,
            ..Default::default()
        })
        .await?;
    let mut messages = consumer.messages().await?;
    while let Some(m) = tokio::time::timeout(Duration::from_secs(20), messages.next())
        .await
        .with_context(|| format!("reading {stream}: stalled"))?
    {
        let m = m?;
        let seq = m
            .info()
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .stream_sequence;
        let v: Value = serde_json::from_slice(&m.payload).unwrap_or(Value::Null);
        out.push(Event {
            stream: stream.into(),
            seq,
            subject: m.subject.to_string(),
            msg_id: m
                .headers
                .as_ref()
                .and_then(|h| h.get("Nats-Msg-Id"))
                .map(|v| v.as_str().to_string()),
            kind: v["type"].as_str().unwrap_or_default().to_string(),
            data: v.get("data").cloned().unwrap_or(Value::Null),
        });
        if seq >= last {
            break;
        }
    }
    Ok(out)
}

/// Streams the services write only on a client's command.
pub const COMMAND_ONLY_STREAMS: &[&str] = &["SHOP", "CLUSTER"];
/// Every context's stream.
pub const STREAMS: &[&str] = &["SHOP", "DISPATCH", "ENGINE", "CLUSTER", "DFS"];

/// The checker's verdict.
#[derive(Debug, Default)]
pub struct Report {
    pub commands: usize,
    pub acknowledged: usize,
    pub once: usize,
    pub lost: usize,
    pub doubled: usize,
    pub wrong_seq: usize,
    pub refused: usize,
    pub refused_but_appended: usize,
    pub indeterminate_present: usize,
    pub indeterminate_absent: usize,
    pub unexpected: usize,
    pub internal: BTreeMap<String, usize>,
    pub events: usize,
    pub read_model_checked: BTreeMap<String, usize>,
    pub read_model_diffs: Vec<String>,
    pub files: usize,
    pub files_readable: usize,
    pub files_at_factor: usize,
    pub file_problems: Vec<String>,
    /// Excerpts of the history for every violation.
    pub evidence: Vec<String>,
}

impl Report {
    /// No acknowledged command lost or doubled, nothing unexpected, read models equal to replay,
    /// every file readable at its replication factor.
    #[must_use]
    pub fn passed(&self) -> bool {
        self.lost == 0
            && self.doubled == 0
            && self.wrong_seq == 0
            && self.refused_but_appended == 0
            && self.unexpected == 0
            && self.read_model_diffs.is_empty()
            && self.files_readable == self.files
            && self.files_at_factor == self.files
    }
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "history: {} commands, {} acknowledged: {} exactly once, {} lost, {} doubled, {} at another seq; \
             {} refused ({} of them appended); {} unanswered ({} stored, {} not); \
             {} events, {} unexpected, internal {:?}",
            self.commands,
            self.acknowledged,
            self.once,
            self.lost,
            self.doubled,
            self.wrong_seq,
            self.refused,
            self.refused_but_appended,
            self.indeterminate_present + self.indeterminate_absent,
            self.indeterminate_present,
            self.indeterminate_absent,
            self.events,
            self.unexpected,
            self.internal
        )?;
        writeln!(
            f,
            "read models equal to replay: {:?}; {} differ",
            self.read_model_checked,
            self.read_model_diffs.len()
        )?;
        write!(
            f,
            "dfs: {} files, {} readable with their sha256, {} with every chunk at the replication factor",
            self.files, self.files_readable, self.files_at_factor
        )?;
        for d in self.read_model_diffs.iter().take(10) {
            write!(f, "\n  read model: {d}")?;
        }
        for d in self.file_problems.iter().take(10) {
            write!(f, "\n  dfs: {d}")?;
        }
        for d in self.evidence.iter().take(20) {
            write!(f, "\n  evidence: {d}")?;
        }
        Ok(())
    }
}

/// Classifies every recorded command against the stored events.
#[must_use]
pub fn classify(history: &History, events: &[Event]) -> Report {
    let mut r = Report {
        events: events.len(),
        ..Report::default()
    };
    let mut by_id: BTreeMap<&str, Vec<&Event>> = BTreeMap::new();
    for e in events {
        match &e.msg_id {
            Some(id) if id.starts_with(&history.run) => {
                by_id.entry(id.as_str()).or_default().push(e);
            }
            _ if COMMAND_ONLY_STREAMS.contains(&e.stream.as_str()) => {
                r.unexpected += 1;
                r.evidence
                    .push(format!("unexpected event (no msg id of this run): {e:?}"));
            }
            _ => {
                *r.internal
                    .entry(format!("{}/{}", e.stream, e.kind))
                    .or_default() += 1
            }
        }
    }
    let ops = history.ops();
    r.commands = ops.len();
    let mut sent: BTreeSet<&str> = BTreeSet::new();
    for op in &ops {
        sent.insert(op.msg_id.as_str());
        let found = by_id.get(op.msg_id.as_str()).map_or(&[][..], Vec::as_slice);
        match &op.outcome {
            Outcome::Ok(seq) => {
                r.acknowledged += 1;
                match found.len() {
                    0 => {
                        r.lost += 1;
                        r.evidence.push(format!("LOST: {}", op.excerpt()));
                    }
                    1 if found[0].seq == *seq => r.once += 1,
                    1 => {
                        r.wrong_seq += 1;
                        r.evidence.push(format!(
                            "acknowledged at seq {seq} but stored at {}: {}",
                            found[0].seq,
                            op.excerpt()
                        ));
                    }
                    _ => {
                        r.doubled += 1;
                        let seqs: Vec<u64> = found.iter().map(|e| e.seq).collect();
                        r.evidence
                            .push(format!("DOUBLED at seqs {seqs:?}: {}", op.excerpt()));
                    }
                }
            }
            Outcome::Refused(_) => {
                r.refused += 1;
                if !found.is_empty() {
                    r.refused_but_appended += 1;
                    r.evidence
                        .push(format!("refused but appended: {}", op.excerpt()));
                }
            }
            Outcome::Indeterminate => match found.len() {
                0 => r.indeterminate_absent += 1,
                1 => r.indeterminate_present += 1,
                _ => {
                    r.doubled += 1;
                    r.evidence
                        .push(format!("DOUBLED (unanswered): {}", op.excerpt()));
                }
            },
        }
    }
    for (id, evs) in &by_id {
        if !sent.contains(id) {
            r.unexpected += evs.len();
            r.evidence
                .push(format!("unexpected: msg id {id} no client sent: {evs:?}"));
        }
    }
    r
}

/// Reads every stream and classifies the history; then compares the read models with replays.
///
/// # Errors
/// A stream or a query did not answer.
pub async fn check(c: &Client, history: &History) -> anyhow::Result<(Report, Vec<Event>)> {
    let mut events = Vec::new();
    for s in STREAMS {
        events.extend(read_stream(c, s).await?);
    }
    let mut report = classify(history, &events);
    compare_read_models(c, history, &events, &mut report).await?;
    Ok((report, events))
}

fn last_seq(events: &[Event], stream: &str) -> u64 {
    events
        .iter()
        .filter(|e| e.stream == stream)
        .map(|e| e.seq)
        .max()
        .unwrap_or(0)
}

async fn query(c: &Client, subject: &str, body: Value) -> anyhow::Result<Value> {
    // The read model may still be catching up after a fault: `unavailable` is asked again.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let r = c.request(subject, &body).await;
        match r {
            Ok(r) if r.code().is_none() => return Ok(r.body),
            Ok(r) if r.code() != Some("unavailable") => {
                anyhow::bail!("{subject} {body}: {}", r.body)
            }
            _ if Instant::now() > deadline => anyhow::bail!("{subject} {body}: no answer in 60 s"),
            _ => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

/// Compares shop carts, cluster trees, dispatch carts and engine statuses with replays of their
/// streams (only the aggregates this run's clients touched).
///
/// # Errors
/// A query did not answer.
pub async fn compare_read_models(
    c: &Client,
    history: &History,
    events: &[Event],
    r: &mut Report,
) -> anyhow::Result<()> {
    let mine = |id: &str| id.starts_with(&history.run);
    // shop: customer -> item -> count.
    let mut carts: BTreeMap<String, BTreeMap<String, i64>> = BTreeMap::new();
    for e in events.iter().filter(|e| e.stream == "SHOP") {
        let cust = e.data["customer_id"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let cart = carts.entry(cust).or_default();
        let item = e.data["item_id"].as_str().unwrap_or_default().to_string();
        match e.kind.as_str() {
            "ItemAdded" => {
                *cart.entry(item).or_default() += e.data["item_count"].as_i64().unwrap_or(0)
            }
            "ItemCountChanged" => {
                let n = e.data["new_count"].as_i64().unwrap_or(0);
                if n == 0 {
                    cart.remove(&item);
                } else {
                    cart.insert(item, n);
                }
            }
            "ItemRemoved" => {
                cart.remove(&item);
            }
            "CartCheckedOut" => cart.clear(),
            other => r
                .read_model_diffs
                .push(format!("SHOP: unknown event {other}")),
        }
    }
    let shop_seq = last_seq(events, "SHOP");
    for (cust, want) in carts.iter().filter(|(k, _)| mine(k)) {
        let v = query(
            c,
            "shop.query.cart",
            json!({"customer_id": cust, "min_seq": shop_seq}),
        )
        .await?;
        let got: BTreeMap<String, i64> = v["items"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|i| {
                (
                    i["item_id"].as_str().unwrap_or_default().to_string(),
                    i["item_count"].as_i64().unwrap_or(0),
                )
            })
            .collect();
        *r.read_model_checked.entry("shop carts".into()).or_default() += 1;
        if &got != want {
            r.read_model_diffs.push(format!(
                "shop cart {cust}: read model {got:?}, replay {want:?}"
            ));
        }
    }
    // cluster: manager -> (worker ids, version).
    let mut trees: BTreeMap<String, (BTreeSet<String>, u64)> = BTreeMap::new();
    for e in events.iter().filter(|e| e.stream == "CLUSTER") {
        let m = e.data["manager_id"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let t = trees.entry(m).or_default();
        t.1 += 1;
        match e.kind.as_str() {
            "WorkerConnected" => {
                t.0.insert(e.data["worker"]["id"].as_str().unwrap_or_default().into());
            }
            "WorkerDisconnected" => {
                t.0.remove(e.data["worker_id"].as_str().unwrap_or_default());
            }
            _ => {}
        }
    }
    let cluster_seq = last_seq(events, "CLUSTER");
    for (m, (want_workers, want_version)) in trees.iter().filter(|(k, _)| mine(k)) {
        let v = query(
            c,
            "cluster.query.tree",
            json!({"manager_id": m, "min_seq": cluster_seq}),
        )
        .await?;
        let got: BTreeSet<String> = v["workers"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|w| w["id"].as_str().unwrap_or_default().to_string())
            .collect();
        let version = v["version"].as_u64().unwrap_or(0);
        *r.read_model_checked
            .entry("cluster trees".into())
            .or_default() += 1;
        if &got != want_workers || version != *want_version {
            r.read_model_diffs.push(format!(
                "cluster tree {m}: read model workers {got:?} version {version}, replay {want_workers:?} version {want_version}"
            ));
        }
    }
    // dispatch: cart -> (home, ssd -> datasets).
    let mut dcarts: BTreeMap<String, (String, BTreeMap<String, BTreeSet<String>>)> =
        BTreeMap::new();
    for e in events.iter().filter(|e| e.stream == "DISPATCH") {
        let cart = e.data["cart_id"].as_str().unwrap_or_default().to_string();
        match e.kind.as_str() {
            "CartRegistered" => {
                dcarts.entry(cart).or_default().0 =
                    e.data["home"].as_str().unwrap_or_default().into();
            }
            "SsdRegistered" => {
                let ssd = e.data["ssd_id"].as_str().unwrap_or_default().to_string();
                let ds: BTreeSet<String> = e.data["datasets"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|d| d["dataset"].as_str().map(String::from))
                    .collect();
                dcarts.entry(cart).or_default().1.insert(ssd, ds);
            }
            "DatasetPut" => {
                let ssd = e.data["ssd_id"].as_str().unwrap_or_default().to_string();
                dcarts
                    .entry(cart)
                    .or_default()
                    .1
                    .entry(ssd)
                    .or_default()
                    .insert(e.data["dataset"].as_str().unwrap_or_default().into());
            }
            _ => {}
        }
    }
    let dispatch_seq = last_seq(events, "DISPATCH");
    for (cart, (home, ssds)) in dcarts.iter().filter(|(k, _)| mine(k)) {
        let v = query(
            c,
            "dispatch.query.cart",
            json!({"cart_id": cart, "min_seq": dispatch_seq}),
        )
        .await?;
        let got: BTreeMap<String, BTreeSet<String>> = v["ssds"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|s| {
                (
                    s["ssd_id"].as_str().unwrap_or_default().to_string(),
                    s["datasets"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|d| {
                            d.as_str()
                                .or_else(|| d["dataset"].as_str())
                                .map(String::from)
                        })
                        .collect(),
                )
            })
            .collect();
        *r.read_model_checked
            .entry("dispatch carts".into())
            .or_default() += 1;
        if &got != ssds || v["home"].as_str() != Some(home) {
            r.read_model_diffs.push(format!(
                "dispatch cart {cart}: read model home {} ssds {got:?}, replay home {home} ssds {ssds:?}",
                v["home"]
            ));
        }
    }
    // engine: (module, name) -> last value.
    let mut statuses: BTreeMap<(String, String), Value> = BTreeMap::new();
    for e in events
        .iter()
        .filter(|e| e.stream == "ENGINE" && e.kind == "StatusUpdated")
    {
        statuses.insert(
            (
                e.data["module_id"].as_str().unwrap_or_default().into(),
                e.data["name"].as_str().unwrap_or_default().into(),
            ),
            e.data["value"].clone(),
        );
    }
    let engine_seq = last_seq(events, "ENGINE");
    for ((module, name), want) in statuses.iter().filter(|((m, _), _)| mine(m)) {
        let v = query(
            c,
            "engine.query.status",
            json!({"module_id": module, "name": name, "min_seq": engine_seq}),
        )
        .await?;
        *r.read_model_checked
            .entry("engine statuses".into())
            .or_default() += 1;
        if &v["value"] != want {
            r.read_model_diffs.push(format!(
                "engine status {module}/{name}: read model {}, replay {want}",
                v["value"]
            ));
        }
    }
    Ok(())
}

/// Checks every stored file: readable with its sha256, and every chunk on at least `factor` live
/// servers (waits up to `wait` for re-replication).
///
/// # Errors
/// Never for a file problem (those go into the report); only for a local I/O error.
pub async fn check_files(
    c: &Client,
    history: &History,
    factor: usize,
    wait: Duration,
    r: &mut Report,
) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let files = history.files();
    r.files = files.len();
    let deadline = Instant::now() + wait;
    for f in &files {
        let out = dir.path().join(&f.file_id);
        let mut last_problem = String::new();
        let mut readable = false;
        let mut at_factor = false;
        loop {
            if !readable {
                match dfs::client::get(&c.nats, &f.file_id, &out, false).await {
                    Ok(_) => {
                        let bytes = std::fs::read(&out)?;
                        let sha = dfs::domain::sha256_hex(&bytes);
                        if sha == f.sha256 && bytes.len() == f.size {
                            readable = true;
                        } else {
                            last_problem = format!(
                                "{}: read {} bytes with sha256 {sha}, stored {} bytes {}",
                                f.file_id,
                                bytes.len(),
                                f.size,
                                f.sha256
                            );
                        }
                    }
                    Err(e) => last_problem = format!("{}: not readable: {e:#}", f.file_id),
                }
            }
            if readable && !at_factor {
                match dfs::client::locations(&c.nats, &f.file_id).await {
                    Ok(locs) => {
                        let short: Vec<(String, usize)> = locs
                            .iter()
                            .filter(|(_, s)| s.len() < factor)
                            .map(|(k, s)| (k.clone(), s.len()))
                            .collect();
                        if short.is_empty() && !locs.is_empty() {
                            at_factor = true;
                        } else {
                            last_problem = format!(
                                "{}: chunks below factor {factor}: {short:?} (of {})",
                                f.file_id,
                                locs.len()
                            );
                        }
                    }
                    Err(e) => last_problem = format!("{}: no locations: {e:#}", f.file_id),
                }
            }
            if (readable && at_factor) || Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        r.files_readable += usize::from(readable);
        r.files_at_factor += usize::from(at_factor);
        if !(readable && at_factor) {
            r.file_problems.push(last_problem);
        }
    }
    Ok(())
}

/// A short human summary of the failed attempts per subject in `[from, to]` (for the log).
#[must_use]
pub fn attempts_summary(history: &History, from: Duration, to: Duration) -> String {
    let mut per: BTreeMap<String, BTreeMap<String, usize>> = BTreeMap::new();
    for op in history.ops() {
        for (s, _, a) in &op.attempts {
            if *s >= from && *s <= to {
                let k = match a {
                    Attempt::Refused(c) => format!("refused:{c}"),
                    other => format!("{other:?}"),
                };
                *per.entry(op.subject.clone())
                    .or_default()
                    .entry(k)
                    .or_default() += 1;
            }
        }
    }
    let mut out = String::new();
    for (s, m) in per {
        let _ = write!(out, "{s} {m:?}; ");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(h: &History, n: u64, outcome: Outcome) -> Op {
        Op {
            client: "c".into(),
            subject: "shop.cmd.add-item".into(),
            msg_id: h.msg_id("c", n),
            body: json!({}),
            attempts: vec![(Duration::ZERO, Duration::from_millis(1), Attempt::Ok)],
            outcome,
            reply: Value::Null,
        }
    }

    fn ev(stream: &str, seq: u64, msg_id: Option<String>) -> Event {
        Event {
            stream: stream.into(),
            seq,
            subject: "shop.events.cart.x".into(),
            msg_id,
            kind: "ItemAdded".into(),
            data: json!({}),
        }
    }

    /// The checker finds each kind of violation it claims to find (so a passing run means something).
    #[test]
    fn classify_finds_lost_doubled_misplaced_unexpected_and_refused_but_stored() {
        let h = History::new("run1");
        h.record(op(&h, 1, Outcome::Ok(1))); // once
        h.record(op(&h, 2, Outcome::Ok(2))); // lost
        h.record(op(&h, 3, Outcome::Ok(3))); // doubled (3 and 4)
        h.record(op(&h, 4, Outcome::Ok(9))); // stored at 5, acknowledged as 9
        h.record(op(&h, 5, Outcome::Refused("conflict".into()))); // refused but stored at 6
        h.record(op(&h, 6, Outcome::Indeterminate)); // unanswered, stored once: fine
        h.record(op(&h, 7, Outcome::Indeterminate)); // unanswered, not stored: fine
        let events = vec![
            ev("SHOP", 1, Some(h.msg_id("c", 1))),
            ev("SHOP", 3, Some(h.msg_id("c", 3))),
            ev("SHOP", 4, Some(h.msg_id("c", 3))),
            ev("SHOP", 5, Some(h.msg_id("c", 4))),
            ev("SHOP", 6, Some(h.msg_id("c", 5))),
            ev("SHOP", 7, Some(h.msg_id("c", 6))),
            ev("SHOP", 8, Some(h.msg_id("c", 99))), // no client sent it
            ev("SHOP", 9, None),                    // appended without a command
            ev("DISPATCH", 1, Some("facility".into())), // internal
        ];
        let r = classify(&h, &events);
        assert_eq!(r.commands, 7);
        assert_eq!(r.acknowledged, 4);
        assert_eq!(r.once, 1);
        assert_eq!(r.lost, 1);
        assert_eq!(r.doubled, 1);
        assert_eq!(r.wrong_seq, 1);
        assert_eq!(r.refused, 1);
        assert_eq!(r.refused_but_appended, 1);
        assert_eq!(r.indeterminate_present, 1);
        assert_eq!(r.indeterminate_absent, 1);
        assert_eq!(r.unexpected, 2);
        assert_eq!(r.internal.get("DISPATCH/ItemAdded"), Some(&1));
        assert!(!r.passed());
        assert!(r.evidence.iter().any(|e| e.starts_with("LOST")));
        let clean = History::new("run2");
        clean.record(op(&clean, 1, Outcome::Ok(1)));
        let r = classify(&clean, &[ev("SHOP", 1, Some(clean.msg_id("c", 1)))]);
        assert!(r.passed(), "{r}");
    }

    #[test]
    fn the_gap_is_the_span_of_failed_attempts_after_the_fault() {
        let h = History::new("g");
        let mut o = op(&h, 1, Outcome::Ok(1));
        o.attempts = vec![
            (
                Duration::from_secs(10),
                Duration::from_secs(13),
                Attempt::Timeout,
            ),
            (
                Duration::from_secs(13),
                Duration::from_secs(14),
                Attempt::Unavailable,
            ),
            (
                Duration::from_secs(14),
                Duration::from_millis(14_100),
                Attempt::Ok,
            ),
        ];
        h.record(o);
        let g = h.gap_after(Duration::from_secs(9), Duration::from_secs(30));
        assert_eq!(g.failed_attempts, 2);
        assert_eq!(g.refused_for, Duration::from_secs(5));
        assert_eq!(g.longest_command, Duration::from_millis(4_100));
        assert_eq!(g.stalled_for, Duration::from_millis(5_100));
        assert_eq!(g.stalled_context, "shop");
        let before = h.gap_after(Duration::from_secs(20), Duration::from_secs(30));
        assert_eq!(before.failed_attempts, 0);
    }
}
