//! The MCP front door: Streamable HTTP (rmcp) inside an axum app. Every request is
//! authenticated (OIDC bearer token); every tool call is authorized by policy, audited, and
//! served by starting or reading a Temporal workflow. It never calls ServiceNow, Catalyst Center
//! or Vault itself. People use the same tools through the web view under `/ui/` (`ui`).

pub mod app;
pub mod archive;
pub mod audit_tools;
pub mod auth;
pub mod changes;
pub mod evidence;
#[cfg(feature = "fixtures")]
pub mod fixtures;
pub mod front_door;
pub mod health;
pub mod invoke;
pub mod outcome;
pub mod rest;
pub mod results;
pub mod server;
pub mod tasks;
pub mod temporal;
pub mod tools;
pub mod ui;

pub use app::{MAX_BODY_BYTES, app, run};
pub use front_door::{Authentication, Catalog, FrontDoor};
