//! Deterministic workflow definitions of changeflow and the types they exchange with activities.
//!
//! This crate does no I/O: activities are only *declared* here (`#[activity_definitions]`) and are
//! implemented in `changeflow-activities`, which the worker registers.

pub mod activities;
pub mod arguments;
pub mod device_lock;
pub mod failure;
/// The conformance suite's fixture workflow: built only with the `fixtures` feature (the
/// development build), never registered by a production worker.
#[cfg(feature = "fixtures")]
pub mod fixtures;
pub mod github;
pub mod limits;
pub mod operations;
pub mod results;
pub mod template_deployment;
pub mod types;
pub mod verification;

pub use arguments::Arguments;
pub use device_lock::DeviceLock;
#[cfg(feature = "fixtures")]
pub use fixtures::ConformanceFixture;
pub use operations::{DownstreamOperation, Operation, OperationRequest};
pub use template_deployment::TemplateDeployment;
pub use types::*;

/// The task queue workers poll and starters submit to, unless configured otherwise.
pub const DEFAULT_TASK_QUEUE: &str = "changeflow";
