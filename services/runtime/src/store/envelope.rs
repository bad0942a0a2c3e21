//! The event envelope: how an event is stored (`{id, type, occurred_at, data}`), and the aggregate
//! trait the repository folds events into.

use crate::error::ServiceError;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::{de::DeserializeOwned, Deserialize, Serialize};

/// A state folded from events. `apply` must be total: an event already stored is a fact.
pub trait Aggregate: Default + Clone + Send + Sync + 'static {
    /// The event type; its JSON is `{"type": "...", "data": {...}}` (the envelope adds `id` and
    /// `occurred_at`).
    type Event: Serialize + DeserializeOwned + Clone + Send + Sync + 'static;
    /// Folds one event into the state.
    fn apply(&mut self, event: &Self::Event);
}

/// A stored event: its stream sequence, subject and decoded envelope.
#[derive(Debug, Clone)]
pub struct Stored<E> {
    pub seq: u64,
    pub subject: String,
    pub id: uuid::Uuid,
    pub occurred_at: DateTime<Utc>,
    pub event: E,
}

/// The envelope fields beside the event.
#[derive(Debug, Clone, Copy, Deserialize)]
pub struct EnvelopeMeta {
    pub id: uuid::Uuid,
    pub occurred_at: DateTime<Utc>,
}

/// The envelope's id and time read straight off the front of a payload in the form
/// [`encode_event`] writes (`{"id":"<uuid>","occurred_at":"<RFC 3339>",...`), without a JSON pass
/// over the whole event (a projection replay spends a third of its CPU decoding envelopes). `None`
/// for anything else (another writer's key order, escapes, whitespace): the caller then parses the
/// envelope as JSON, which accepts every form.
fn meta_as_encoded(payload: &[u8]) -> Option<EnvelopeMeta> {
    let rest = payload.strip_prefix(br#"{"id":""#)?;
    let id = uuid::Uuid::try_parse_ascii(rest.get(..36)?).ok()?;
    let rest = rest.get(36..)?.strip_prefix(br#"","occurred_at":""#)?;
    let end = rest.iter().position(|&b| b == b'"' || b == b'\\')?;
    if rest[end] != b'"' {
        return None;
    }
    let at = std::str::from_utf8(&rest[..end]).ok()?;
    let occurred_at = DateTime::parse_from_rfc3339(at).ok()?.with_timezone(&Utc);
    Some(EnvelopeMeta { id, occurred_at })
}

/// Decodes one stored message: the envelope's `id`/`occurred_at` and the typed event.
///
/// # Errors
/// A message that is not an envelope of this event type, with the reason.
pub fn decode_event<E: DeserializeOwned>(payload: &[u8]) -> Result<(EnvelopeMeta, E), String> {
    let meta = match meta_as_encoded(payload) {
        Some(meta) => meta,
        None => {
            serde_json::from_slice(payload).map_err(|e| format!("not an event envelope: {e}"))?
        }
    };
    let event: E =
        serde_json::from_slice(payload).map_err(|e| format!("unknown or malformed event: {e}"))?;
    Ok((meta, event))
}

/// Encodes an event as the contract's envelope: `{id, type, occurred_at, data}`.
///
/// # Errors
/// The event does not serialise as `{"type", "data"}` (a bug).
pub fn encode_event<E: Serialize>(
    id: uuid::Uuid,
    occurred_at: DateTime<Utc>,
    event: &E,
) -> Result<Bytes, ServiceError> {
    /// The envelope, written in one pass (the event adds `type` and `data`).
    #[derive(Serialize)]
    struct Envelope<'a, E> {
        id: uuid::Uuid,
        occurred_at: String,
        #[serde(flatten)]
        event: &'a E,
    }
    let env = Envelope {
        id,
        occurred_at: occurred_at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        event,
    };
    serde_json::to_vec(&env).map(Bytes::from).map_err(|e| {
        ServiceError::internal(format!("event does not serialise as {{type, data}}: {e}"))
    })
}

/// An event stamped for an append the repository does not run: a new id (the dedupe id when
/// the request has no `Nats-Msg-Id`) and its envelope at the current time.
pub struct NewEvent {
    /// The event's id, as text (the append's dedupe id).
    pub id: String,
    pub payload: Bytes,
}

/// Stamps `event` with a new id and the current time.
///
/// # Errors
/// The event does not serialise as `{"type", "data"}` (a bug).
pub fn stamp<E: Serialize>(event: &E) -> Result<NewEvent, ServiceError> {
    let id = uuid::Uuid::now_v7();
    Ok(NewEvent {
        payload: encode_event(id, Utc::now(), event)?,
        id: id.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fast_meta_path_reads_what_encode_writes_and_agrees_with_json() {
        let id = uuid::Uuid::now_v7();
        let at = chrono::DateTime::parse_from_rfc3339("2026-11-23T10:00:00.123456Z")
            .unwrap()
            .with_timezone(&Utc);
        let bytes = encode_event(id, at, &Ev::Nothing).unwrap();
        let fast = meta_as_encoded(&bytes).expect("the encoder's own form");
        let json: EnvelopeMeta = serde_json::from_slice(&bytes).unwrap();
        assert_eq!((fast.id, fast.occurred_at), (json.id, json.occurred_at));
        assert_eq!((fast.id, fast.occurred_at), (id, at));
    }

    #[test]
    fn other_forms_fall_back_to_json() {
        let id = uuid::Uuid::now_v7();
        for payload in [
            format!(r#"{{"occurred_at":"2026-11-23T10:00:00Z","id":"{id}","type":"Nothing"}}"#),
            format!(r#"{{ "id":"{id}","occurred_at":"2026-11-23T10:00:00Z","type":"Nothing"}}"#),
            format!(
                r#"{{"id":"{id}","occurred_at":"2026-11-23T10:00:00\u005a","type":"Nothing"}}"#
            ),
            format!(
                r#"{{"id":"{id}","occurred_at":"2026-11-23T10:00:00+02:00","type":"Nothing"}}"#
            ),
        ] {
            let (meta, ev) = decode_event::<Ev>(payload.as_bytes()).unwrap();
            assert_eq!(meta.id, id, "{payload}");
            assert_eq!(ev, Ev::Nothing);
        }
        assert!(meta_as_encoded(
            br#"{"id":"not-a-uuid-at-all-not-a-uuid-at-all","occurred_at":"x"}"#
        )
        .is_none());
        assert!(meta_as_encoded(b"{").is_none());
        assert!(decode_event::<Ev>(b"{").is_err());
    }

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    #[serde(tag = "type", content = "data")]
    enum Ev {
        Happened { what: String, n: i64 },
        Nothing,
    }

    #[test]
    fn events_are_envelopes_and_round_trip() {
        let id = uuid::Uuid::now_v7();
        let at = chrono::DateTime::parse_from_rfc3339("2026-11-23T10:00:00.123456Z")
            .unwrap()
            .with_timezone(&Utc);
        let bytes = encode_event(
            id,
            at,
            &Ev::Happened {
                what: "x.y".into(),
                n: 3,
            },
        )
        .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(v["id"], id.to_string());
        assert_eq!(v["type"], "Happened");
        assert_eq!(v["occurred_at"], "2026-11-23T10:00:00.123456Z");
        assert_eq!(v["data"], serde_json::json!({"what": "x.y", "n": 3}));
        let (meta, ev) = decode_event::<Ev>(&bytes).unwrap();
        assert_eq!(meta.id, id);
        assert_eq!(meta.occurred_at, at);
        assert_eq!(
            ev,
            Ev::Happened {
                what: "x.y".into(),
                n: 3
            }
        );
        assert!(decode_event::<Ev>(b"garbage").is_err());
        let unknown = br#"{"id":"0190c3c0-0000-7000-8000-000000000000","type":"Other","occurred_at":"2026-01-01T00:00:00Z","data":{}}"#;
        assert!(decode_event::<Ev>(unknown).unwrap_err().contains("unknown"));
    }
}
