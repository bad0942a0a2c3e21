//! Fanned-out uploads: one publish stores a chunk on several servers.
//!
//! `UPLOAD_CHUNK` on `dfs.chunk.<id>` (the contract's subject) reaches one server, so three replicas
//! cost the client three sends of the same bytes and the NATS server three reads of them. Here the
//! client publishes the frame once on `dfs.put.<id_1>.<id_2>...<id_k>` (k <= [`MAX_SERVERS`]); every
//! chunk server subscribes to each pattern that names it in some position, so NATS itself copies the
//! message to exactly the named servers. Each of them handles it as an `UPLOAD_CHUNK` and replies to
//! the one reply subject with its id in the [`SERVER_HEADER`] header.
//!
//! A server that does not answer in time (dead, or from a version without this subject) is simply
//! missing from the outcome; the caller then uses the contract's per-server subject for it.

use crate::domain::ChunkId;
use bytes::Bytes;
use futures::StreamExt;
use schemas::dfs::ChunkReply;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// The subject prefix of fanned-out uploads.
pub const PREFIX: &str = "dfs.put";
/// Most servers one fanned-out upload names; longer replica sets are split into several publishes.
pub const MAX_SERVERS: usize = 5;
/// The reply header naming the server that answered.
pub const SERVER_HEADER: &str = "Dfs-Chunk-Server";
/// After the first reply, how long the other named servers may take before they count as missing.
pub const GRACE: Duration = Duration::from_secs(5);

/// The subject that reaches exactly `servers` (1 to [`MAX_SERVERS`] distinct ids).
#[must_use]
pub fn subject<S: AsRef<str>>(servers: &[S]) -> String {
    let mut s = String::from(PREFIX);
    for id in servers {
        s.push('.');
        s.push_str(id.as_ref());
    }
    s
}

/// Every subscription pattern that names server `id` in some position of a subject of 1 to
/// [`MAX_SERVERS`] servers (`1 + 2 + ... + MAX_SERVERS` patterns).
#[must_use]
pub fn patterns(id: &str) -> Vec<String> {
    let mut out = Vec::new();
    for width in 1..=MAX_SERVERS {
        for position in 0..width {
            let tokens: Vec<&str> = (0..width)
                .map(|k| if k == position { id } else { "*" })
                .collect();
            out.push(subject(&tokens));
        }
    }
    out
}

type Waiting = Arc<Mutex<HashMap<u64, mpsc::UnboundedSender<async_nats::Message>>>>;

/// The client side: one reply subscription shared by every fanned-out upload of a connection.
pub struct Fanout {
    client: async_nats::Client,
    inbox: String,
    waiting: Waiting,
    next: AtomicU64,
    router: JoinHandle<()>,
    /// Servers that did not answer a fanned-out upload nor the direct request after it: later
    /// uploads reach them directly.
    missed: Mutex<HashSet<String>>,
}

impl Drop for Fanout {
    fn drop(&mut self) {
        self.router.abort();
    }
}

/// Removes an upload's entry from the reply table when the upload ends, however it ends.
struct Entry<'a>(&'a Waiting, u64);

impl Drop for Entry<'_> {
    fn drop(&mut self) {
        if let Ok(mut w) = self.0.lock() {
            w.remove(&self.1);
        }
    }
}

impl Fanout {
    /// Subscribes to a reply inbox of its own on `client`.
    ///
    /// # Errors
    /// The subscription could not be made.
    pub async fn new(client: &async_nats::Client) -> Result<Self, String> {
        let inbox = client.new_inbox();
        let mut replies = client
            .subscribe(format!("{inbox}.*"))
            .await
            .map_err(|e| format!("subscribing to {inbox}.*: {e}"))?;
        let waiting: Waiting = Arc::default();
        let router = {
            let waiting = waiting.clone();
            tokio::spawn(async move {
                while let Some(m) = replies.next().await {
                    let Some(token) = m
                        .subject
                        .as_str()
                        .rsplit('.')
                        .next()
                        .and_then(|t| t.parse::<u64>().ok())
                    else {
                        continue;
                    };
                    let tx = waiting.lock().ok().and_then(|w| w.get(&token).cloned());
                    if let Some(tx) = tx {
                        let _ = tx.send(m);
                    }
                }
            })
        };
        Ok(Self {
            client: client.clone(),
            inbox,
            waiting,
            next: AtomicU64::new(0),
            router,
            missed: Mutex::default(),
        })
    }

