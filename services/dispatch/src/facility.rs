//! The default facility (`infra/facility.json`, compiled in): a data hall with storage bays, aisles
//! of junctions, docks for twelve compute servers and eight carts with SSDs and datasets.
//!
//! [`load_default`] runs in `start` and loads it only when the context has no facility. Every
//! append goes to a fresh aggregate with expected sequence 0 (and a fixed `Nats-Msg-Id`), so two
//! processes starting at once load it exactly once between them: whichever loses a race on an
//! aggregate skips it. `SWITCHYARD_DISPATCH_FACILITY` names another file, or `none` for no default.

use crate::view::View;
use crate::{cart_subject, ssd_subject, FACILITY_SUBJECT};
use runtime::store::{stamp, AppendError, EventStore};
use schemas::dispatch::{self as w, DispatchEvent};
use serde::Deserialize;
use std::time::Duration;

/// The compiled-in default facility.
pub const DEFAULT: &str = include_str!("../../../infra/facility.json");

/// A facility file: the graph plus carts with their SSDs and datasets.
#[derive(Debug, Clone, Deserialize)]
pub struct FacilityFile {
    #[serde(default)]
    pub description: Option<String>,
    pub nodes: Vec<w::Node>,
    pub edges: Vec<w::Edge>,
    #[serde(default)]
    pub carts: Vec<CartSpec>,
}

/// A cart of a facility file.
#[derive(Debug, Clone, Deserialize)]
pub struct CartSpec {
    pub cart_id: String,
    pub home: String,
    #[serde(default)]
    pub ssds: Vec<SsdSpec>,
}

/// An SSD of a facility file.
#[derive(Debug, Clone, Deserialize)]
pub struct SsdSpec {
    pub ssd_id: String,
    pub capacity_bytes: u64,
    pub health: w::SsdHealth,
    #[serde(default)]
    pub datasets: Vec<w::DatasetSize>,
}

/// The facility file to load at start (`None`: none), from the value of
/// `SWITCHYARD_DISPATCH_FACILITY`: unset, the built-in one; `none`, none; otherwise a file's path.
///
/// # Errors
/// The named file cannot be read or parsed.
pub fn configured(setting: Option<&str>) -> anyhow::Result<Option<FacilityFile>> {
    let text = match setting.map(str::trim) {
        Some("none") => return Ok(None),
        Some(path) => std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("reading SWITCHYARD_DISPATCH_FACILITY={path}: {e}"))?,
        None => DEFAULT.to_string(),
    };
    Ok(Some(serde_json::from_str(&text).map_err(|e| {
        anyhow::anyhow!("the facility file does not parse: {e}")
    })?))
}

async fn append_new(
    store: &EventStore,
    subject: &str,
    msg_id: &str,
    event: &DispatchEvent,
) -> anyhow::Result<bool> {
    let new = stamp(event).map_err(|e| anyhow::anyhow!(e.message))?;
    match store.append(subject, new.payload, 0, msg_id).await {
        Ok(ack) => Ok(!ack.duplicate),
        Err(AppendError::WrongLastSequence) => Ok(false),
        Err(e) => Err(anyhow::anyhow!("loading the default facility: {e}")),
    }
}

/// Loads `file` into an empty context (see the module documentation).
///
/// # Errors
/// The file is not a valid facility, or the store does not answer.
pub async fn load(store: &EventStore, view: &View, file: &FacilityFile) -> anyhow::Result<()> {
    if view.read(|m| m.facility.is_some()) {
        return Ok(());
    }
    let graph = crate::domain::Graph::new(file.nodes.clone(), file.edges.clone())
        .map_err(|e| anyhow::anyhow!("the default facility: {e}"))?;
    let event = DispatchEvent::FacilitySet(w::FacilitySet {
        nodes: graph.nodes.clone(),
        edges: graph.edges.clone(),
    });
    let mine = append_new(store, FACILITY_SUBJECT, "dispatch-default-facility", &event).await?;
    tracing::info!(
        loaded_here = mine,
        carts = file.carts.len(),
        "default facility"
    );
    for c in &file.carts {
        let e = DispatchEvent::CartRegistered(w::CartRegistered {
            cart_id: c.cart_id.clone(),
            home: c.home.clone(),
        });
        let token = schemas::encode_token(&c.cart_id);
        append_new(
            store,
            &cart_subject(&c.cart_id),
            &format!("dispatch-default-cart:{token}"),
            &e,
        )
        .await?;
        for s in &c.ssds {
            let e = DispatchEvent::SsdRegistered(w::SsdRegistered {
                ssd_id: s.ssd_id.clone(),
                cart_id: c.cart_id.clone(),
                capacity_bytes: s.capacity_bytes,
                health: s.health,
                datasets: s.datasets.clone(),
            });
            let token = schemas::encode_token(&s.ssd_id);
            append_new(
                store,
                &ssd_subject(&s.ssd_id),
                &format!("dispatch-default-ssd:{token}"),
                &e,
            )
            .await?;
        }
    }
    view.catch_up(Duration::from_secs(30))
        .await
        .map_err(|e| anyhow::anyhow!(e.message))?;
    Ok(())
}

/// Loads the configured facility when the context has none.
///
/// # Errors
/// As [`load`].
pub async fn load_default(
    store: &EventStore,
    view: &View,
    configured: Option<&FacilityFile>,
) -> anyhow::Result<()> {
    if view.read(|m| m.facility.is_some()) {
        return Ok(());
    }
    match configured {
        Some(file) => load(store, view, file).await,
        None => Ok(()),
    }
}
