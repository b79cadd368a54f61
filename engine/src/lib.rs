//! Platform services of changeflow: the Temporal connection and the embedded dev server,
//! credentials behind a provider interface, the tool locations and logging set-up.

pub mod audit;
pub mod credentials;
pub mod dev_issuer;
pub mod embedded_temporal;
pub mod embedded_vault;
pub mod identity;
pub mod managed_process;
pub mod policy;
pub mod telemetry;
pub mod temporal;
pub mod tools;
pub mod vault;

pub use credentials::{
    CatalystCredentials, CredentialProvider, Secret, ServiceNowCredentials, StaticCredentials,
};
pub use embedded_temporal::{EmbeddedTemporal, EmbeddedTemporalOptions};
pub use embedded_vault::{EmbeddedVault, EmbeddedVaultOptions};
pub use managed_process::EmbeddedServiceError;
