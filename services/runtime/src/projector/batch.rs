//! One batch's commit: the events the checkpoint already covers are skipped, the rest applied in
//! stream order, poison parked, and the checkpoint moved (compare-and-set) in the same transaction.

use super::runner::Runner;
use super::Projection;
use crate::store::{decode_event, Stored};
use async_nats::jetstream;
use sqlx::{Connection as _, PgConnection};

/// Whether a PostgreSQL error is about the connection or the server's state (retry the batch)
/// rather than about the batch's SQL (park the event at fault).
/// The checkpoint's compare-and-set failed (`runtime.advance_checkpoint`).
fn is_moved(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.code().as_deref() == Some("SY001"))
}

pub(super) fn is_transient(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(db) => {
            let code = db.code().unwrap_or_default();
            code.starts_with("08")
                || code.starts_with("57")
                || code.starts_with("53")
                || code == "40001"
                || code == "40P01"
        }
        _ => true,
    }
}

/// A batch split by where its events stand against the checkpoint (indices into the batch).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Partition {
    /// Events the checkpoint already covers: skipped.
    pub covered: Vec<usize>,
    /// Events after the checkpoint, in stream order: applied in this transaction.
    pub apply: Vec<usize>,
    /// The new checkpoint: the last sequence applied (the old one when nothing is).
    pub last: u64,
}

/// Splits a batch (stream sequences as delivered; `None` for a message without one, which is left
/// out) against `checkpoint`. The owner's consumer delivers in stream order, so a gap between two
/// sequences is a message no longer in the stream (deleted), not one still on its way; a sequence
/// that is not above the last one taken (a redelivery) is covered.
#[must_use]
pub fn partition(seqs: &[Option<u64>], checkpoint: u64) -> Partition {
    let mut p = Partition {
        last: checkpoint,
        ..Partition::default()
    };
    for (i, seq) in seqs.iter().enumerate() {
        let Some(seq) = *seq else { continue };
        if seq <= p.last {
            p.covered.push(i);
        } else {
            p.apply.push(i);
            p.last = seq;
        }
    }
    p
}

/// A batch as it is gathered: each message's sequence read and its event decoded as it arrives, so
/// that decoding the next batch overlaps the transaction of the current one (the runner gathers
/// while it commits) instead of adding to it.
pub(super) struct Batch<E> {
    msgs: Vec<jetstream::Message>,
    /// Each message's stream sequence (`None`: it has none, and is left out).
    seqs: Vec<Option<u64>>,
    /// The events decoded, in batch order, and the index of the message of each.
    decoded: Vec<Stored<E>>,
    decoded_at: Vec<usize>,
    /// Messages that do not decode: their index and the reason.
    failed: Vec<(usize, String)>,
    /// What the stream still held after the last message (its `pending`).
    behind: u64,
}

impl<E: serde::de::DeserializeOwned> Batch<E> {
    pub(super) fn with_capacity(n: usize) -> Self {
        Self {
            msgs: Vec::with_capacity(n),
            seqs: Vec::with_capacity(n),
            decoded: Vec::with_capacity(n),
            decoded_at: Vec::with_capacity(n),
            failed: Vec::new(),
            behind: 0,
        }
    }

    /// Adds a message: its sequence read, its event decoded (or its failure noted) now.
    pub(super) fn push(&mut self, m: jetstream::Message) {
        let i = self.msgs.len();
        let info = m
            .info()
            .ok()
            .map(|info| (info.stream_sequence, info.pending));
        if let Some((_, pending)) = info {
            self.behind = pending;
        }
        let seq = info.map(|(seq, _)| seq);
        if let Some(seq) = seq {
            match decode_event::<E>(&m.payload) {
                Ok((meta, event)) => {
                    self.decoded.push(Stored {
                        seq,
                        subject: m.subject.to_string(),
                        id: meta.id,
                        occurred_at: meta.occurred_at,
                        event,
                    });
                    self.decoded_at.push(i);
                }
                Err(reason) => self.failed.push((i, reason)),
            }
        }
        self.seqs.push(seq);
        self.msgs.push(m);
    }

    pub(super) fn len(&self) -> usize {
        self.msgs.len()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.msgs.is_empty()
    }

    pub(super) fn clear(&mut self) {
        self.msgs.clear();
        self.seqs.clear();
        self.decoded.clear();
        self.decoded_at.clear();
        self.failed.clear();
        self.behind = 0;
    }

    /// What the stream still held after the batch's last message.
    pub(super) fn behind(&self) -> u64 {
        self.behind
    }

