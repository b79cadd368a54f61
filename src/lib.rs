//! The `changeflow` application: hosting the worker, starting and watching changes, and the
//! embedded development stack (Temporal, simulators, worker) behind `demo` and `dev`.

pub use changeflow_mcp_frontend::changes;
pub mod front_door;
pub mod mcp_client;
pub mod stack;
pub mod worker;
