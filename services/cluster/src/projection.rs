//! The read model: each manager's folded state in `cluster.managers`, one row per manager, written
//! through the same `evolve` the command side uses (so the tree's `version` matches the deltas'),
//! plus the tree rendered as JSON text so that `cluster.query.tree` serves it without work.
//!
//! The states of recently projected managers are kept in memory; a row's tree is read back (and the
//! state rebuilt from it with [`from_tree`]) only when its `seq` is not the one this process last
//! wrote (another process projected it, or a transaction rolled back).

use crate::domain::{self, Event, Manager, ManagerState};
use crate::handlers::{capability, data_type};
use runtime::projector::Projection;
use runtime::sqltext::esc;
use runtime::store::Stored;
use schemas::cluster as wire;
use sqlx::PgConnection;
use std::collections::HashMap;
use std::sync::Mutex;

/// Managers whose state is kept in memory.
const CACHED: usize = 1_000;

/// Rebuilds a manager's state from its tree (the tree holds every field of the state).
#[must_use]
pub fn from_tree(manager_id: &str, t: wire::Tree) -> Manager {
    let state = [
        ManagerState::Started,
        ManagerState::WorkersConnected,
        ManagerState::NodesReady,
        ManagerState::Executing,
        ManagerState::Stopped,
        ManagerState::Finalizing,
    ]
    .into_iter()
    .find(|s| s.code() == t.state);
    let mut running: std::collections::BTreeMap<String, bool> = t
        .graph
        .nodes
        .iter()
        .map(|n| (n.id.clone(), false))
        .collect();
    for w in &t.workers {
        for n in &w.nodes {
            running.insert(n.id.clone(), n.running);
        }
    }
    Manager {
        manager_id: manager_id.to_string(),
        state,
        ip: t.ip,
        port: t.port,
        workers: t
            .workers
            .into_iter()
            .map(|w| domain::Worker {
                info: domain::WorkerInfo {
                    id: w.id,
                    name: w.name,
                    ip: w.ip,
                    port: w.port,
                },
                connected: w.connected,
            })
            .collect(),
        nodes: t
            .graph
            .nodes
            .into_iter()
            .map(|n| domain::NodeSpec {
                id: n.id,
                name: n.name,
                port: n.port,
                data_type: data_type(n.data_type),
                dashboard_component: n.dashboard_component,
                capabilities: n.capabilities.into_iter().map(capability).collect(),
            })
            .collect(),
        edges: t.graph.edges,
        mapping: t.worker_graph_map,
        running,
        version: t.version,
    }
}

/// The `cluster_tree` projection.
#[derive(Default)]
pub struct TreeProjection {
    cache: Mutex<HashMap<String, (Manager, u64)>>,
}

impl TreeProjection {
    fn cached(&self, id: &str, seq: u64) -> Option<Manager> {
        let mut cache = self.cache.lock().ok()?;
        match cache.remove(id) {
            Some((m, s)) if s == seq => Some(m),
            _ => None,
        }
    }

    fn remember(&self, id: String, m: Manager, seq: u64) {
        if let Ok(mut cache) = self.cache.lock() {
            if cache.len() >= CACHED && !cache.contains_key(&id) {
                cache.clear();
            }
            cache.insert(id, (m, seq));
        }
    }
}

impl Projection for TreeProjection {
    type Event = Event;
    const NAME: &'static str = "cluster_tree";

