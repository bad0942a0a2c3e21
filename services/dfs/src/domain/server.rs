//! The chunk server aggregate: live or lost.

use super::*;

/// A chunk server as its events leave it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServerState {
    pub live: bool,
}

impl runtime::store::Aggregate for ServerState {
    type Event = DfsEvent;
    fn apply(&mut self, event: &DfsEvent) {
        match event {
            DfsEvent::ServerJoined { .. } => self.live = true,
            DfsEvent::ServerLost { .. } => self.live = false,
            _ => {}
        }
    }
}

/// A heartbeat from a server: `ServerJoined` unless it is already live.
#[must_use]
pub fn decide_heard(state: &ServerState, server_id: &str, subject: &str) -> Option<DfsEvent> {
    (!state.live).then(|| DfsEvent::ServerJoined {
        server_id: server_id.into(),
        subject: subject.into(),
    })
}

/// Silence past the dead-after window: `ServerLost` unless it is already lost.
#[must_use]
pub fn decide_silent(state: &ServerState, server_id: &str) -> Option<DfsEvent> {
    state.live.then(|| DfsEvent::ServerLost {
        server_id: server_id.into(),
    })
}