    /// Keeps only the decoded events `apply` (indices of messages) names; idempotent, so a batch
    /// committed again after a retry keeps the same ones.
    fn keep_only(&mut self, apply: &[usize]) {
        if self
            .decoded_at
            .iter()
            .all(|i| apply.binary_search(i).is_ok())
        {
            return;
        }
        let keep: Vec<bool> = self
            .decoded_at
            .iter()
            .map(|i| apply.binary_search(i).is_ok())
            .collect();
        let mut flags = keep.iter();
        self.decoded
            .retain(|_| flags.next().copied().unwrap_or(false));
        let mut flags = keep.iter();
        self.decoded_at
            .retain(|_| flags.next().copied().unwrap_or(false));
    }
}

/// What became of one attempt at committing a batch.
pub(super) enum Outcome {
    /// Committed: the checkpoint is now this sequence.
    Committed(u64),
    /// The checkpoint was not the one the batch was made against (another owner, or a rebuild):
    /// nothing changed; start again from the checkpoint as it is.
    Moved,
    /// PostgreSQL is not reachable: try the same batch again.
    Retry(sqlx::Error),
}

/// Poison: an event's sequence, its message, and why it cannot be projected.
type Parked<'a> = Vec<(u64, &'a jetstream::Message, String)>;

/// One transaction's result: done, or the batch's `apply` refused it and the events must be
/// applied one at a time (each in a savepoint) to find the poison.
enum Attempt {
    Done(Outcome),
    OneByOne,
}

impl<P: Projection> Runner<P> {
    /// One attempt at committing `batch` on top of checkpoint `cp`.
    pub(super) async fn commit(
        &self,
        cp: u64,
        batch: &mut Batch<P::Event>,
        conn: &mut PgConnection,
    ) -> Result<Outcome, sqlx::Error> {
        let part = partition(&batch.seqs, cp);
        if part.apply.is_empty() {
            return Ok(Outcome::Committed(cp));
        }
        batch.keep_only(&part.apply);
        let batch = &*batch;
        let undecodable: Parked<'_> = batch
            .failed
            .iter()
            .filter(|(i, _)| part.apply.binary_search(i).is_ok())
            .map(|(i, reason)| (batch.seqs[*i].unwrap_or(0), &batch.msgs[*i], reason.clone()))
            .collect();
        // The whole batch in one go; only when its `apply` fails for a reason that is not the
        // connection, again one event at a time (a savepoint each) to park the ones at fault.
        match self
            .attempt_or_moved(&mut *conn, cp, part.last, batch, undecodable.clone(), false)
            .await?
        {
            Attempt::Done(outcome) => Ok(outcome),
            Attempt::OneByOne => match self
                .attempt_or_moved(conn, cp, part.last, batch, undecodable, true)
                .await?
            {
                Attempt::Done(outcome) => Ok(outcome),
                Attempt::OneByOne => Err(sqlx::Error::Protocol(
                    "a projection batch applied one event at a time asked for it again".into(),
                )),
            },
        }
    }

