//! The security and runtime core of changeflow: who is calling (`identity`, OIDC access tokens),
//! whether they may (`policy`, Rego), the hash-chained record of what was asked and decided
//! (`audit`), the Temporal connection, and logging; `login` signs people in to the web view
//! (OpenID Connect authorization code with PKCE).

pub mod audit;
pub mod identity;
pub mod login;
pub mod metrics;
pub mod policy;
pub mod telemetry;
pub mod temporal;
