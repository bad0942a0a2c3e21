//! Simulators that act as outside clients of a running Switchyard: they talk NATS only, like any
//! client, and live outside the production crates.
//!
//! - [`dispatch_sim`]: `switchyard sim carts`, carts driven through the dispatch facility.
//! - [`cluster_sim`]: `switchyard sim pipeline`, a manager and workers going through their lives.

pub mod cluster_sim;
pub mod dispatch_sim;