    /// One transaction: the checkpoint moved from `cp` to `last` (compare-and-set), the events
    /// applied (all at once, or `one_by_one`), the poison parked, committed.
    /// [`Self::attempt`]; a failed attempt leaves the connection out of any transaction, and a
    /// checkpoint that moved is [`Outcome::Moved`].
    async fn attempt_or_moved<'a>(
        &self,
        conn: &mut PgConnection,
        cp: u64,
        last: u64,
        batch: &'a Batch<P::Event>,
        poison: Parked<'a>,
        one_by_one: bool,
    ) -> Result<Attempt, sqlx::Error> {
        match self
            .attempt(&mut *conn, cp, last, batch, poison, one_by_one)
            .await
        {
            Err(e) => {
                // A statement sent with the BEGIN that failed leaves the session in an aborted
                // transaction that sqlx does not count as one: end it, so that the connection is
                // usable again (after any other failure there is no transaction, and this is a
                // no-op; on a broken connection it fails at once).
                let _ = sqlx::raw_sql("ROLLBACK").execute(&mut *conn).await;
                if is_moved(&e) {
                    Ok(Attempt::Done(Outcome::Moved))
                } else {
                    Err(e)
                }
            }
            ok => ok,
        }
    }

    async fn attempt<'a>(
        &self,
        conn: &mut PgConnection,
        cp: u64,
        last: u64,
        batch: &'a Batch<P::Event>,
        mut poison: Parked<'a>,
        one_by_one: bool,
    ) -> Result<Attempt, sqlx::Error> {
        let events = &batch.decoded;
        // The read model is derived from the stream, and the checkpoint moves in the same
        // transaction: a commit lost with a crash of PostgreSQL loses its checkpoint with it, and
        // the batch is applied again. So with `sync_commit` off the commit does not wait for its
        // WAL flush (`synchronous_commit` off for this transaction).
        //
        // The compare-and-set of the checkpoint goes with the BEGIN, in one round trip: it fails
        // the transaction (SQLSTATE SY001, and nothing changes) when another process moved the
        // checkpoint; otherwise it holds the row until the commit, while this transaction applies
        // (never across a wait on NATS). Its values are numbers and the projection's name (a
        // constant of the code, quoted), so the statement is written out rather than bound.
        let begin = format!(
            "BEGIN;{} SELECT runtime.advance_checkpoint('{}', {cp}, {last})",
            if self.sync_commit {
                ""
            } else {
                " SET LOCAL synchronous_commit TO OFF;"
            },
            P::NAME.replace('\'', "''"),
        );
        // A failure here (SQLSTATE SY001 when the checkpoint moved) is handled by `attempt_or_moved`.
        let mut tx = conn.begin_with(sqlx::AssertSqlSafe(begin)).await?;
        if !events.is_empty() && !one_by_one {
            if let Err(e) = self.p.apply(&mut tx, events).await {
                if is_transient(&e) {
                    return Ok(Attempt::Done(Outcome::Retry(e)));
                }
                tracing::warn!(projection = P::NAME, error = %e, "a batch failed to apply; applying its events one at a time to find the one at fault");
                tx.rollback().await?;
                return Ok(Attempt::OneByOne);
            }
        }
        if one_by_one {
            for (i, (ev, &at)) in events.iter().zip(&batch.decoded_at).enumerate() {
                sqlx::query("SAVEPOINT one").execute(&mut *tx).await?;
                if let Err(e) = self.p.apply(&mut tx, std::slice::from_ref(ev)).await {
                    if is_transient(&e) {
                        return Ok(Attempt::Done(Outcome::Retry(e)));
                    }
                    sqlx::query("ROLLBACK TO SAVEPOINT one")
                        .execute(&mut *tx)
                        .await?;
                    poison.push((
                        ev.seq,
                        &batch.msgs[at],
                        format!("applying event {i} of the batch failed: {e}"),
                    ));
                } else {
                    sqlx::query("RELEASE SAVEPOINT one")
                        .execute(&mut *tx)
                        .await?;
                }
            }
        }
        for (seq, m, reason) in &poison {
            tracing::error!(projection = P::NAME, seq, subject = %m.subject, reason = %reason, "parking an event that cannot be projected: the read model no longer matches the stream");
            sqlx::query("INSERT INTO runtime.dead_letters (projection, seq, subject, payload, reason) VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING")
                .bind(P::NAME)
                .bind(*seq as i64)
                .bind(m.subject.as_str())
                .bind(m.payload.as_ref())
                .bind(reason)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        self.handle.note_parked(
            poison.len(),
            poison
                .last()
                .map(|(seq, _, reason)| format!("seq {seq}: {reason}")),
        );
        self.handle.set_checkpoint(last);
        Ok(Attempt::Done(Outcome::Committed(last)))
    }
}

#[cfg(test)]
mod tests {
    use super::partition;

    fn seqs(v: &[u64]) -> Vec<Option<u64>> {
        v.iter().copied().map(Some).collect()
    }

    #[test]
    fn events_after_the_checkpoint_are_applied_in_order() {
        let p = partition(&seqs(&[11, 12, 13]), 10);
        assert_eq!(p.apply, vec![0, 1, 2]);
        assert!(p.covered.is_empty());
        assert_eq!(p.last, 13);
    }

    #[test]
    fn events_the_checkpoint_covers_are_skipped() {
        let p = partition(&seqs(&[9, 10, 11]), 10);
        assert_eq!(p.covered, vec![0, 1]);
        assert_eq!(p.apply, vec![2]);
        assert_eq!(p.last, 11);
    }

    #[test]
    fn a_gap_is_a_deleted_message_and_is_crossed() {
        let p = partition(&seqs(&[11, 14, 15]), 10);
        assert_eq!(p.apply, vec![0, 1, 2]);
        assert_eq!(p.last, 15);
    }

    #[test]
    fn a_repeat_inside_the_batch_is_covered() {
        let p = partition(&seqs(&[11, 12, 12, 13]), 10);
        assert_eq!(p.apply, vec![0, 1, 3]);
        assert_eq!(p.covered, vec![2]);
    }

    #[test]
    fn nothing_new_leaves_the_checkpoint() {
        let p = partition(&seqs(&[5, 6]), 10);
        assert!(p.apply.is_empty());
        assert_eq!(p.last, 10);
    }

    #[test]
    fn messages_without_a_sequence_are_left_out() {
        let p = partition(&[Some(11), None, Some(12)], 10);
        assert_eq!(p.apply, vec![0, 2]);
        assert!(p.covered.is_empty());
    }
}
