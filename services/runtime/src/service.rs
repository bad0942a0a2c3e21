//! Command and query endpoints on the NATS micro service API.
//!
//! A context registers its handlers with [`Routes::on`]: `routes.on("shop.cmd.add-item",
//! handlers::add_item)`, where `async fn add_item(shop: Arc<Shop>, body: w::AddItem, req: Request)
//! -> Result<w::Cart, ServiceError>` gets the context's shared state, the body decoded as the wire
//! type (in the request's codec) and the request (msg id, headers, codec).
//!
//! [`Endpoints::add`] subscribes one subject in the service's queue group (so several processes share
//! the work) and runs every request as its own task, bounded by a semaphore. The handler gets a
//! [`Request`] and returns a typed reply or a [`ServiceError`]; this module encodes either in the
//! request's codec. An error reply carries `{"error": {"code", "message"}}` and the micro headers
//! `Nats-Service-Error-Code` / `Nats-Service-Error`. A handler that panics answers `internal`; the
//! endpoint keeps serving.

use crate::codec::Codec;
use crate::error::ServiceError;
use anyhow::Context as _;
use async_nats::service::{Service, ServiceExt};
use bytes::Bytes;
use futures::StreamExt;
use serde::{de::DeserializeOwned, Serialize};
use std::future::Future;
use std::sync::Arc;
use tokio::sync::Semaphore;
use tracing::Instrument;

/// Largest request body a command or query accepts (1 MiB); larger is `payload_too_large`.
pub const MAX_BODY: usize = 1024 * 1024;
/// Requests one micro service runs at once in one process (all its endpoints together), unless
/// `SWITCHYARD_MAX_IN_FLIGHT` says otherwise. A request beyond it is answered `unavailable` at once
/// (retry later) rather than queued without bound.
pub const MAX_IN_FLIGHT: usize = 1024;

fn max_in_flight() -> anyhow::Result<usize> {
    let n = crate::config::positive("SWITCHYARD_MAX_IN_FLIGHT", MAX_IN_FLIGHT as u64)?;
    Ok(usize::try_from(n).unwrap_or(usize::MAX))
}

/// One request as a handler sees it.
#[derive(Debug, Clone)]
pub struct Request {
    pub subject: String,
    pub headers: Option<async_nats::HeaderMap>,
    pub payload: Bytes,
    pub codec: Codec,
}

impl Request {
    /// Decodes the body as `T`.
    ///
    /// # Errors
    /// `invalid_request` saying what does not match.
    pub fn decode<T: DeserializeOwned>(&self) -> Result<T, ServiceError> {
        self.codec.decode(&self.payload)
    }

    /// A header's value.
    #[must_use]
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .as_ref()
            .and_then(|h| h.get(name))
            .map(|v| v.as_str())
    }

    /// The `Nats-Msg-Id` header, if any (idempotency key).
    #[must_use]
    pub fn msg_id(&self) -> Option<&str> {
        self.header("Nats-Msg-Id").filter(|s| !s.is_empty())
    }
}

/// Encodes an error reply: body plus the micro error headers.
#[must_use]
pub fn error_reply(codec: Codec, err: &ServiceError) -> (async_nats::HeaderMap, Bytes) {
    let mut headers = async_nats::HeaderMap::new();
    headers.insert(
        "Nats-Service-Error-Code",
        err.code.status().to_string().as_str(),
    );
    // Header values cannot hold line breaks.
    let one_line: String = err
        .message
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    headers.insert("Nats-Service-Error", one_line.as_str());
    if codec == Codec::Postcard {
        headers.insert("Content-Type", crate::codec::POSTCARD);
    }
    let body = codec
        .encode(&err.body())
        .unwrap_or_else(|_| Bytes::from_static(b"{}"));
    (headers, body)
}

