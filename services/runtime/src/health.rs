//! Readiness: which services of this process are up, their projections' lag, `sys.query.health`,
//! and the plain-text `ready` on `engine.system` once everything has started.

use crate::projector::ProjectionHandle;
use crate::service::Endpoints;
use schemas::sys::{Health, ProjectionHealth, ServiceHealth};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The subject on which a deployment announces `ready`.
pub const READY_SUBJECT: &str = "engine.system";

#[derive(Default)]
struct Entry {
    started: bool,
    projections: Vec<ProjectionHandle>,
}

/// What this process runs and how far along each part is.
#[derive(Clone, Default)]
pub struct Registry {
    inner: Arc<Mutex<BTreeMap<String, Entry>>>,
}

impl Registry {
    /// Declares a service that is starting.
    pub fn declare(&self, service: &str) {
        if let Ok(mut m) = self.inner.lock() {
            m.entry(service.into()).or_default();
        }
    }

    /// Adds a projection to a service.
    pub fn projection(&self, service: &str, handle: ProjectionHandle) {
        if let Ok(mut m) = self.inner.lock() {
            m.entry(service.into())
                .or_default()
                .projections
                .push(handle);
        }
    }

    /// Marks a service's streams, consumers, migrations and endpoints as in place.
    pub fn started(&self, service: &str) {
        if let Ok(mut m) = self.inner.lock() {
            m.entry(service.into()).or_default().started = true;
        }
    }

    /// The reply of `sys.query.health`.
    #[must_use]
    pub fn health(&self) -> Health {
        let Ok(m) = self.inner.lock() else {
            return Health::default();
        };
        let mut services = BTreeMap::new();
        for (name, e) in m.iter() {
            let projections: BTreeMap<String, ProjectionHealth> = e
                .projections
                .iter()
                .map(|p| {
                    (
                        p.name().to_string(),
                        ProjectionHealth {
                            lag: p.lag(),
                            parked: p.parked(),
                            ok: p.parked() == 0,
                            last_parked: p.last_parked(),
                        },
                    )
                })
                .collect();
            let ready = e.started && e.projections.iter().all(ProjectionHandle::caught_up);
            let ok = projections.values().all(|p| p.ok);
            services.insert(
                name.clone(),
                ServiceHealth {
                    ready,
                    ok,
                    projections,
                },
            );
        }
        let ready = !services.is_empty() && services.values().all(|s| s.ready);
        let ok = services.values().all(|s| s.ok);
        let status = match (ok, ready) {
            (false, _) => "degraded",
            (true, false) => "starting",
            (true, true) => "ok",
        };
        Health {
            ready,
            ok,
            status: status.into(),
            services,
        }
    }

    /// Serves `sys.query.health` (micro service `switchyard`).
    ///
    /// # Errors
    /// NATS not reachable.
    pub async fn serve(&self, client: &async_nats::Client) -> anyhow::Result<()> {
        let endpoints = Endpoints::start(client, "switchyard", "deployment health").await?;
        let me = self.clone();
        endpoints
            .add("sys.query.health", move |_req| {
                let h = me.health();
                async move { Ok::<_, crate::ServiceError>(h) }
            })
            .await
    }

    /// Waits until every declared service is ready.
    pub async fn wait_ready(&self) {
        while !self.health().ready {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Publishes `ready` on [`READY_SUBJECT`].
///
/// # Errors
/// NATS not reachable.
pub async fn announce_ready(client: &async_nats::Client) -> anyhow::Result<()> {
    client.publish(READY_SUBJECT, "ready".into()).await?;
    client.flush().await?;
    Ok(())
}
