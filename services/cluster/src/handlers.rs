//! Commands: wire bodies in, domain commands decided on the manager aggregate, one event appended,
//! the reply out. Every refusal appends nothing.

use crate::domain::{self, Command, Manager};
use runtime::service::Request;
use runtime::store::{Aggregate, Repository};
use runtime::ServiceError;
use schemas::cluster as wire;
use std::sync::Arc;
use tracing::Instrument;

impl Aggregate for Manager {
    type Event = domain::Event;
    fn apply(&mut self, event: &Self::Event) {
        self.evolve(event);
    }
}

/// The subject of a manager's events.
#[must_use]
pub fn manager_subject(manager_id: &str) -> String {
    format!(
        "cluster.events.manager.{}",
        schemas::encode_token(manager_id)
    )
}

/// The live subject of a manager's tree deltas.
#[must_use]
pub fn tree_subject(manager_id: &str) -> String {
    format!("cluster.tree.{}", schemas::encode_token(manager_id))
}

pub(crate) fn data_type(d: wire::DataType) -> domain::DataType {
    match d {
        wire::DataType::Video => domain::DataType::Video,
        wire::DataType::Series => domain::DataType::Series,
        wire::DataType::Audio => domain::DataType::Audio,
    }
}

pub(crate) fn capability(c: wire::Capability) -> domain::Capability {
    match c {
        wire::Capability::Callibrate => domain::Capability::Callibrate,
        wire::Capability::Start => domain::Capability::Start,
        wire::Capability::Stop => domain::Capability::Stop,
    }
}

fn worker_info(w: wire::WorkerInfo) -> domain::WorkerInfo {
    domain::WorkerInfo {
        id: w.id,
        name: w.name,
        ip: w.ip,
        port: w.port,
    }
}

fn node_spec(n: wire::NodeSpec) -> domain::NodeSpec {
    domain::NodeSpec {
        id: n.id,
        name: n.name,
        port: n.port,
        data_type: data_type(n.data_type),
        dashboard_component: n.dashboard_component,
        capabilities: n.capabilities.into_iter().map(capability).collect(),
    }
}

/// `cluster.cmd.<verb>` for a verb whose body says which command it is.
pub(crate) async fn command<B: Into<Command>>(
    c: Arc<Commands>,
    b: B,
    req: Request,
) -> Result<wire::CommandReply, ServiceError> {
    c.run(b.into(), req.msg_id()).await
}

impl From<wire::StartManager> for Command {
    fn from(b: wire::StartManager) -> Self {
        let (manager_id, ip, port) = (b.manager_id, b.ip, b.port);
        Command::StartManager {
            manager_id,
            ip,
            port,
        }
    }
}

impl From<wire::ConnectWorker> for Command {
    fn from(b: wire::ConnectWorker) -> Self {
        let (manager_id, worker) = (b.manager_id, worker_info(b.worker));
        Command::ConnectWorker { manager_id, worker }
    }
}

impl From<wire::DisconnectWorker> for Command {
    fn from(b: wire::DisconnectWorker) -> Self {
        let (manager_id, worker_id) = (b.manager_id, b.worker_id);
        Command::DisconnectWorker {
            manager_id,
            worker_id,
        }
    }
}

impl From<wire::CommitGraph> for Command {
    fn from(b: wire::CommitGraph) -> Self {
        Command::CommitGraph {
            manager_id: b.manager_id,
            nodes: b.nodes.into_iter().map(node_spec).collect(),
            edges: b.edges,
            mapping: b.mapping,
        }
    }
}

impl From<wire::NodeReport> for Command {
    fn from(b: wire::NodeReport) -> Self {
        let (manager_id, node_id, running) = (b.manager_id, b.node_id, b.running);
        Command::NodeReport {
            manager_id,
            node_id,
            running,
        }
    }
}

/// `cluster.cmd.execute`.
pub(crate) async fn execute(
    c: Arc<Commands>,
    b: wire::ManagerCommand,
    req: Request,
) -> Result<wire::CommandReply, ServiceError> {
    let manager_id = b.manager_id;
    c.run(Command::Execute { manager_id }, req.msg_id()).await
}

/// `cluster.cmd.stop`.
pub(crate) async fn stop(
    c: Arc<Commands>,
    b: wire::ManagerCommand,
    req: Request,
) -> Result<wire::CommandReply, ServiceError> {
    let manager_id = b.manager_id;
    c.run(Command::Stop { manager_id }, req.msg_id()).await
}

/// `cluster.cmd.finalize`.
pub(crate) async fn finalize(
    c: Arc<Commands>,
    b: wire::ManagerCommand,
    req: Request,
) -> Result<wire::CommandReply, ServiceError> {
    let manager_id = b.manager_id;
    c.run(Command::Finalize { manager_id }, req.msg_id()).await
}

/// Runs the commands of one process.
pub struct Commands {
    pub repo: Repository<Manager>,
}

impl Commands {
    /// Decides and appends one command. A refusal decided on a cached manager that another process
    /// has moved past is checked against the stream by the repository.
    ///
    /// # Errors
    /// The domain's refusal, or `unavailable` when the event store does not answer.
    pub async fn run(
        &self,
        command: Command,
        msg_id: Option<&str>,
    ) -> Result<wire::CommandReply, ServiceError> {
        schemas::check_id("manager_id", command.manager_id()).map_err(ServiceError::invalid)?;
        let subject = manager_subject(command.manager_id());
        let span = tracing::info_span!("cluster_command", manager_id = %command.manager_id());
        Ok(self
            .repo
            .execute(
                &subject,
                msg_id,
                |m: &Manager, _now| m.decide(&command),
                |m: &Manager, _e, seq| {
                    let state = m.state.unwrap_or(domain::ManagerState::Started);
                    wire::CommandReply {
                        manager_id: m.manager_id.clone(),
                        state: state.code(),
                        state_name: state.name().into(),
                        version: m.version,
                        seq,
                    }
                },
            )
            .instrument(span)
            .await?)
    }
}
