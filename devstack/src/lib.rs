//! The development stack, for `demo`, `dev` and the tests: embedded Temporal and OpenBao dev
//! servers (child processes stopped on drop), the development OpenID provider, and where their
//! binaries are found. A production build (`--no-default-features`) does not link this crate.

pub mod binaries;
pub mod dev_issuer;
pub mod embedded_temporal;
pub mod embedded_vault;
pub mod managed_process;

pub use embedded_temporal::{EmbeddedTemporal, EmbeddedTemporalOptions};
pub use embedded_vault::{EmbeddedVault, EmbeddedVaultOptions};
pub use managed_process::EmbeddedServiceError;