    async fn apply(
        &self,
        tx: &mut PgConnection,
        events: &[Stored<Event>],
    ) -> Result<(), sqlx::Error> {
        let mut order: Vec<String> = Vec::new();
        let mut states: HashMap<String, (Manager, u64)> = HashMap::new();
        for e in events {
            let id = e.event.manager_id().to_string();
            if !states.contains_key(&id) {
                let seq: Option<i64> =
                    sqlx::query_scalar("SELECT seq FROM cluster.managers WHERE manager_id = $1")
                        .bind(esc(&id).as_ref())
                        .fetch_optional(&mut *tx)
                        .await?;
                let state = match seq {
                    None => Manager::default(),
                    Some(seq) => match self.cached(&id, seq.max(0) as u64) {
                        Some(m) => m,
                        None => {
                            let (tree,): (String,) = sqlx::query_as(
                                "SELECT tree FROM cluster.managers WHERE manager_id = $1",
                            )
                            .bind(esc(&id).as_ref())
                            .fetch_one(&mut *tx)
                            .await?;
                            let tree: wire::Tree = serde_json::from_str(&tree)
                                .map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
                            from_tree(&id, tree)
                        }
                    },
                };
                states.insert(id.clone(), (state, 0));
                order.push(id.clone());
            }
            if let Some((m, seq)) = states.get_mut(&id) {
                m.evolve(&e.event);
                *seq = e.seq;
            }
        }
        for id in order {
            let Some((m, seq)) = states.remove(&id) else {
                continue;
            };
            let state = m.state.unwrap_or(ManagerState::Started);
            let tree = serde_json::to_string(&m.tree_view())
                .map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
            sqlx::query(
                "INSERT INTO cluster.managers (manager_id, state_code, state_name, version, seq, tree, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, now())
                 ON CONFLICT (manager_id) DO UPDATE SET state_code = EXCLUDED.state_code, state_name = EXCLUDED.state_name,
                   version = EXCLUDED.version, seq = EXCLUDED.seq, tree = EXCLUDED.tree, updated_at = now()",
            )
            .bind(esc(&id).as_ref())
            .bind(i16::from(state.code()))
            .bind(state.name())
            .bind(m.version as i64)
            .bind(seq as i64)
            .bind(tree)
            .execute(&mut *tx)
            .await?;
            self.remember(id, m, seq);
        }
        Ok(())
    }

    async fn reset(&self, tx: &mut PgConnection) -> Result<(), sqlx::Error> {
        if let Ok(mut cache) = self.cache.lock() {
            cache.clear();
        }
        sqlx::query("DELETE FROM cluster.managers")
            .execute(tx)
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Capability, Command, DataType, NodeSpec, WorkerInfo};

    #[test]
    fn the_state_rebuilt_from_its_tree_is_the_state() {
        let mut m = Manager::default();
        let id = "m/1";
        let run = |c: Command, m: &mut Manager| {
            let e = m.decide(&c).unwrap();
            m.evolve(&e);
        };
        run(
            Command::StartManager {
                manager_id: id.into(),
                ip: "1.2.3.4".into(),
                port: 5,
            },
            &mut m,
        );
        for w in ["a", "b"] {
            run(
                Command::ConnectWorker {
                    manager_id: id.into(),
                    worker: WorkerInfo {
                        id: w.into(),
                        name: w.into(),
                        ip: "ip".into(),
                        port: 7,
                    },
                },
                &mut m,
            );
        }
        let node = |id: &str| NodeSpec {
            id: id.into(),
            name: id.into(),
            port: 1,
            data_type: DataType::Audio,
            dashboard_component: Some("x".into()),
            capabilities: vec![Capability::Callibrate],
        };
        run(
            Command::CommitGraph {
                manager_id: id.into(),
                nodes: vec![node("n1"), node("n2")],
                edges: vec![("n1".into(), "n2".into())],
                mapping: [
                    ("n1".to_string(), "a".to_string()),
                    ("n2".to_string(), "b".to_string()),
                ]
                .into_iter()
                .collect(),
            },
            &mut m,
        );
        run(
            Command::Execute {
                manager_id: id.into(),
            },
            &mut m,
        );
        run(
            Command::NodeReport {
                manager_id: id.into(),
                node_id: "n2".into(),
                running: true,
            },
            &mut m,
        );
        run(
            Command::NodeReport {
                manager_id: id.into(),
                node_id: "n1".into(),
                running: true,
            },
            &mut m,
        );
        run(
            Command::DisconnectWorker {
                manager_id: id.into(),
                worker_id: "a".into(),
            },
            &mut m,
        );
        let tree: wire::Tree = serde_json::from_value(m.tree()).unwrap();
        assert_eq!(from_tree(id, tree), m);
    }
}
