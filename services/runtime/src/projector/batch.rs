//! One batch's commit: which events the checkpoint already covers, which follow it and are applied,
//! which come after a hole and go back; poison parked; the checkpoint moved in the same transaction.

use super::runner::{Outcome, Runner};
use super::Projection;
use crate::store::{decode_event, Stored};
use async_nats::jetstream::{self, AckKind};
use std::sync::atomic::Ordering;
use std::time::Duration;

fn is_transient(e: &sqlx::Error) -> bool {
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

/// A batch split by where its events stand against the checkpoint (indices into the batch, in
/// batch order).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Partition {
    /// Events the checkpoint already covers (a redelivery): acknowledged, not applied.
    pub covered: Vec<usize>,
    /// The run that directly follows the checkpoint: applied in this transaction.
    pub apply: Vec<usize>,
    /// Events after a hole: handed back, so that the batch holding the hole's events commits first.
    pub later: Vec<usize>,
    /// The sequence after the last event applied (the new checkpoint is `next - 1`).
    pub next: u64,
    /// The hole `(from, to)` (sequences `from..to` missing from the batch) that sent events to
    /// `later`, when `hole_is_empty` did not know it to be empty.
    pub hole: Option<(u64, u64)>,
}

/// Splits a batch (stream sequences in stream order; `None` for a message without one, which is
/// left out) against `checkpoint`. A gap in the sequences is crossed only when
/// `hole_is_empty(from, to)` says the stream holds nothing in `from..to` (deleted messages).
#[must_use]
pub fn partition(
    seqs: &[Option<u64>],
    checkpoint: u64,
    mut hole_is_empty: impl FnMut(u64, u64) -> bool,
) -> Partition {
    let mut p = Partition {
        next: checkpoint + 1,
        ..Partition::default()
    };
    for (i, seq) in seqs.iter().enumerate() {
        let Some(seq) = *seq else { continue };
        if seq < p.next {
            p.covered.push(i);
        } else if seq == p.next || (p.later.is_empty() && hole_is_empty(p.next, seq)) {
            p.apply.push(i);
            p.next = seq + 1;
        } else {
            if p.later.is_empty() {
                p.hole = Some((p.next, seq));
            }
            p.later.push(i);
        }
    }
    p
}

impl<P: Projection> Runner<P> {
    /// The batch's partition, asking the stream about the holes it meets.
    async fn partition_batch(&self, batch: &[jetstream::Message], cp: u64) -> Partition {
        let seqs: Vec<Option<u64>> = batch
            .iter()
            .map(|m| m.info().ok().map(|i| i.stream_sequence))
            .collect();
        let mut empty: Vec<(u64, u64)> = Vec::new();
        loop {
            let p = partition(&seqs, cp, |from, to| empty.contains(&(from, to)));
            match p.hole {
                Some(hole) if self.hole_is_empty(hole.0, hole.1).await => empty.push(hole),
                _ => return p,
            }
        }
    }