    /// Publishes `frame` (a framed `UPLOAD_CHUNK`) once to `servers` (distinct ids, at most
    /// [`MAX_SERVERS`]) and returns each answering server's outcome. A server missing from the map
    /// did not answer within `timeout` (or [`GRACE`] after the first answer).
    pub async fn upload(
        &self,
        servers: &[&str],
        frame: Bytes,
        timeout: Duration,
    ) -> HashMap<String, Result<(), String>> {
        let mut outcome = HashMap::new();
        if servers.is_empty() {
            return outcome;
        }
        debug_assert!(servers.len() <= MAX_SERVERS);
        let token = self.next.fetch_add(1, Ordering::Relaxed);
        let (tx, mut rx) = mpsc::unbounded_channel();
        if let Ok(mut w) = self.waiting.lock() {
            w.insert(token, tx);
        }
        let _entry = Entry(&self.waiting, token);
        let reply = format!("{}.{token}", self.inbox);
        if let Err(e) = self
            .client
            .publish_with_reply(subject(servers), reply, frame)
            .await
        {
            tracing::debug!(error = %e, "fanned-out upload not sent");
            return outcome;
        }
        let mut deadline = tokio::time::Instant::now() + timeout;
        while outcome.len() < servers.len() {
            let Ok(Some(m)) = tokio::time::timeout_at(deadline, rx.recv()).await else {
                break;
            };
            // "No responders": none of the named servers is subscribed.
            if m.status == Some(async_nats::StatusCode::NO_RESPONDERS) {
                break;
            }
            let Some(server) = m
                .headers
                .as_ref()
                .and_then(|h| h.get(SERVER_HEADER))
                .map(|v| v.as_str().to_string())
            else {
                continue;
            };
            if !servers.contains(&server.as_str()) {
                continue;
            }
            let result = match serde_json::from_slice::<ChunkReply>(&m.payload) {
                Ok(r) if r.status == "success" => Ok(()),
                Ok(r) => Err(format!(
                    "{}: {}",
                    crate::transfer::chunk_subject(&server),
                    r.message.unwrap_or_default()
                )),
                Err(e) => Err(format!("{server}: bad reply: {e}")),
            };
            if outcome.is_empty() {
                deadline = deadline.min(tokio::time::Instant::now() + GRACE);
            }
            outcome.insert(server, result);
        }
        outcome
    }

    /// Whether server `id` was marked with [`Fanout::mark_missed`] (so it is better reached on its
    /// own subject).
    #[must_use]
    pub fn missed(&self, id: &str) -> bool {
        self.missed.lock().is_ok_and(|m| m.contains(id))
    }

    /// Marks server `id` as one that fanned-out uploads do not reach (it missed one, and a direct
    /// request failed too): later uploads go to it on its own subject only.
    pub fn mark_missed(&self, id: &str) {
        if let Ok(mut missed) = self.missed.lock() {
            if missed.insert(id.to_string()) {
                tracing::debug!(server = id, "no answer to a fanned-out upload nor to a direct one; later uploads go to it directly");
            }
        }
    }
}

/// Whether `subject` is a well-formed fanned-out upload subject naming `id` (servers refuse others).
#[must_use]
pub fn names(subject: &str, id: &str) -> bool {
    subject
        .strip_prefix(PREFIX)
        .and_then(|rest| rest.strip_prefix('.'))
        .is_some_and(|rest| {
            let tokens: Vec<&str> = rest.split('.').collect();
            tokens.len() <= MAX_SERVERS
                && tokens.iter().all(|t| ChunkId::parse(t).is_ok())
                && tokens.contains(&id)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_name_the_server_once_in_every_position() {
        let p = patterns("cs-a");
        assert_eq!(p.len(), (1..=MAX_SERVERS).sum::<usize>());
        assert!(p.contains(&"dfs.put.cs-a".to_string()));
        assert!(p.contains(&"dfs.put.*.cs-a.*".to_string()));
        assert!(p.contains(&"dfs.put.*.*.*.*.cs-a".to_string()));
        assert!(p.iter().all(|s| s.matches("cs-a").count() == 1));
    }

    #[test]
    fn a_subject_names_its_servers() {
        let s = subject(&["a", "b", "c"]);
        assert_eq!(s, "dfs.put.a.b.c");
        assert!(names(&s, "b"));
        assert!(!names(&s, "d"));
        assert!(!names("dfs.put.a.b.c.d.e.f", "a"));
        assert!(!names("dfs.chunk.a", "a"));
    }
}
