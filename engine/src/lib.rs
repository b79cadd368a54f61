//! Platform services of changeflow: the Temporal connection and the embedded dev server,
//! credentials behind a provider interface, the tool locations and logging set-up.

pub mod audit;
pub mod credentials;
pub mod embedded_temporal;
pub mod policy;
pub mod telemetry;
pub mod temporal;
pub mod tools;

pub use credentials::{
    CatalystCredentials, CredentialProvider, Secret, ServiceNowCredentials, StaticCredentials,
};
pub use embedded_temporal::{EmbeddedTemporal, EmbeddedTemporalOptions};