/// The endpoints of one micro service.
#[derive(Clone)]
pub struct Endpoints {
    service: Arc<Service>,
    name: String,
    /// Requests in flight across the service's endpoints.
    limit: Arc<Semaphore>,
    /// Its size (`SWITCHYARD_MAX_IN_FLIGHT`).
    max_in_flight: usize,
}

impl Endpoints {
    /// Starts the micro service `name` (answering `$SRV.PING/INFO/STATS`).
    ///
    /// # Errors
    /// NATS is not reachable.
    pub async fn start(
        client: &async_nats::Client,
        name: &str,
        description: &str,
    ) -> anyhow::Result<Self> {
        let max_in_flight = max_in_flight()?.min(Semaphore::MAX_PERMITS);
        let service = client
            .service_builder()
            .description(description)
            .start(name, env!("CARGO_PKG_VERSION"))
            .await
            .map_err(|e| anyhow::anyhow!(e))
            .with_context(|| format!("starting micro service {name}"))?;
        Ok(Self {
            service: Arc::new(service),
            name: name.into(),
            limit: Arc::new(Semaphore::new(max_in_flight)),
            max_in_flight,
        })
    }

    /// The service's name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Typed handlers sharing `state` (see [`Routes::on`]).
    #[must_use]
    pub fn with_state<S: Send + Sync + 'static>(&self, state: Arc<S>) -> Routes<S> {
        Routes {
            endpoints: self.clone(),
            state,
        }
    }

    /// Serves `subject` with `handler` until the process ends.
    ///
    /// # Errors
    /// NATS is not reachable.
    pub async fn add<R, F, Fut>(&self, subject: &str, handler: F) -> anyhow::Result<()>
    where
        R: Serialize + Send + 'static,
        F: Fn(Request) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<R, ServiceError>> + Send + 'static,
    {
        self.add_with_limit(subject, MAX_BODY, handler).await
    }

    /// As [`Endpoints::add`] with another body limit.
    ///
    /// # Errors
    /// NATS is not reachable.
    pub async fn add_with_limit<R, F, Fut>(
        &self,
        subject: &str,
        max_body: usize,
        handler: F,
    ) -> anyhow::Result<()>
    where
        R: Serialize + Send + 'static,
        F: Fn(Request) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<R, ServiceError>> + Send + 'static,
    {
        let mut endpoint = self
            .service
            .endpoint_builder()
            .name(subject.replace(['.', '*', '>'], "-"))
            .add(subject)
            .await
            .map_err(|e| anyhow::anyhow!(e))
            .with_context(|| format!("adding endpoint {subject}"))?;
        let handler = Arc::new(handler);
        let limit = self.limit.clone();
        let service = self.name.clone();
        let max_in_flight = self.max_in_flight;
        // The loop owns a handle on the micro service: dropping the last one stops every endpoint.
        let keep_alive = self.service.clone();
        tokio::spawn(async move {
            let _keep_alive = keep_alive;
            while let Some(request) = endpoint.next().await {
                let permit = match limit.clone().try_acquire_owned() {
                    Ok(permit) => permit,
                    Err(tokio::sync::TryAcquireError::Closed) => break,
                    Err(tokio::sync::TryAcquireError::NoPermits) => {
                        // Answered from the loop itself: a flood costs a reply, not a task.
                        let codec = Codec::from_headers(request.message.headers.as_ref());
                        let err = ServiceError::unavailable(format!(
                            "{service} is busy ({} requests in flight); retry later",
                            max_in_flight
                        ));
                        let (headers, body) = error_reply(codec, &err);
                        if let Err(e) = request.respond_with_headers(Ok(body), headers).await {
                            tracing::debug!(error = %e, "could not send the busy reply");
                        }
                        continue;
                    }
                };
                let handler = handler.clone();
                let span = tracing::info_span!("request", service = %service, subject = %request.message.subject);
                tokio::spawn(
                    async move {
                        let _permit = permit;
                        let message = &request.message;
                        let codec = Codec::from_headers(message.headers.as_ref());
                        let outcome = if message.payload.len() > max_body {
                            Err(ServiceError::new(
                                schemas::ErrorCode::PayloadTooLarge,
                                format!("the body is {} bytes; this subject takes at most {max_body}", message.payload.len()),
                            ))
                        } else {
                            let req = Request {
                                subject: message.subject.to_string(),
                                headers: message.headers.clone(),
                                payload: message.payload.clone(),
                                codec,
                            };
                            // A panic in the handler becomes `internal`; the endpoint goes on.
                            let fut = std::panic::AssertUnwindSafe(handler(req));
                            match futures::FutureExt::catch_unwind(fut).await {
                                Ok(Ok(value)) => codec.encode(&value),
                                Ok(Err(e)) => Err(e),
                                Err(_) => {
                                    tracing::error!("handler panicked");
                                    Err(ServiceError::internal("the handler failed unexpectedly; this is a bug"))
                                }
                            }
                        };
                        let sent = match outcome {
                            Ok(body) => {
                                if codec == Codec::Postcard {
                                    let mut h = async_nats::HeaderMap::new();
                                    h.insert("Content-Type", crate::codec::POSTCARD);
                                    request.respond_with_headers(Ok(body), h).await
                                } else {
                                    request.respond(Ok(body)).await
                                }
                            }
                            Err(err) => {
                                if err.code == schemas::ErrorCode::Internal {
                                    tracing::error!(error = %err.message, "internal error");
                                } else if err.code == schemas::ErrorCode::Unavailable {
                                    tracing::warn!(error = %err.message, "unavailable");
                                } else {
                                    tracing::debug!(code = err.code.as_str(), error = %err.message, "rejected");
                                }
                                let (headers, body) = error_reply(codec, &err);
                                request.respond_with_headers(Ok(body), headers).await
                            }
                        };
                        if let Err(e) = sent {
                            tracing::debug!(error = %e, "could not send the reply");
                        }
                    }
                    .instrument(span),
                );
            }
        });
        Ok(())
    }
}

