//! The `changeflow` application: hosting the worker, starting and watching changes, and the
//! embedded development stack (Temporal, simulators, worker) behind `demo` and `dev`.

/// Registers every workflow this binary runs on a worker's or a replayer's options builder
/// (both take `register_workflow` by value): one list, so a replay knows each workflow a
/// worker can have run. The conformance fixtures exist only in development builds.
macro_rules! with_workflows {
    ($builder:expr) => {{
        let registered = $builder
            .register_workflow::<changeflow_workflows::TemplateDeployment>()
            .and_then(|b| b.register_workflow::<changeflow_workflows::DownstreamOperation>())
            .and_then(|b| b.register_workflow::<changeflow_workflows::DeviceLock>());
        #[cfg(feature = "dev")]
        let registered = registered
            .and_then(|b| b.register_workflow::<changeflow_workflows::ConformanceFixture>());
        registered
    }};
}

pub use changeflow_mcp_frontend::changes;
pub mod front_door;
pub mod mcp_client;
pub mod replay;
#[cfg(feature = "dev")]
pub mod stack;
pub mod watch;
pub mod worker;

#[cfg(feature = "dev")]
/// Options for the embedded Temporal server with changeflow's search attributes registered.
pub fn embedded_temporal_options(
    data_dir: &std::path::Path,
) -> changeflow_devstack::EmbeddedTemporalOptions {
    let mut options = changeflow_devstack::EmbeddedTemporalOptions::new(data_dir);
    options.search_attributes = changeflow_workflows::search::REGISTRATION
        .iter()
        .map(|s| s.to_string())
        .collect();
    options
}
