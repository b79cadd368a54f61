//! Credentials for downstream systems, behind a small provider interface so that a Vault-backed
//! provider can replace the static one without touching the activities. Secret values never
//! print: `Secret`'s Debug and Display are redacted.

pub mod vault;

use async_trait::async_trait;
use std::fmt;

/// A secret string that never shows up in logs or error messages.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    /// The secret value, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// ServiceNow OAuth (password grant) credentials.
#[derive(Debug, Clone)]
pub struct ServiceNowCredentials {
    pub username: String,
    pub password: Secret,
    pub client_id: String,
    pub client_secret: Secret,
}

/// Catalyst Center basic-auth credentials (exchanged for a token).
#[derive(Debug, Clone)]
pub struct CatalystCredentials {
    pub username: String,
    pub password: Secret,
}

/// Errors obtaining credentials.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CredentialError {
    /// No credentials are configured for that system.
    #[error("no {0} credentials are configured")]
    Missing(&'static str),
    /// The credential store could not be reached; retrying may succeed.
    #[error("credential store unavailable: {0}")]
    Unavailable(String),
    /// The credential store refused or the secret is malformed; retrying will not help.
    #[error("credential store: {0}")]
    Refused(String),
}

/// A signature made with the evidence key, which never leaves Vault (Transit, ed25519).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvidenceSignature {
    /// The Transit key's name and the version that signed.
    pub key: String,
    pub version: u64,
    /// The raw 64-byte Ed25519 signature, base64.
    pub signature: String,
}

/// The public half of a version of the evidence key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvidenceKey {
    pub key: String,
    pub version: u64,
    /// The raw 32-byte Ed25519 public key, base64.
    pub public_key: String,
}

/// Where activities get credentials at the moment of use, and the signing key that vouches
/// for evidence bundles.
#[async_trait]
pub trait CredentialProvider: Send + Sync {
    async fn servicenow(&self) -> Result<ServiceNowCredentials, CredentialError>;
    async fn catalyst(&self) -> Result<CatalystCredentials, CredentialError>;
    /// The GitHub token of one person (GitHub calls are made as the person who asked). Only
    /// a Vault-backed provider keeps them.
    async fn github(&self, user: &str) -> Result<Secret, CredentialError> {
        Err(CredentialError::Missing(if user.is_empty() {
            "GitHub"
        } else {
            "per-person GitHub"
        }))
    }
    /// Signs `message` with the evidence key (Vault's Transit engine signs; the private key
    /// never leaves it). Only a Vault-backed provider can.
    async fn sign_evidence(&self, _message: &[u8]) -> Result<EvidenceSignature, CredentialError> {
        Err(CredentialError::Refused(NO_TRANSIT.into()))
    }
    /// The evidence key's public half: `version`, or the latest.
    async fn evidence_key(&self, _version: Option<u64>) -> Result<EvidenceKey, CredentialError> {
        Err(CredentialError::Refused(NO_TRANSIT.into()))
    }
}

const NO_TRANSIT: &str = "evidence signing needs Vault's Transit engine: this worker has no Vault \
     (--vault-address)";

/// Credentials taken from configuration (environment) at start.
#[derive(Debug, Clone, Default)]
pub struct StaticCredentials {
    pub servicenow: Option<ServiceNowCredentials>,
    pub catalyst: Option<CatalystCredentials>,
}

#[async_trait]
impl CredentialProvider for StaticCredentials {
    async fn servicenow(&self) -> Result<ServiceNowCredentials, CredentialError> {
        self.servicenow
            .clone()
            .ok_or(CredentialError::Missing("ServiceNow"))
    }
    async fn catalyst(&self) -> Result<CatalystCredentials, CredentialError> {
        self.catalyst
            .clone()
            .ok_or(CredentialError::Missing("Catalyst Center"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_format() {
        let creds = CatalystCredentials {
            username: "u".into(),
            password: Secret::new("hunter2"),
        };
        let shown = format!("{creds:?} {}", creds.password);
        assert!(!shown.contains("hunter2"), "{shown}");
        assert_eq!(creds.password.expose(), "hunter2");
    }

    #[tokio::test]
    async fn missing_credentials_are_a_clear_error() {
        let err = StaticCredentials::default().catalyst().await.unwrap_err();
        assert_eq!(
            err.to_string(),
            "no Catalyst Center credentials are configured"
        );
    }
}