/// The endpoints of one micro service whose handlers share one state (a context's handles).
pub struct Routes<S> {
    endpoints: Endpoints,
    state: Arc<S>,
}

impl<S: Send + Sync + 'static> Routes<S> {
    /// Serves `subject` with `handler(state, body, request)`: the body is decoded as `T` (an
    /// `invalid_request` reply says what does not match), the reply or the error is encoded in the
    /// request's codec (see [`Endpoints::add`]).
    ///
    /// # Errors
    /// NATS is not reachable.
    pub async fn on<T, R, F, Fut>(&self, subject: &str, handler: F) -> anyhow::Result<()>
    where
        T: DeserializeOwned + Send + 'static,
        R: Serialize + Send + 'static,
        F: Fn(Arc<S>, T, Request) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<R, ServiceError>> + Send + 'static,
    {
        self.on_with_limit(subject, MAX_BODY, handler).await
    }

    /// As [`Routes::on`] with another body limit.
    ///
    /// # Errors
    /// NATS is not reachable.
    pub async fn on_with_limit<T, R, F, Fut>(
        &self,
        subject: &str,
        max_body: usize,
        handler: F,
    ) -> anyhow::Result<()>
    where
        T: DeserializeOwned + Send + 'static,
        R: Serialize + Send + 'static,
        F: Fn(Arc<S>, T, Request) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<R, ServiceError>> + Send + 'static,
    {
        let state = self.state.clone();
        let handler = Arc::new(handler);
        self.endpoints
            .add_with_limit(subject, max_body, move |req: Request| {
                let state = state.clone();
                let handler = handler.clone();
                async move {
                    let body: T = req.decode()?;
                    handler(state, body, req).await
                }
            })
            .await
    }

    /// The shared state.
    #[must_use]
    pub fn state(&self) -> &Arc<S> {
        &self.state
    }

    /// The endpoints underneath.
    #[must_use]
    pub fn endpoints(&self) -> &Endpoints {
        &self.endpoints
    }
}