    /// One attempt at committing a batch. Acks (or naks) the messages once the outcome is known.
    pub(super) async fn commit(
        &self,
        mut tx: sqlx::Transaction<'static, sqlx::Postgres>,
        cp: i64,
        batch: &[jetstream::Message],
    ) -> Result<Outcome, sqlx::Error> {
        let part = self.partition_batch(batch, cp.max(0) as u64).await;
        let next = part.next;
        let take: Vec<&jetstream::Message> = part.apply.iter().map(|&i| &batch[i]).collect();
        let covered: Vec<&jetstream::Message> = part.covered.iter().map(|&i| &batch[i]).collect();
        let later: Vec<&jetstream::Message> = part.later.iter().map(|&i| &batch[i]).collect();
        let mut events = Vec::with_capacity(take.len());
        let mut poison: Vec<(u64, &jetstream::Message, String)> = Vec::new();
        for m in &take {
            let seq = m.info().map(|i| i.stream_sequence).unwrap_or(0);
            match decode_event::<P::Event>(&m.payload) {
                Ok((meta, event)) => events.push(Stored {
                    seq,
                    subject: m.subject.to_string(),
                    id: meta.id,
                    occurred_at: meta.occurred_at,
                    event,
                }),
                Err(reason) => poison.push((seq, *m, reason)),
            }
        }
        if !events.is_empty() {
            sqlx::query("SAVEPOINT batch").execute(&mut *tx).await?;
            if let Err(e) = self.p.apply(&mut tx, &events).await {
                if is_transient(&e) {
                    return Ok(Outcome::Retry(e));
                }
                // Find the event(s) at fault: apply one at a time, parking what fails.
                sqlx::query("ROLLBACK TO SAVEPOINT batch")
                    .execute(&mut *tx)
                    .await?;
                for (i, ev) in events.iter().enumerate() {
                    sqlx::query("SAVEPOINT one").execute(&mut *tx).await?;
                    if let Err(e) = self.p.apply(&mut tx, std::slice::from_ref(ev)).await {
                        if is_transient(&e) {
                            return Ok(Outcome::Retry(e));
                        }
                        sqlx::query("ROLLBACK TO SAVEPOINT one")
                            .execute(&mut *tx)
                            .await?;
                        if let Some(m) = take
                            .iter()
                            .find(|m| m.info().map(|i| i.stream_sequence).ok() == Some(ev.seq))
                        {
                            poison.push((
                                ev.seq,
                                *m,
                                format!("applying event {i} of the batch failed: {e}"),
                            ));
                        }
                    } else {
                        sqlx::query("RELEASE SAVEPOINT one")
                            .execute(&mut *tx)
                            .await?;
                    }
                }
            }
        }
        for (seq, m, reason) in &poison {
            tracing::error!(projection = P::NAME, seq, reason = %reason, "parking an event that cannot be projected");
            sqlx::query("INSERT INTO runtime.dead_letters (projection, seq, subject, payload, reason) VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING")
                .bind(P::NAME)
                .bind(*seq as i64)
                .bind(m.subject.as_str())
                .bind(m.payload.as_ref())
                .bind(reason)
                .execute(&mut *tx)
                .await?;
        }
        let new_cp = next - 1;
        if new_cp as i64 != cp {
            sqlx::query(
                "UPDATE runtime.checkpoints SET seq = $2, updated_at = now() WHERE projection = $1",
            )
            .bind(P::NAME)
            .bind(new_cp as i64)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        for m in take.iter().chain(covered.iter()) {
            let _ = m.ack().await;
        }
        if !later.is_empty() {
            tracing::debug!(
                projection = P::NAME,
                next,
                held_back = later.len(),
                "events after a hole handed back"
            );
        }
        for m in &later {
            let _ = m
                .ack_with(AckKind::Nak(Some(Duration::from_millis(50))))
                .await;
        }
        self.handle
            .inner
            .parked
            .fetch_add(poison.len() as i64, Ordering::Relaxed);
        self.handle.inner.checkpoint.send_if_modified(|c| {
            if new_cp > *c {
                *c = new_cp;
                true
            } else {
                false
            }
        });
        Ok(Outcome::Committed(new_cp))
    }

    /// Whether the stream holds no message in `from..to` (a hole left by deleted messages).
    async fn hole_is_empty(&self, from: u64, to: u64) -> bool {
        if to.saturating_sub(from) > 1000 {
            return false;
        }
        for seq in from..to {
            match self.store.exists(seq).await {
                Ok(false) => {}
                _ => return false,
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seqs(v: &[u64]) -> Vec<Option<u64>> {
        v.iter().copied().map(Some).collect()
    }

    #[test]
    fn a_run_after_the_checkpoint_is_applied() {
        let p = partition(&seqs(&[11, 12, 13]), 10, |_, _| panic!("no hole"));
        assert_eq!(p.apply, vec![0, 1, 2]);
        assert!(p.covered.is_empty() && p.later.is_empty());
        assert_eq!((p.next, p.hole), (14, None));
    }

    #[test]
    fn redelivered_events_are_covered() {
        let p = partition(&seqs(&[9, 10, 11]), 10, |_, _| panic!("no hole"));
        assert_eq!(p.covered, vec![0, 1]);
        assert_eq!(p.apply, vec![2]);
        assert_eq!(p.next, 12);
    }

    #[test]
    fn events_after_a_hole_go_back() {
        let mut asked = Vec::new();
        let p = partition(&seqs(&[11, 14, 15]), 10, |f, t| {
            asked.push((f, t));
            false
        });
        assert_eq!(asked, vec![(12, 14)], "asked once, about the first hole");
        assert_eq!(p.apply, vec![0]);
        assert_eq!(p.later, vec![1, 2]);
        assert_eq!((p.next, p.hole), (12, Some((12, 14))));
    }

    #[test]
    fn an_empty_hole_is_crossed() {
        let p = partition(&seqs(&[11, 14, 15, 18]), 10, |f, t| (f, t) == (12, 14));
        assert_eq!(p.apply, vec![0, 1, 2]);
        assert_eq!(p.later, vec![3]);
        assert_eq!((p.next, p.hole), (16, Some((16, 18))));
    }

    #[test]
    fn a_batch_that_starts_after_a_hole_applies_nothing() {
        let p = partition(&seqs(&[20, 21]), 10, |_, _| false);
        assert!(p.apply.is_empty() && p.covered.is_empty());
        assert_eq!(p.later, vec![0, 1]);
        assert_eq!(p.next, 11);
    }

    #[test]
    fn messages_without_a_sequence_are_left_out() {
        let p = partition(&[Some(11), None, Some(12)], 10, |_, _| false);
        assert_eq!(p.apply, vec![0, 2]);
        assert!(p.covered.is_empty() && p.later.is_empty());
    }
}
